"""Group-sequential statistics: looking after every round of seeds without inflating false positives.

An adaptive study looks at its data after every round (the study's seeds, then `step` more runs per open arm,
up to `max_runs` per arm). Each look uses the seed-level t statistic of `contrasts.contrast` (Welch t on per-run
means + the arm × item term, Satterthwaite d.f.). Repeated looks at a fixed 0.05 would call a null difference
"supported" far more often than 5 % of the time; here each look k has its own, stricter threshold:

  Lan–DeMets alpha spending with the O'Brien–Fleming-type function α*(t) = 2 − 2Φ(z_{1−α/2} / √t) over the
  planned looks, information fraction t_k = n_k / max_runs (runs per arm at look k over the most planned).
  The critical values c_k solve P(|Z_j| < c_j for j < k, |Z_k| ≥ c_k) = α*(t_k) − α*(t_{k−1}) for the
  canonical joint normal of the looks (independent increments), by numerical integration on a grid
  (Armitage–McPherson–Rowe recursion). A look rejects when the t test's p-value is below the nominal level
  2(1 − Φ(c_k)) — the "significance level" way of carrying z boundaries to t statistics.

Several questions: the graphical Holm procedure for group-sequential designs (Maurer & Bretz 2013): every
hypothesis not yet rejected gets α / (number not yet rejected), its boundaries are those of that level, and a
rejection passes its α to the others (step-down, within and across looks). Equivalence (TOST, |Δ| < margin) is
claimed by two one-sided tests, each at one-sided level α / (number of questions) with one-sided boundaries.
Arm elimination: an arm is dropped when the current leader beats it by the same t test at the two-sided level
α / (arms − 1); the eventual best arm is then dropped with probability ≤ α / 2 (a union bound over the arms that
could appear to beat it, each a one-sided group-sequential test at α / (2 (arms − 1))).

Everything here works on arrays with a leading axis of simulated studies; a real study is one such study.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from ada_slm.stats import contrasts
from ada_slm.stats.power_simulation import PowerInputs

# Simulated (tests/test_sequential.py): what the elimination does NOT control — with every arm equal, some arm
# is still dropped in this share of sweeps.
SWEEP_COMPLETE_NULL = (
    "six equal arms, looks at 3…10 runs per arm, run SD 0.02, arm × item SD 0.02, residual "
    "SD 0.08, 20 items: some arm eliminated in 8.8 % of 2,000 simulated sweeps, each given arm "
    "in at most 2 %"
)
RULE = (
    "group-sequential: Lan–DeMets alpha spending, O'Brien–Fleming type, over the planned looks, applied to "
    "the seed-level t test (nominal p-value per look); graphical Holm across questions"
)
GRID = 401  # points of the numerical integration per look

# question status codes
OPEN, BETTER, WORSE, EQUIVALENT = 0, 1, 2, 3
STATUS_NAMES = {
    OPEN: "open",
    BETTER: "supported",
    WORSE: "supported (other direction)",
    EQUIVALENT: "equivalent within the margin",
}


@dataclass(frozen=True)
class Plan:
    """When an adaptive study looks: after `initial` runs per arm, then every `step` more, up to `max_runs`."""

    initial: int
    step: int
    max_runs: int
    alpha: float = contrasts.ALPHA

    @property
    def looks(self) -> list[int]:
        """Runs per arm at each look (the last look is at max_runs)."""
        n = list(range(self.initial, self.max_runs, self.step)) + [self.max_runs]
        return sorted(set(n))

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.max_runs for n in self.looks)

    def look_of(self, n: int) -> int:
        """Index of the look taken at n runs per arm."""
        return self.looks.index(n)

    def nominal(self, level: float, one_sided: bool = False) -> np.ndarray:
        """Nominal p-value threshold at each look for a test at overall `level`."""
        c = np.array(obf_boundaries(self.fractions, level, one_sided))
        return sps.norm.sf(c) * (1 if one_sided else 2)


def spent(t: float, alpha: float) -> float:
    """O'Brien–Fleming-type spending function of Lan & DeMets: α*(t) = 2 − 2Φ(z_{1−α/2}/√t)."""
    return float(2 * sps.norm.sf(sps.norm.isf(alpha / 2) / math.sqrt(t))) if t > 0 else 0.0


def _crossing_mass(c: float, t: float, shift: np.ndarray, scale: float, mass: np.ndarray, one_sided: bool) -> float:
    """Probability of crossing ±c at information fraction t from the previous look's continuation sub-density
    (`mass` at the grid points, shifted by `shift`, the increment's SD `scale`)."""
    upper = special.ndtr((shift - c * math.sqrt(t)) / scale)
    lower = 0.0 if one_sided else special.ndtr((-c * math.sqrt(t) - shift) / scale)
    return float(np.sum(mass * (upper + lower)))


def _excess_mass(
    c: float, t: float, shift: np.ndarray, scale: float, mass: np.ndarray, one_sided: bool, target: float
) -> float:
    return _crossing_mass(c, t, shift, scale, mass, one_sided) - target


@functools.lru_cache(maxsize=256)
def obf_boundaries(fractions: tuple[float, ...], alpha: float, one_sided: bool = False) -> tuple[float, ...]:
    """Critical z values c_1..c_K of the spending rule at information fractions `fractions` (increasing, the
    last ≤ 1): two-sided (reject |Z_k| ≥ c_k) or one-sided (reject Z_k ≥ c_k)."""
    bounds: list[float] = []
    previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (grid, weights, density) of the last look
    prev_t, prev_spent = 0.0, 0.0
    for t in fractions:
        target = spent(t, alpha) - prev_spent
        if previous is None:  # first look: Z_1 is standard normal
            c = float(sps.norm.isf(target if one_sided else target / 2)) if target > 0 else 12.0
        else:
            grid, weights, density = previous
            shift, scale = grid * math.sqrt(prev_t), math.sqrt(t - prev_t)
            mass = weights * density

            crossing = (t, shift, scale, mass, one_sided)  # the look's terms, bound now (not read from the loop later)
            if target <= _crossing_mass(12.0, *crossing):
                c = 12.0
            else:
                c = float(optimize.brentq(_excess_mass, 0, 12.0, args=(*crossing, target), xtol=1e-10))
        # sub-density of Z_k on its continuation region, for the next look
        new_grid = np.linspace(-12.0 if one_sided else -c, c, GRID)
        new_weights = np.full(GRID, new_grid[1] - new_grid[0])
        new_weights[[0, -1]] /= 2
        if previous is None:
            new_density = sps.norm.pdf(new_grid)
        else:
            z = (new_grid[:, None] * math.sqrt(t) - grid[None, :] * math.sqrt(prev_t)) / math.sqrt(t - prev_t)
            kernel = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
            new_density = (kernel * (weights * density)[None, :]).sum(1) * math.sqrt(t / (t - prev_t))
        previous = (new_grid, new_weights, new_density)
        bounds.append(c)
        prev_t, prev_spent = t, spent(t, alpha)
    return tuple(bounds)


# ------------------------------------------------------------------------------------------ one look
def _one_sided_equivalent(est, se, df, margin: float, threshold: float):
    """TOST at look k: both one-sided t p-values below the nominal one-sided threshold."""
    with np.errstate(all="ignore"):
        p_low = sps.t.sf((est + margin) / se, df)
        p_high = sps.t.cdf((est - margin) / se, df)
    return (se > 0) & (np.maximum(p_low, p_high) < threshold)


def answer_questions(
    est, se, df, status: np.ndarray, k: int, plan: Plan, sign: float, margin: float | None = None
) -> np.ndarray:
    """Update question statuses (S, Q) at look k from the t statistics (S, Q) of every question (open ones
    are at this look's number of runs; closed ones are ignored). Returns the new status array."""
    status = status.copy()
    n_q = status.shape[-1]
    p = contrasts.t_test(est, se, df)[0]
    thresholds = {m: plan.nominal(plan.alpha / m)[k] for m in range(1, n_q + 1)}
    for _ in range(n_q):  # graphical Holm: each rejection raises the others' level
        not_rejected = ((status != BETTER) & (status != WORSE)).sum(-1)
        level = np.vectorize(lambda m: thresholds[max(m, 1)])(not_rejected)[..., None]
        new = (status == OPEN) & np.isfinite(p) & (p < level)
        if not new.any():
            break
        status[new & (sign * est > 0)] = BETTER
        status[new & (sign * est <= 0)] = WORSE
    if margin:
        eq = _one_sided_equivalent(est, se, df, margin, plan.nominal(plan.alpha / n_q, one_sided=True)[k])
        status[(status == OPEN) & eq] = EQUIVALENT
    return status


def eliminate(
    pair_est,
    pair_se,
    pair_df,
    alive: np.ndarray,
    k: int,
    plan: Plan,
    sign: float,
    n_arms: int,
    margin: float | None = None,
):
    """One look of arm elimination. pair_* are (S, A, A): the contrast arm i − arm j at this look; `alive`
    (S, A) the arms still receiving runs. Returns (leader (S,), newly eliminated (S, A), sweep settled (S,)):
    settled when one arm is left or every other arm is equivalent to the leader within the margin."""
    idx = np.arange(alive.shape[-1])
    means = sign * np.where(alive, np.diagonal(pair_est, axis1=-2, axis2=-1), -np.inf)
    leader = means.argmax(-1)
    take = lambda x: np.take_along_axis(x, leader[:, None, None], axis=1)[:, 0, :]  # noqa: E731  (S, A) row
    est, se, df = take(pair_est), take(pair_se), take(pair_df)
    p = contrasts.t_test(est, se, df)[0]
    level = plan.alpha / max(1, n_arms - 1)
    others = alive & (idx[None, :] != leader[:, None])
    dropped = others & np.isfinite(p) & (p < plan.nominal(level)[k]) & (sign * est > 0)
    remaining = others & ~dropped
    settled = remaining.sum(-1) == 0
    if margin:
        eq = _one_sided_equivalent(est, se, df, margin, plan.nominal(level / 2, one_sided=True)[k])
        settled |= (~remaining | eq).all(-1)
    return leader, dropped, settled


def capped_df(df, n_a: int, n_b: int):
    """Degrees of freedom of the sequential test: Satterthwaite's, but never more than the seed level's
    n_a + n_b − 2. The early looks test at nominal levels near 0.0005, where the Satterthwaite t (random d.f.,
    driven up by the item part) has too heavy a tail at 3 runs per arm (measured: 0.001 at nominal 0.0005)."""
    return np.minimum(df, n_a + n_b - 2)


def pairwise(mats: list[np.ndarray]):
    """(est, se, df) of every arm i − arm j, shape (S, A, A), from Y[S, run, item] per arm; the diagonal holds
    each arm's own mean (for picking the leader)."""
    n = len(mats)
    shape = mats[0].shape[:-2] + (n, n)
    est, se, df = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    for i in range(n):
        est[..., i, i] = mats[i].mean((-2, -1))
        for j in range(i + 1, n):
            e, s, d = contrasts.contrast([mats[i], mats[j]], [1.0, -1.0])
            d = capped_df(d, mats[i].shape[-2], mats[j].shape[-2])
            est[..., i, j], se[..., i, j], df[..., i, j] = e, s, d
            est[..., j, i], se[..., j, i], df[..., j, i] = -e, s, d
    return est, se, df


# ------------------------------------------------------------------------------------------ simulation
@dataclass
class Noise:
    """The crossed random-effects model of `stats`, per arm: SD of a run's effect, of the arm × item
    interaction, of the run × item residual; items shared by every run and arm."""

    seed_sd: float
    interaction_sd: float
    residual_sd: float
    n_items: int

    @classmethod
    def from_power_inputs(cls, i: PowerInputs) -> Noise:
        seed_var = max(0.0, i.run_mean_sd**2 - i.residual_sd**2 / max(i.n_items, 1))
        return cls(math.sqrt(seed_var), i.interaction_sd, i.residual_sd, i.n_items)

    def draw(self, rng: np.random.Generator, means: np.ndarray, n_sim: int, n_runs: int) -> np.ndarray:
        """Y[sim, arm, run, item] (shared item effects cancel in every contrast and are left out)."""
        shape = (n_sim, len(means), n_runs, self.n_items)
        return (
            means[None, :, None, None]
            + self.seed_sd * rng.standard_normal(shape[:3] + (1,))
            + self.interaction_sd * rng.standard_normal(shape[:2] + (1, self.n_items))
            + self.residual_sd * rng.standard_normal(shape)
        )


@dataclass
class Simulated:
    runs: np.ndarray  # (S,) trained runs spent (all arms)
    status: np.ndarray  # (S, Q) final question status
    eliminated: np.ndarray  # (S, A) arms dropped by the sweep
    n: np.ndarray  # (S, A) runs per arm at the end


def simulate(
    plan: Plan,
    means,
    noise: Noise,
    questions: list[tuple[int, int]],
    sweep: list[int] | None = None,
    sign: float = 1.0,
    margin: float | None = None,
    n_sim: int = 2000,
    seed: int = 0,
    chunk: int = 500,
) -> Simulated:
    """Run the adaptive procedure on `n_sim` simulated studies with true arm means `means`: the same rounds,
    looks, `answer_questions` and `eliminate` the runner uses. `questions` are (compare, against) arm indices;
    `sweep` the arms that compete for the lead (None: no elimination)."""
    rng = np.random.default_rng(seed)
    means = np.asarray(means, float)
    parts = [
        _simulate_chunk(
            plan, noise.draw(rng, means, min(chunk, n_sim - s), plan.max_runs), questions, sweep, sign, margin
        )
        for s in range(0, n_sim, chunk)
    ]
    return Simulated(*(np.concatenate(x) for x in zip(*parts, strict=True)))


def _simulate_chunk(plan, y, questions, sweep, sign, margin):
    n_sim, n_arms = y.shape[:2]
    qi, qj = (np.array([q[i] for q in questions], int) for i in (0, 1))
    n = np.full((n_sim, n_arms), plan.initial)
    status = np.zeros((n_sim, len(questions)), int)
    alive = np.zeros((n_sim, n_arms), bool)
    if sweep:
        alive[:, sweep] = True
    settled = np.full(n_sim, not sweep)
    looks = plan.looks
    for k, nk in enumerate(looks):
        est, se, df = pairwise([y[:, a, :nk] for a in range(n_arms)])
        if questions:
            status = answer_questions(est[:, qi, qj], se[:, qi, qj], df[:, qi, qj], status, k, plan, sign, margin)
        if sweep:
            _, dropped, now = eliminate(est, se, df, alive, k, plan, sign, len(sweep), margin)
            dropped &= ~settled[:, None]
            alive &= ~dropped
            settled |= now
        if k + 1 == len(looks):
            break
        need = np.zeros((n_sim, n_arms), bool)
        for q, (i, j) in enumerate(questions):
            need[:, i] |= status[:, q] == OPEN
            need[:, j] |= status[:, q] == OPEN
        need |= alive & ~settled[:, None]
        need &= n == nk  # only arms still in lockstep continue
        if not need.any():
            break
        n = np.where(need, looks[k + 1], n)
    return n.sum(-1), status, (np.zeros_like(alive) if not sweep else ~alive & np.isin(np.arange(n_arms), sweep)), n
