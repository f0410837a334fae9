"""Success criteria stated before the runs (a study's `criteria:` block), judged from the runs' CIs.

A threshold criterion is met when the arm's 95 % CI (runs and items random, `contrasts.arm_interval`) lies on the
stated side of the threshold, not met when it lies on the other side, undecided while the CI contains it. A
comparison criterion ("better than arm X") is met when the seed-level rule supports the difference in the
metric's better direction, not met when the 95 % CI of the difference lies on the worse side of 0, undecided
otherwise. Each criterion is judged alone at 95 % (not corrected over the criteria), and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ada_slm.analysis.arms import matrix
from ada_slm.run.metrics import higher_is_better
from ada_slm.stats import contrasts
from ada_slm.study.spec import Criterion

MET, NOT_MET, UNDECIDED = "met", "not met", "undecided"


@dataclass
class Judged:
    criterion: Criterion
    verdict: str  # met | not met | undecided
    evidence: str


def judge(criterion: Criterion, arms: dict, samples: contrasts.Design | None = None) -> Judged:
    """`arms`: arm name -> analysis.ArmData (run -> item -> score per metric); `samples`: the study's pairing and
    item clusters (analysis.sample_design) for a `better_than` comparison."""
    c = criterion
    arm = arms.get(c.arm)
    scores = arm.scores.get(c.metric, {}) if arm else {}
    if not scores:
        return Judged(c, UNDECIDED, f"no finished run of {c.arm} scores {c.metric}")
    if c.better_than is None:
        y = matrix(scores)
        iv = contrasts.arm_interval(y) if y is not None else None
        if iv is None or not math.isfinite(iv.low):
            return Judged(c, UNDECIDED, f"{c.metric} of {c.arm}: no 95 % CI (fewer than two runs)")
        above = c.above is not None
        t = c.above if above else c.below
        assert t is not None  # Criterion: exactly one of above, below, better_than
        evidence = f"{c.arm} {c.metric} {iv.mean:.4f} [{iv.low:.4f}, {iv.high:.4f}] vs {'>' if above else '<'} {t:g}"
        if (iv.low > t) if above else (iv.high < t):
            return Judged(c, MET, evidence)
        # a CI that ends at the threshold excludes every value beyond it: every output at 0 ([0, 0]) is not > 0
        if (iv.high <= t) if above else (iv.low >= t):
            return Judged(c, NOT_MET, evidence)
        return Judged(c, UNDECIDED, evidence + " (the CI contains the threshold)")
    other = arms.get(c.better_than)
    comp = contrasts.compare(scores, other.scores.get(c.metric, {}), c.metric, design=samples) if other else None
    if comp is None or not math.isfinite(comp.p):
        return Judged(
            c,
            UNDECIDED,
            f"{c.arm} vs {c.better_than} on {c.metric}: no seed-level test (needs two finished runs in each)",
        )
    sign = 1.0 if higher_is_better(c.metric) else -1.0
    evidence = (
        f"{c.metric} Δ {c.arm} − {c.better_than} {comp.delta.mean:+.4f} [{comp.delta.low:+.4f}, "
        f"{comp.delta.high:+.4f}], {contrasts.verdict(comp)} ({'higher' if sign > 0 else 'lower'} is better)"
    )
    if comp.supported and sign * comp.delta.mean > 0:
        return Judged(c, MET, evidence)
    worse_side = comp.delta.high < 0 if sign > 0 else comp.delta.low > 0
    return Judged(c, NOT_MET if worse_side else UNDECIDED, evidence)


def judge_all(study, arms: dict, samples: contrasts.Design | None = None) -> list[Judged]:
    return [judge(c, arms, samples) for c in study.criteria]
