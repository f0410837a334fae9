"""Statistics that keep a study honest.

Data shape: for one arm and one metric, a matrix `Y[seed, item]` of per-item scores (NaN where the metric does
not apply). Training noise lives between seeds, generation/item noise between items, so every interval here
is a *hierarchical* bootstrap: resample seeds, then items within them. Comparisons are paired: arm A and
baseline B are matched on seed and on eval item, and the difference matrix `A - B` is what gets resampled.

  arm_interval         mean and 95 % CI of one arm
  compare              paired Δ with CI, a sign-flip permutation p-value, % and × (only over a baseline that
                       is clearly above zero and above the base model's noise floor), Holm over metrics
  factors_between      which config factors differ between two arms (grouping r with α when α/r is fixed,
                       and micro × accum when the effective batch is fixed), to label confounded comparisons
  factorial_2x2        main effects and interaction with CIs where four arms form a full 2 × 2
  goldilocks           an interior optimum over an ordered factor, claimed only with paired CIs
  required_seeds       seeds per arm a difference needs for 80 % power at α = 0.05
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

N_BOOT = 2000
N_PERM = 5000
ALPHA = 0.05


def _resample_indices(rng: np.random.Generator, n_seeds: int, n_items: int, n_boot: int):
    """Hierarchical bootstrap indices: seeds with replacement, then items with replacement within each seed."""
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    items = rng.integers(0, n_items, (n_boot, n_seeds, n_items))
    return seeds[:, :, None], items


def _nanmean_last2(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a resample may hold only items where the metric does not apply
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=(-2, -1))


def _mean_boot(y: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """Bootstrap distribution of the grand mean of Y[seed, item]: resample seeds, then items per seed."""
    s, i = _resample_indices(rng, *y.shape, n_boot)
    return _nanmean_last2(y[s, i])


def _ci(dist: np.ndarray) -> tuple[float, float]:
    d = dist[np.isfinite(dist)]
    if d.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n_seeds: int
    n_items: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def arm_interval(y: np.ndarray, seed: int = 0) -> Interval:
    rng = np.random.default_rng(seed)
    low, high = _ci(_mean_boot(y, rng))
    return Interval(float(np.nanmean(y)) if np.isfinite(y).any() else math.nan, low, high, y.shape[0], y.shape[1])


def sign_flip_p(d: np.ndarray, seed: int = 0, n_perm: int = N_PERM) -> float:
    """Two-sided paired permutation test of mean(d) = 0: flip the sign of each paired difference at random."""
    d = d[np.isfinite(d)]
    if d.size == 0 or np.all(d == 0):
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(null >= observed - 1e-15)) / (n_perm + 1))


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone)."""
    names = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(names)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(names):
        running = max(running, min(1.0, (m - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


@dataclass
class Comparison:
    metric: str
    delta: Interval
    p: float
    p_holm: float = math.nan
    baseline: Interval | None = None
    ratio: tuple[float, float, float] | None = None  # (×, low, high) or None when not meaningful
    percent: tuple[float, float, float] | None = None
    ratio_note: str = ""

    @property
    def significant(self) -> bool:
        return self.delta.excludes_zero() and self.p_holm < ALPHA


def align(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Matrices A[seed, item], B[seed, item] over the seeds and items both arms have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return np.empty((0, 0)), np.empty((0, 0))
    items = sorted(set.intersection(*(set(a[s]) for s in seeds), *(set(b[s]) for s in seeds)))

    def mat(x):
        return np.array([[np.nan if x[s][i] is None else x[s][i] for i in items] for s in seeds], dtype=float)

    return mat(a), mat(b)


def compare(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], metric: str,
            noise_floor: float = 0.0, seed: int = 0, n_boot: int = N_BOOT, n_perm: int = N_PERM) -> Comparison | None:
    """Paired comparison of arm `a` against baseline `b` (both: seed -> item id -> score)."""
    A, B = align(a, b)
    if A.size == 0 or not np.isfinite(A - B).any():
        return None
    D = A - B
    rng = np.random.default_rng(seed)
    # one set of resampling indices for Δ, baseline and ratio, so their intervals are consistent
    n_seeds, n_items = D.shape
    s, i = _resample_indices(rng, n_seeds, n_items, n_boot)
    a_means, bases = _nanmean_last2(A[s, i]), _nanmean_last2(B[s, i])
    deltas = a_means - bases
    with np.errstate(all="ignore"):
        ratios = np.where(bases > 0, a_means / bases, np.nan)
    with np.errstate(all="ignore"):
        delta = Interval(float(np.nanmean(D)), *_ci(deltas), n_seeds, n_items)
        baseline = Interval(float(np.nanmean(B)), *_ci(bases), n_seeds, n_items)
    result = Comparison(metric, delta, sign_flip_p(D.ravel(), seed, n_perm), baseline=baseline)
    if baseline.low > 0 and baseline.mean > noise_floor:
        r_lo, r_hi = _ci(ratios)
        ratio = float(np.nanmean(A) / baseline.mean)
        result.ratio = (ratio, r_lo, r_hi)
        result.percent = (100 * (ratio - 1), 100 * (r_lo - 1), 100 * (r_hi - 1))
    else:
        result.ratio_note = "n/a (baseline ≈ 0)"
    return result


def compare_all(a, b, metrics: list[str], noise_floors: dict[str, float] | None = None) -> dict[str, Comparison]:
    """`compare` for every metric, with Holm's correction across the metrics of this one comparison."""
    out = {}
    for m in metrics:
        c = compare(a.get(m, {}), b.get(m, {}), m, (noise_floors or {}).get(m, 0.0))
        if c is not None and math.isfinite(c.delta.mean):
            out[m] = c
    for m, p in holm({m: c.p for m, c in out.items()}).items():
        out[m].p_holm = p
    return out


# ------------------------------------------------------------------------------------------ design
@dataclass
class FactorDiff:
    factors: dict[str, tuple] = field(default_factory=dict)  # factor name -> (value in a, value in b)
    notes: list[str] = field(default_factory=list)

    @property
    def confounded(self) -> bool:
        return len([f for f in self.factors if f != "batch split"]) > 1

    @property
    def split_only(self) -> bool:
        return list(self.factors) == ["batch split"]


def factors_between(diffs: dict[str, tuple]) -> FactorDiff:
    """Group raw config differences into study factors.

    r and α that change together at a fixed α/r are one factor, 'rank'. micro × accum that keep the effective
    batch are one factor, 'batch split' — with our per-token loss it does not change the objective, so it is
    noted but does not confound; a change of effective batch is its own factor."""
    diffs = dict(diffs)
    out = FactorDiff()
    r, alpha = diffs.pop("lora.r", None), diffs.pop("lora.alpha", None)
    if r is not None and alpha is not None and r[0] and r[1] and alpha[0] / r[0] == alpha[1] / r[1]:
        out.factors["rank"] = r
    else:
        if r is not None:
            out.factors["rank"] = r
        if alpha is not None:
            out.factors["lora.alpha"] = alpha
    micro, accum = diffs.pop("batch.micro", None), diffs.pop("batch.accum", None)
    effective = diffs.pop("batch.effective", None)
    if micro or accum:
        # (a, b) values of each; a missing entry means the two arms agree on it
        m = micro or ("=", "=")
        ac = accum or ("=", "=")
        split = (f"{m[0]}×{ac[0]}", f"{m[1]}×{ac[1]}")
        if effective:  # a different effective batch is a real factor (different objective and step count)
            out.factors["effective batch"] = (f"{split[0]}={effective[0]}", f"{split[1]}={effective[1]}")
        else:
            out.factors["batch split"] = split
    for k, v in diffs.items():
        name = {"data.size": "data size"}.get(k, k)
        out.factors[name] = v
    return out


def effective_changes(cfg_a: dict | None, cfg_b: dict | None) -> bool:
    if cfg_a is None or cfg_b is None:
        return False
    ea = cfg_a["batch"]["micro"] * cfg_a["batch"]["accum"]
    eb = cfg_b["batch"]["micro"] * cfg_b["batch"]["accum"]
    return ea != eb


@dataclass
class Effect:
    name: str
    interval: Interval


def factorial_2x2(cells: dict[tuple, dict[int, dict[str, float]]], seed: int = 0, n_boot: int = N_BOOT) -> list[Effect]:
    """Main effects and interaction of a full 2 × 2. `cells[(lo|hi of factor 1, lo|hi of factor 2)]` holds
    seed -> item -> score. Effects are on the metric's scale; the interaction is the difference of differences."""
    keys = [(0, 0), (0, 1), (1, 0), (1, 1)]
    mats = [cells[k] for k in keys]
    seeds = sorted(set.intersection(*(set(m) for m in mats)))
    items = sorted(set.intersection(*(set(m[s]) for m in mats for s in seeds)))
    Y = np.array([[[np.nan if m[s][i] is None else m[s][i] for i in items] for s in seeds] for m in mats])
    rng = np.random.default_rng(seed)

    def effects(cell_means):  # (4, …) cell means -> (3, …): main effect 1, main effect 2, interaction
        y00, y01, y10, y11 = cell_means
        return np.stack([((y10 - y00) + (y11 - y01)) / 2, ((y01 - y00) + (y11 - y10)) / 2,
                         (y11 - y10) - (y01 - y00)])

    point = effects(np.nanmean(Y, axis=(1, 2)))
    n_s, n_i = len(seeds), len(items)
    s, i = _resample_indices(rng, n_s, n_i, n_boot)
    boots = effects(_nanmean_last2(Y[:, s, i])).T  # (n_boot, 3)
    out = []
    for j, name in enumerate(("main effect 1", "main effect 2", "interaction")):
        lo, hi = _ci(boots[:, j])
        out.append(Effect(name, Interval(float(point[j]), lo, hi, n_s, n_i)))
    return out


def goldilocks(levels: list[tuple[float, dict]], seed: int = 0) -> tuple[bool, str]:
    """Ordered factor (e.g. rank 16/32/48): an interior optimum is claimed only when a middle level beats both
    neighbours with paired CIs excluding zero. `levels` = [(level, seed -> item -> score)] sorted by level."""
    if len(levels) < 3:
        return False, "not supported by the data (needs at least three levels)"
    for j in range(1, len(levels) - 1):
        (lo_v, lo), (mid_v, mid), (hi_v, hi) = levels[j - 1], levels[j], levels[j + 1]
        left, right = compare(mid, lo, "m", seed=seed), compare(mid, hi, "m", seed=seed)
        if left and right and left.delta.low > 0 and right.delta.low > 0:
            return True, (f"interior optimum at {mid_v:g}: beats {lo_v:g} by {left.delta.mean:+.4f} "
                          f"[{left.delta.low:+.4f}, {left.delta.high:+.4f}] and {hi_v:g} by {right.delta.mean:+.4f} "
                          f"[{right.delta.low:+.4f}, {right.delta.high:+.4f}]")
    return False, "not supported by the data (no middle level beats both neighbours with CIs excluding 0)"


def required_seeds(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], power: float = 0.8,
                   alpha: float = ALPHA) -> int | None:
    """Seeds per arm for a paired test of the observed difference to reach `power`, from the seed-to-seed
    spread of per-seed mean differences: n = ((z₁₋α/₂ + z_power) σ / δ)². None if it can't be estimated."""
    A, B = align(a, b)
    if A.shape[0] < 2:
        return None
    per_seed = np.nanmean(A - B, axis=1)
    delta, sd = abs(float(per_seed.mean())), float(per_seed.std(ddof=1))
    if delta == 0:
        return None
    if sd == 0:
        return 2
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return max(2, math.ceil((z * sd / delta) ** 2))
