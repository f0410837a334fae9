"""Power of the seed-level rule at this study's design, by simulation from its measured variance components (the
report's "Power" section, `study power` and `study plan`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ada_slm.analysis import stats
from ada_slm.analysis.arms import ArmData, matrix
from ada_slm.analysis.power_simulation import PowerInputs, detectable_effect, power_inputs, seeds_needed
from ada_slm.study.spec import Study


@dataclass
class Power:
    metric: str
    inputs: PowerInputs
    alpha: float  # the threshold of the first Holm step over the decision's questions
    n_seeds: int
    detectable: dict[int, float]  # runs per arm -> smallest |Δ| detected with 80 % power
    min_effect: float | None = None
    seeds_for_min_effect: int | None = None


DEFAULT_POWER_SEEDS = (3, 5, 8, 12, 20)


def power(study: Study, arms: dict[str, ArmData], metric: str, min_effect: float | None = None,
          n_tests: int | None = None) -> Power | None:
    """Power of the rule on `metric` from this study's variance components (the median over the trained arms'
    comparisons with the baseline), at the first Holm step of the decision's questions (`n_tests`: those
    asked; default all)."""
    ref = arms.get(study.baseline)
    ref_y = matrix(ref.scores[metric]) if ref else None
    if ref_y is None:
        return None
    found = []
    for name in [n for n, a in arms.items() if a.config is not None and a.records]:  # the trained arms
        if name == study.baseline:
            continue
        y, paired_ref = _on_shared_items(arms[name].scores[metric], ref.scores[metric])
        if y is not None and paired_ref is not None:  # a run with fewer items (a cut eval.jsonl) narrows both
            inputs = power_inputs(y, paired_ref)
            if inputs is not None:
                found.append(inputs)
    if not found:
        return None
    inputs = PowerInputs(*(float(np.median([getattr(i, f) for i in found]))
                                 for f in ("run_mean_sd", "residual_sd", "interaction_sd")),
                               int(min(i.n_items for i in found)))
    n_tests = n_tests or (len(study.decision.questions) if study.decision else 1)
    return power_from(inputs, metric, ref_y.shape[0], n_tests,
                      min_effect or (study.decision.min_effect if study.decision else None))


def _on_shared_items(a: dict, b: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """matrix() of two arms' scores over the items every run of both has."""
    if not a or not b:
        return None, None
    shared = set.intersection(*(set(v) for v in (*a.values(), *b.values())))
    return (matrix({k: {i: v[i] for i in shared} for k, v in a.items()}),
            matrix({k: {i: v[i] for i in shared} for k, v in b.items()}))


def power_from(inputs: PowerInputs, metric: str, n_seeds: int, n_tests: int = 1,
               min_effect: float | None = None) -> Power:
    alpha = stats.ALPHA / max(1, n_tests)
    seeds = sorted({n_seeds, *DEFAULT_POWER_SEEDS} - {0, 1})
    detectable = {k: detectable_effect(inputs, k, alpha=alpha) for k in seeds}
    needed = seeds_needed(inputs, min_effect, alpha=alpha) if min_effect else None
    return Power(metric, inputs, alpha, n_seeds, detectable, min_effect, needed)
