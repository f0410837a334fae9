"""Power of the seed-level rule at this study's design, by simulation from its measured variance components (the
report's "Power" section, `study power` and `study plan`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ada_slm.analysis.arms import ArmData, matrix
from ada_slm.stats import contrasts
from ada_slm.stats.pairing import MIN_PAIRS
from ada_slm.stats.power_simulation import PowerInputs, detectable_effect, power_inputs, seeds_needed
from ada_slm.study.spec import Study


@dataclass
class Power:
    metric: str
    inputs: PowerInputs
    alpha: float  # the threshold of the first Holm step over the decision's questions
    n_seeds: int
    detectable: dict[int, float]  # runs per arm -> smallest |Δ| detected with 80 % power, in the study's design
    min_effect: float | None = None
    seeds_for_min_effect: int | None = None
    paired: bool = False  # `detectable` is of runs paired by seed (the study's pairing, where pairs were measured)
    detectable_unpaired: dict[int, float] | None = None  # the same for independent runs, to show the gain


DEFAULT_POWER_SEEDS = (3, 5, 8, 12, 20)
MEDIAN_FIELDS = ("run_mean_sd", "residual_sd", "interaction_sd")


def power(
    study: Study, arms: dict[str, ArmData], metric: str, min_effect: float | None = None, n_tests: int | None = None
) -> Power | None:
    """Power of the rule on `metric` from this study's variance components (the median over the trained arms'
    comparisons with the baseline), at the first Holm step of the decision's questions (`n_tests`: those
    asked; default all), in the study's pairing."""
    ref = arms.get(study.baseline)
    ref_y = matrix(ref.scores[metric]) if ref is not None else None
    if ref is None or ref_y is None:
        return None
    found = []
    for name in [n for n, a in arms.items() if a.config is not None and a.records]:  # the trained arms
        if name == study.baseline:
            continue
        # over the items every run of both has (a run with fewer items, a cut eval.jsonl, narrows both)
        m = contrasts.matrices(arms[name].scores[metric], ref.scores[metric], contrasts.Design("seed"))
        inputs = power_inputs(m.A, m.B, m.pairs) if m is not None else None
        if inputs is not None:
            found.append(inputs)
    if not found:
        return None
    run_mean_sd, residual_sd, interaction_sd = (float(np.median([getattr(i, f) for i in found])) for f in MEDIAN_FIELDS)
    inputs = PowerInputs(run_mean_sd, residual_sd, interaction_sd, int(min(i.n_items for i in found)))
    paired_found = [i for i in found if i.can_pair]
    if study.pairing == "seed" and paired_found:
        inputs.paired_run_mean_sd = float(np.median([i.paired_run_mean_sd for i in paired_found]))
        inputs.paired_residual_sd = float(np.median([i.paired_residual_sd for i in paired_found]))
    n_tests = n_tests or (len(study.decision.questions) if study.decision else 1)
    return power_from(
        inputs, metric, ref_y.shape[0], n_tests, min_effect or (study.decision.min_effect if study.decision else None)
    )


def power_from(
    inputs: PowerInputs, metric: str, n_seeds: int, n_tests: int = 1, min_effect: float | None = None
) -> Power:
    """Power at these inputs: paired by seed where the inputs hold what pairing leaves (PowerInputs.can_pair),
    with the unpaired figures beside them."""
    alpha = contrasts.ALPHA / max(1, n_tests)
    seeds = sorted({n_seeds, *DEFAULT_POWER_SEEDS} - {0, 1})
    paired = inputs.can_pair and n_seeds >= MIN_PAIRS  # as `compare` will: pairs from MIN_PAIRS shared seeds on
    detectable = {k: detectable_effect(inputs, k, alpha=alpha, paired=paired and k >= MIN_PAIRS) for k in seeds}
    needed = seeds_needed(inputs, min_effect, alpha=alpha, paired=paired) if min_effect else None
    out = Power(metric, inputs, alpha, n_seeds, detectable, min_effect, needed, paired)
    if paired:
        out.detectable_unpaired = {k: detectable_effect(inputs, k, alpha=alpha) for k in seeds}
    return out
