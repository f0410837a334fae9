"""Statistics that keep a study honest: the training run is the unit of inference.

Data shape: for one arm and one metric, a matrix `Y[run, item]` of per-item scores (NaN where the metric does
not apply); a run-level quantity (held-out loss, tokens/s) is the same with one column. The model behind every
interval is a crossed random-effects model

    Y[arm, run, item] = μ_arm + u[arm, run] + v[item] + w[arm, item] + e[arm, run, item]

— training noise u is shared by every item of one run, item effects v are shared by every run and arm (the same
items are scored everywhere), w is the arm × item interaction, e the residual. The 133 items of one run are
not 133 independent facts: they share u. So a contrast of arm means (Δ of two arms, a 2 × 2 effect, a ratio)
gets its variance from

    seed part   Σ c²ₖ s²ₖ / nₖ        s²ₖ = variance of arm k's per-run means (n_k - 1 degrees of freedom)
    item part   (var over items of Σ cₖ ȳₖ[item] - Σ c²ₖ MSₑₖ / nₖ)⁺ / n_items      (n_items - 1 d.f.)

with Welch–Satterthwaite degrees of freedom, a t interval and a t p-value: the interval targets the population
of items (not only these 133) and of training runs. At 3 vs 3 runs that is a t with ≈ 4 d.f., not a normal.

Fixed by the design (`pairing.Design`): runs paired by seed (one matrix Y_a − Y_b), items clustered by template.

  Interval / arm_interval  mean and 95 % CI of one arm
  compare                  Δ of two arms: CI, t p, exact permutation (sign-flip) p, % and × over a clear baseline
  Comparison.supported     THE rule: Holm-adjusted p < 0.05 (which implies the CI excludes 0)
  equivalence              TOST with a stated margin: the only way this module claims "no difference"
  variance_components      seed-to-seed SD vs item SD vs residual SD of one arm

Contrasts of several arms: `factorial`; power: `power`; what differs between arms: `design` (numbers only here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from ada_slm.stats.pairing import (  # noqa: F401 (re-exported)
    PAIRINGS,
    Design,
    Matrices,
    align,
    align_items,
    clustered_mean_variance,
    finite_columns,
    matrices,
)
from ada_slm.stats.permutation import N_PERM, permutation_p, sign_flip_p

ALPHA = 0.05
N_BOOT = 2000  # kept for callers that pass n_boot; intervals are analytic


# ------------------------------------------------------------------------------------------ the contrast
@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n_seeds: int
    n_items: int
    se: float = math.nan
    df: float = math.nan
    bounded: bool = False  # a mean of per-item scores that all lie in [0, 1]: a proportion (reports clip its CI)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def finite_items(mats: list[np.ndarray]) -> list[np.ndarray]:
    """Keep the items (columns) scored in every run of every arm: the contrast is over shared items."""
    keep = finite_columns(mats)
    return [m[..., keep] for m in mats]


def _arm_summary(y: np.ndarray):
    """(grand mean, item means, variance of run means, residual mean square) of Y[..., run, item]."""
    n_s, n_i = y.shape[-2:]
    run_means, item_means = y.mean(-1), y.mean(-2)
    grand = run_means.mean(-1)
    with np.errstate(all="ignore"):
        s2 = run_means.var(-1, ddof=1) if n_s > 1 else np.full(grand.shape, np.nan)
        if n_s > 1 and n_i > 1:
            resid = y - run_means[..., None] - item_means[..., None, :] + grand[..., None, None]
            ms_e = (resid**2).sum((-2, -1)) / ((n_s - 1) * (n_i - 1))
        else:
            ms_e = np.zeros(grand.shape)
    return grand, item_means, s2, ms_e


def contrast(mats: list[np.ndarray], coefs: list[float], clusters: np.ndarray | None = None):
    """Σ cₖ · mean(armₖ) with its standard error and Welch–Satterthwaite degrees of freedom.

    Two guards on the seed part: each arm's variance of run means is floored at the pooled residual's share
    (`_run_mean_variance_floor`: no zero-width interval from runs that happen to agree), and with unequal runs
    per arm the seed part takes Hsu's d.f., min nₖ − 1.

    `mats` are Y[..., run, item] over the same items (leading axes = independent simulated studies); `clusters`
    labels the items' templates (clustered_mean_variance: the item part then has clusters − 1 d.f.). A paired
    contrast is this with one matrix, the same-seed differences (`compare`). Returns arrays (estimate, se, df);
    se is NaN when an arm has a single run (no seed-to-seed variance to estimate)."""
    summaries = [_arm_summary(m) for m in mats]
    est = sum(c * s[0] for c, s in zip(coefs, summaries, strict=True))
    n_i = mats[0].shape[-1]
    floor = _run_mean_variance_floor([s[3] for s in summaries], [m.shape[-2] for m in mats], coefs, n_i)
    seed_parts = [c * c * np.maximum(s[2], floor) / m.shape[-2] for c, s, m in zip(coefs, summaries, mats, strict=True)]
    seed_dfs = [m.shape[-2] - 1 for m in mats]
    runs = {m.shape[-2] for c, m in zip(coefs, mats, strict=True) if c != 0}
    if len(runs) > 1:
        # Unequal runs per arm: Satterthwaite's estimated d.f. is too high exactly when the arm with fewer runs
        # is the noisier one (its s² is then often underestimated, which also raises the d.f.): at 3 vs 2 runs
        # that called 8 % of nulls supported. Hsu's conservative d.f. — the seed part gets the d.f. of the
        # smallest arm, min nₖ − 1 — keeps the rate below α whatever the variance ratio.
        seed_parts, seed_dfs = [sum(seed_parts)], [min(runs) - 1]
    item_df = n_i - 1
    if n_i > 1:
        d = sum(c * s[1] for c, s in zip(coefs, summaries, strict=True))
        residual = sum(c * c * s[3] / m.shape[-2] for c, s, m in zip(coefs, summaries, mats, strict=True))
        mean_var, n_clusters = clustered_mean_variance(d, clusters)
        item_part, item_df = np.maximum(0.0, mean_var - residual / n_i), n_clusters - 1
    else:
        item_part = np.zeros(np.shape(est))
    return combine(est, seed_parts, seed_dfs, item_part, item_df)


def _run_mean_variance_floor(ms_es, n_runs, coefs, n_items):
    """Smallest variance of one run's mean that the data allow: the residual mean square (pooled over the arms
    of the contrast, weighted by its degrees of freedom) over the items. E s²ₖ = σ²ᵤ + σ²ₑ / items and σ²ᵤ ≥ 0,
    so a variance of run means below σ²ₑ / items is noise in s²ₖ; pooling keeps an arm whose runs happen to
    agree exactly (a perfect arm, or runs that each miss one different item) from claiming zero variance."""
    if n_items < 2:
        return 0.0
    weights = [(k - 1) * (n_items - 1) if c != 0 and k > 1 else 0 for c, k in zip(coefs, n_runs, strict=True)]
    if sum(weights) == 0:
        return 0.0
    return sum(w * m for w, m in zip(weights, ms_es, strict=True)) / sum(weights) / n_items


SEED_DF_QUANTILE = 0.35  # the seed part enters the d.f. at its value over this quantile of its χ² (see combine)


def combine(est, seed_parts, seed_dfs, item_part, item_df):
    """(estimate, se, Welch–Satterthwaite df) from the seed parts and the item part of a contrast's variance
    (also what `power` combines simulated mean squares with, so power is of this very test).

    Satterthwaite's estimated d.f. rise exactly when a seed part with 2 d.f. happens to be underestimated — the
    interval is then too narrow twice over. Measured: 6.6 % false positives at α 0.05 with 3 seed-paired runs
    whose seed part and item part are of one size. So in the d.f. (not the se) each seed part counts as its
    value × ν / χ²_ν(0.35), a plausible upper value: ≤ 4.8 % false positives at every setting of
    tests/test_pairing.py (seed correlation 0–0.95, 3 vs 3, 3 vs 2, 4 vs 3; 20,000 studies a cell), at a few
    points of power where the item part dominates (0.68 against 0.71 at Δ 0.03 in one such setting)."""
    var = sum(seed_parts) + item_part
    with np.errstate(all="ignore"):
        upper = [
            p * k / sps.chi2.ppf(SEED_DF_QUANTILE, np.maximum(k, 1)) for p, k in zip(seed_parts, seed_dfs, strict=True)
        ]
        denom = sum(p * p / np.maximum(k, 1) for p, k in zip(upper, seed_dfs, strict=True)) + item_part**2 / max(
            item_df, 1
        )
        df = np.where(denom > 0, (sum(upper) + item_part) ** 2 / denom, np.inf)
    return est, np.sqrt(var), df


def t_test(est, se, df, alpha: float = ALPHA):
    """(p two-sided, low, high) of the t interval; se = 0 gives p 1 for a zero estimate, else 0."""
    with np.errstate(all="ignore"):
        t = np.abs(est) / se
        p = np.where(se > 0, 2 * sps.t.sf(t, df), np.where(est == 0, 1.0, 0.0))
        p = np.where(np.isnan(se), np.nan, p)  # one run per arm: no seed-level variance, no test
        half = sps.t.ppf(1 - alpha / 2, df) * se
    return p, est - half, est + half


def t_interval(est, se, df, n_seeds, n_items) -> Interval:
    """The 95 % t interval of a contrast as an `Interval`."""
    _, lo, hi = t_test(est, se, df)
    return Interval(float(est), float(lo), float(hi), n_seeds, n_items, float(se), float(df))


def arm_interval(y: np.ndarray, seed: int = 0) -> Interval:
    """Mean of one arm with a 95 % t interval over runs and items (runs and items both random)."""
    (y,) = finite_items([y])
    if y.size == 0:
        return Interval(math.nan, math.nan, math.nan, y.shape[0], 0)
    est, se, df = contrast([y], [1.0])
    bounded = bool(y.shape[1] > 1 and np.all((y >= 0) & (y <= 1)))
    if not np.isfinite(se):  # one run: only the item part is estimable; say so by an open interval
        return Interval(float(est), math.nan, math.nan, y.shape[0], y.shape[1], bounded=bounded)
    iv = t_interval(est, se, df, y.shape[0], y.shape[1])
    iv.bounded = bounded
    return iv


# ------------------------------------------------------------------------------------------ variance components
@dataclass
class VarianceComponents:
    """Of one arm on one metric: what adding runs vs adding items would buy."""

    seed_sd: float  # SD of training-run effects (u), after removing the item noise in each run's mean
    item_sd: float  # SD of item effects (v + w) across items
    residual_sd: float  # SD of run × item noise (e)
    n_seeds: int
    n_items: int

    @property
    def run_mean_sd(self) -> float:
        """SD of one run's mean over these items: what the seed-level test divides by."""
        return math.sqrt(self.seed_sd**2 + self.residual_sd**2 / max(self.n_items, 1))


def variance_components(y: np.ndarray) -> VarianceComponents | None:
    (y,) = finite_items([y])
    if y.shape[0] < 2 or y.size == 0:
        return None
    _, item_means, s2, ms_e = _arm_summary(y)
    n_s, n_i = y.shape
    item_var = max(0.0, float(item_means.var(ddof=1) - ms_e / n_s)) if n_i > 1 else 0.0
    seed_var = max(0.0, float(s2 - ms_e / n_i)) if n_i > 1 else float(s2)
    return VarianceComponents(math.sqrt(seed_var), math.sqrt(item_var), math.sqrt(float(ms_e)), n_s, n_i)


# ------------------------------------------------------------------------------------------ comparison
def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone)."""
    names = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(names)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(names):
        running = max(running, min(1.0, (m - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


TEST_NAME = "Welch t on per-run means (+ arm × item variance), Satterthwaite d.f."


@dataclass
class Comparison:
    metric: str
    delta: Interval
    p: float
    p_holm: float = math.nan
    baseline: Interval = field(kw_only=True)  # the baseline arm's mean and CI (always given: compare)
    ratio: tuple[float, float, float] | None = None  # (×, low, high) or None when not meaningful
    percent: tuple[float, float, float] | None = None
    ratio_note: str = ""
    p_perm: float = math.nan  # exact seed-level permutation p (run labels shuffled), when ≥ 2 runs per arm
    p_perm_min: float = math.nan  # the smallest p that permutation can give with these runs
    test: str = TEST_NAME
    interaction_sd: float = math.nan  # SD of the arm × item interaction, for power
    family: str = ""  # the Holm family p_holm is adjusted over, in words ("" = tested alone)
    pairing: str = "unpaired"  # "paired by seed (k pairs)": the interval is of the same-seed differences
    n_clusters: int = 0  # item clusters (templates) of the item term; 0: items independent
    effective_items: float = math.nan  # what the clustered items are worth as independent items

    @property
    def supported(self) -> bool:
        """The one rule for 'supported': Holm-adjusted (over `family`; alone, raw) t p-value below 0.05."""
        p = self.p_holm if math.isfinite(self.p_holm) else self.p
        return bool(math.isfinite(p) and p < ALPHA and self.delta.excludes_zero())

    @property
    def significant(self) -> bool:  # the name older scripts use
        return self.supported


def format_p(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def apply_holm(comparisons: dict[str, Comparison], family: str) -> None:
    """Holm's correction over one named family of comparisons: sets p_holm and names the family, so every
    verdict says which tests it was corrected with (a Δ can be corrected in two families: the metrics of a
    comparison in its table, the questions in the decision)."""
    finite = {k: c.p for k, c in comparisons.items() if math.isfinite(c.p)}
    for k, p in holm(finite).items():
        comparisons[k].p_holm = p
        comparisons[k].family = f"{family} ({len(finite)} tests)" if len(finite) > 1 else ""


def short_verdict(c: Comparison) -> str:
    """The rule in a table cell: 'supported', '—' (not distinguishable), or why there is no test."""
    if math.isnan(c.p):
        return "no test (one run)"
    return "supported" if c.supported else "—"


def verdict(c: Comparison) -> str:
    """The rule in words, with its p and the family it was corrected over."""
    if math.isnan(c.p):
        return "no test (one run per arm)"
    word = "supported" if c.supported else "not distinguishable"
    if c.family:
        return f"{word} (Holm p {format_p(c.p_holm)} over {c.family})"
    return f"{word} (p {format_p(c.p)})"


def delta_contrast(m: Matrices, ca: float = 1.0, cb: float = -1.0):
    """ca · mean(a) + cb · mean(b) with its (se, df): over the same-seed differences when paired, else over the
    two arms' runs as independent samples; the item term clustered by m.labels."""
    if m.pairs is not None:
        PA, PB = m.pairs
        return contrast([ca * PA + cb * PB], [1.0], m.labels)
    return contrast([m.A, m.B], [ca, cb], m.labels)


def effective_items(m: Matrices) -> float:
    """How many independent items the clustered item term is worth: var(d) / (its cluster-robust variance of the
    mean), d the per-item differences of the arm means (n when items are independent; fewer when items of one
    template move together)."""
    d = (m.pairs[0] - m.pairs[1]).mean(0) if m.pairs is not None else m.A.mean(0) - m.B.mean(0)
    n = d.shape[-1]
    if m.labels is None or n < 2:
        return float(n)
    v, _ = clustered_mean_variance(d, m.labels)
    return float(np.clip(d.var(ddof=1) / v, 1.0, n)) if v > 0 else float(n)


def compare(
    a: dict[int, dict[str, float | None]],
    b: dict[int, dict[str, float | None]],
    metric: str,
    noise_floor: float = 0.0,
    seed: int = 0,
    n_boot: int = N_BOOT,
    n_perm: int = N_PERM,
    design: Design | None = None,
) -> Comparison | None:
    """Arm `a` against baseline `b` (both: run seed -> item id -> score) under `design` (pairing by seed, item
    clusters; default: independent runs and items); None without shared data."""
    m = matrices(a, b, design)
    if m is None:
        return None
    A, B = m.A, m.B
    n_items = A.shape[1]
    n_runs = m.pairs[0].shape[0] if m.pairs is not None else min(A.shape[0], B.shape[0])
    est, se, df = delta_contrast(m)
    p, lo, hi = t_test(est, se, df)
    delta = Interval(float(est), float(lo), float(hi), n_runs, n_items, float(se), float(df))
    baseline = arm_interval(B)
    result = Comparison(metric, delta, float(p), baseline=baseline, pairing=_pairing_words(m))
    if m.labels is not None and n_items > 1:
        result.n_clusters, result.effective_items = len(set(m.labels)), effective_items(m)
    if m.pairs is not None:
        result.p_perm, result.p_perm_min = sign_flip_p(m.pairs[0].mean(1) - m.pairs[1].mean(1), seed, n_perm)
    elif A.shape[0] > 1 and B.shape[0] > 1:
        result.p_perm, result.p_perm_min = permutation_p(A.mean(1), B.mean(1), seed, n_perm)
    if A.shape[0] > 1 and B.shape[0] > 1 and n_items > 1:
        d = A.mean(0) - B.mean(0)
        resid = _arm_summary(A)[3] / A.shape[0] + _arm_summary(B)[3] / B.shape[0]
        result.interaction_sd = math.sqrt(max(0.0, float(d.var(ddof=1) - resid)) / 2)
    _ratio(result, m, noise_floor)
    return result


def _pairing_words(m: Matrices) -> str:
    return f"paired by seed ({m.pairs[0].shape[0]} pairs)" if m.pairs is not None else "unpaired"


def _ratio(result: Comparison, m: Matrices, noise_floor: float) -> None:
    """× and % of the baseline, by the delta method on log(mean_a / mean_b) with the same seed and item parts —
    only over a baseline clearly above zero and the base model's floor; otherwise why not."""
    baseline, mean_a = result.baseline, float(m.A.mean())
    if not math.isfinite(baseline.low) or not math.isfinite(result.delta.se):
        result.ratio_note = "n/a (one run per arm: no CI)"
    elif baseline.low > 0 and baseline.mean > noise_floor and mean_a > 0:
        _, l_se, l_df = delta_contrast(m, 1.0 / mean_a, -1.0 / baseline.mean)
        _, l_lo, l_hi = t_test(0.0, l_se, l_df)
        ratio = mean_a / baseline.mean
        low, high = ratio * math.exp(float(l_lo)), ratio * math.exp(float(l_hi))
        result.ratio = (ratio, low, high)
        result.percent = (100 * (ratio - 1), 100 * (low - 1), 100 * (high - 1))
    elif baseline.low > 0 and baseline.mean <= noise_floor:
        result.ratio_note = "n/a (baseline ≤ base model's floor)"
    elif baseline.low > 0:  # a clear baseline, this arm's mean 0: no log ratio
        result.ratio_note = "n/a (this arm's mean is 0)"
    else:
        result.ratio_note = "n/a (baseline ≈ 0)"


def compare_all(
    a, b, metrics: list[str], noise_floors: dict[str, float] | None = None, design: Design | None = None
) -> dict[str, Comparison]:
    """`compare` for every metric, with Holm's correction across the metrics of this one comparison."""
    out = {}
    for m in metrics:
        c = compare(a.get(m, {}), b.get(m, {}), m, (noise_floors or {}).get(m, 0.0), design=design)
        if c is not None and math.isfinite(c.delta.mean):
            out[m] = c
    apply_holm(out, "the metrics of this comparison")
    return out


@dataclass
class Equivalence:
    margin: float
    low: float  # 90 % CI of Δ (the TOST interval)
    high: float
    p: float  # TOST p: the larger of the two one-sided p-values

    @property
    def equivalent(self) -> bool:
        return bool(self.p < ALPHA)


def equivalence(a, b, margin: float, design: Design | None = None) -> Equivalence | None:
    """Two one-sided t tests of |Δ| < margin (the same contrast, pairing and item clusters as `compare`):
    equivalence is claimed only when both reject, i.e. the 90 % CI of Δ lies inside ±margin — never from 'not
    significant'."""
    m = matrices(a, b, design)
    if m is None or m.A.shape[0] < 2 or m.B.shape[0] < 2:
        return None
    est, se, df = delta_contrast(m)
    if not se > 0:
        return Equivalence(margin, float(est), float(est), 0.0 if abs(est) < margin else 1.0)
    p_low = sps.t.sf((est + margin) / se, df)  # H0: Δ ≤ -margin
    p_high = sps.t.cdf((est - margin) / se, df)  # H0: Δ ≥ margin
    half = sps.t.ppf(0.95, df) * se
    return Equivalence(margin, float(est - half), float(est + half), float(max(p_low, p_high)))
