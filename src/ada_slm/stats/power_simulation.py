"""Power of the study's rule (`stats.Comparison.supported`: the seed-level t test) by simulation, from variance
components measured on finished runs or stated.

  PowerInputs        what power depends on: run-mean SD, residual SD, arm × item SD, number of items
  power_at           P(the rule supports Δ) at n runs per arm
  detectable_effect  smallest |Δ| supported with 80 % power at n runs per arm
  seeds_needed       fewest runs per arm for a given Δ
  power_inputs       those inputs pooled from two arms' Y[run, item]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ada_slm.stats.contrasts import ALPHA, combine, finite_items, t_test, variance_components
from ada_slm.stats.pairing import MIN_PAIRS


@dataclass
class PowerInputs:
    """What the test's power depends on, per arm: SD of one run's mean over the items, residual SD, and the SD
    of the arm × item interaction; plus the number of items."""

    run_mean_sd: float
    residual_sd: float
    interaction_sd: float
    n_items: int
    # with runs paired by seed: the same two SDs of what is left of one run after pairing (a same-seed difference's
    # SD over √2, so that they compare with the unpaired ones); None where no pairs were measured
    paired_run_mean_sd: float | None = None
    paired_residual_sd: float | None = None

    @property
    def can_pair(self) -> bool:
        return self.paired_run_mean_sd is not None and self.paired_residual_sd is not None


def _simulate_null(inputs: PowerInputs, n_seeds: int, n_sim: int, rng: np.random.Generator, paired: bool = False):
    """(estimate − Δ, se, df) of `compare` on simulated 2-arm studies, drawn from the statistics' exact
    distributions under the crossed normal model (balanced ANOVA: the mean squares are independent χ² and
    independent of the means), then combined by the same `stats.combine` the real comparison uses."""
    if paired:
        return _simulate_paired_null(inputs, n_seeds, n_sim, rng)
    n_i, k = inputs.n_items, n_seeds
    s2_run, s2_e, s2_w = inputs.run_mean_sd**2, inputs.residual_sd**2, inputs.interaction_sd**2
    est = rng.normal(0, math.sqrt(2 * s2_run / k + 2 * s2_w / n_i), n_sim)
    s2 = [s2_run * rng.chisquare(k - 1, n_sim) / (k - 1) for _ in range(2)]
    if n_i > 1:
        ms_e = [s2_e * rng.chisquare((k - 1) * (n_i - 1), n_sim) / ((k - 1) * (n_i - 1)) for _ in range(2)]
        d_var = (2 * s2_w + 2 * s2_e / k) * rng.chisquare(n_i - 1, n_sim) / (n_i - 1)
        item_part = np.maximum(0.0, d_var - (ms_e[0] + ms_e[1]) / k) / n_i
        s2 = [np.maximum(s, (ms_e[0] + ms_e[1]) / 2 / n_i) for s in s2]  # `contrast`'s floor, equal d.f.
    else:
        item_part = np.zeros(n_sim)
    return combine(est, [s / k for s in s2], [k - 1, k - 1], item_part, n_i - 1)


def _simulate_paired_null(inputs: PowerInputs, n_seeds: int, n_sim: int, rng: np.random.Generator):
    """The same for runs paired by seed: `compare`'s contrast of the one matrix of same-seed differences, whose
    run means vary by 2 · paired_run_mean_sd² and residual by 2 · paired_residual_sd² (k − 1 seed d.f.)."""
    if inputs.paired_run_mean_sd is None or inputs.paired_residual_sd is None:
        raise ValueError("paired power needs the paired SDs (PowerInputs.can_pair)")
    n_i, k = inputs.n_items, n_seeds
    s2_run, s2_e, s2_w = 2 * inputs.paired_run_mean_sd**2, 2 * inputs.paired_residual_sd**2, inputs.interaction_sd**2
    est = rng.normal(0, math.sqrt(s2_run / k + 2 * s2_w / n_i), n_sim)
    s2 = s2_run * rng.chisquare(k - 1, n_sim) / (k - 1)
    if n_i > 1:
        ms_e = s2_e * rng.chisquare((k - 1) * (n_i - 1), n_sim) / ((k - 1) * (n_i - 1))
        d_var = (2 * s2_w + s2_e / k) * rng.chisquare(n_i - 1, n_sim) / (n_i - 1)
        item_part = np.maximum(0.0, d_var - ms_e / k) / n_i
        s2 = np.maximum(s2, ms_e / n_i)  # `contrast`'s floor for one matrix
    else:
        item_part = np.zeros(n_sim)
    return combine(est, [s2 / k], [k - 1], item_part, n_i - 1)


def power_at(
    inputs: PowerInputs,
    n_seeds: int,
    effect: float,
    alpha: float = ALPHA,
    n_sim: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> float:
    """P(the rule supports Δ = effect) with n_seeds runs per arm (paired by seed or not), by simulation."""
    noise, se, df = _simulate_null(inputs, n_seeds, n_sim, np.random.default_rng(seed), paired)
    p, _, _ = t_test(noise + effect, se, df, alpha)
    return float(np.mean(p < alpha))


def detectable_effect(
    inputs: PowerInputs,
    n_seeds: int,
    power: float = 0.8,
    alpha: float = ALPHA,
    n_sim: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> float:
    """Smallest |Δ| the rule detects with `power` at n_seeds runs per arm (common random numbers, bisection)."""
    noise, se, df = _simulate_null(inputs, n_seeds, n_sim, np.random.default_rng(seed), paired)
    crit = sps.t.ppf(1 - alpha / 2, df) * se
    lo, hi = 0.0, float(np.nanmax(crit) * 4 + 1e-12)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if np.mean(np.abs(noise + mid) > crit) >= power else (mid, hi)
    return hi


def seeds_needed(
    inputs: PowerInputs,
    effect: float,
    power: float = 0.8,
    alpha: float = ALPHA,
    max_seeds: int = 100,
    n_sim: int = 4000,
    seed: int = 0,
    paired: bool = False,
) -> int | None:
    """Fewest runs per arm (≥ 2) at which the rule supports Δ = effect with `power`; None beyond max_seeds."""
    for k in range(2, max_seeds + 1):  # paired from MIN_PAIRS runs on, as `compare` pairs
        if power_at(inputs, k, effect, alpha, n_sim, seed, paired and k >= MIN_PAIRS) >= power:
            return k
    return None


def power_inputs(
    a: np.ndarray, b: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None = None
) -> PowerInputs | None:
    """Pooled power inputs of two arms' Y[run, item] (each with ≥ 2 runs); with `pairs` (their same-seed rows,
    ≥ 2 of them) also what remains of a run after pairing by seed."""
    ca, cb = variance_components(a), variance_components(b)
    if ca is None or cb is None:
        return None
    A, B = finite_items([a, b])
    run_sd = math.sqrt((ca.run_mean_sd**2 + cb.run_mean_sd**2) / 2)
    res_sd = math.sqrt((ca.residual_sd**2 + cb.residual_sd**2) / 2)
    inter = 0.0
    if A.shape[1] > 1:
        d = A.mean(0) - B.mean(0)
        inter = math.sqrt(max(0.0, float(d.var(ddof=1)) - res_sd**2 * (1 / A.shape[0] + 1 / B.shape[0])) / 2)
    out = PowerInputs(run_sd, res_sd, inter, A.shape[1])
    if pairs is not None and pairs[0].shape[0] >= 2:
        diff = variance_components(pairs[0] - pairs[1])
        if diff is not None:  # a difference of two runs: its SDs over √2 are per run
            out.paired_run_mean_sd = diff.run_mean_sd / math.sqrt(2)
            out.paired_residual_sd = diff.residual_sd / math.sqrt(2)
    return out
