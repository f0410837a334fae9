"""Finished runs -> one typed analysis of a study: comparisons, factor differences, factorials, the rank
question, decision answers, power and the next run's time. `report.py` renders it and the CLI prints from it;
nothing here formats text for a page.

Every "supported" below is `contrasts.Comparison.supported` (or the same t rule on a contrast): one rule for the
tables, the decision, the 2 × 2, the Goldilocks question, the % and × columns and the power estimate.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

from ada_slm.analysis import design
from ada_slm.analysis.arms import ArmData, collect, item_clusters, matrix
from ada_slm.analysis.power import Power, power
from ada_slm.run.config import TrainConfig, deep_merge, validate_config
from ada_slm.run.metrics import METRICS, RUN_METRICS, higher_is_better
from ada_slm.run.records import RunRecord
from ada_slm.stats import contrasts, factorial
from ada_slm.study.decision import Rule
from ada_slm.study.spec import BASE_ARM, RunSpec, Study, estimate_seconds, measured_throughput

EQUIVALENCE_SHARE = 0.10  # default TOST margin: 10 % of the baseline's mean


# ------------------------------------------------------------------------------------------ the result
@dataclass
class ArmResult:
    name: str
    config: TrainConfig | None
    states: dict[int, str]
    n_complete: int
    intervals: dict[str, contrasts.Interval]  # metric -> mean with CI (item and run metrics)
    components: dict[str, contrasts.VarianceComponents]  # metric -> seed SD vs item SD


@dataclass
class ArmComparison:
    arm: str
    against: str
    factors: design.FactorDiff
    comparisons: dict[str, contrasts.Comparison]  # Holm across all metrics of this comparison
    equivalence: dict[str, contrasts.Equivalence] = field(default_factory=dict)  # only when the split alone differs


@dataclass
class Factorial:
    factor1: str
    factor2: str
    levels1: tuple
    levels2: tuple
    cells: dict[tuple, str]  # (0|1, 0|1) -> arm
    effects: list[factorial.Effect]


@dataclass
class Goldilocks:
    by_rank: dict[int, str]
    claimed: bool
    text: str


@dataclass
class Answer:
    question: str
    compare: str
    against: str
    comparison: contrasts.Comparison | None  # for test better, p_holm is Holm over the decision's questions
    confounded: bool
    yes: bool
    test: str = "better"  # better (superiority) | equivalent (TOST)
    equivalence: contrasts.Equivalence | None = None  # test equivalent: the TOST (90 % CI, margin, p)
    p_holm: float = math.nan  # this question's own test (t or TOST), Holm over the decision's questions
    not_asked: str | None = None  # why this scale cannot ask the question (then it is not answered)

    @property
    def answer(self) -> str:
        if self.not_asked:
            return "not asked"
        if self.test == "equivalent":
            return "yes (equivalent)" if self.yes else "not shown equivalent"
        return "yes" if self.yes else "no"


@dataclass
class DecisionResult:
    metric: str
    answers: list[Answer]
    rule: Rule | None
    next_config: TrainConfig | None = None  # the baseline's config (what it ran) with the rule's changes
    seconds: float | None = None
    rate: float | None = None
    per_seq: float | None = None


class Analysed(Protocol):
    """What the shared report parts read of what was analysed when it is not a study: compare's CompareSpec."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def baseline(self) -> str | None: ...
    @property
    def equivalence_margins(self) -> dict[str, float]: ...


@dataclass
class StudyAnalysis:
    study: Study | Analysed  # a comparison of imported runs (compare/analysis.py) has its CompareSpec here
    scale: str | None
    seeds: list[int]
    n_runs: int
    n_complete: int
    n_failed: int
    eval_info: dict | None
    primary: str
    arms: dict[str, ArmResult]
    floors: dict[str, float]
    comparisons: dict[str, ArmComparison]
    factorials: list[Factorial]
    goldilocks: Goldilocks | None
    decision: DecisionResult | None
    power: Power | None
    data: dict[str, ArmData] = field(repr=False, default_factory=dict)


def analyse(
    study: Study, specs: list[RunSpec], scale: str | None = None, arms: dict[str, ArmData] | None = None
) -> StudyAnalysis:
    arms = arms if arms is not None else collect(specs)
    primary = study.decision.metric if study.decision else "agl_awareness"
    states = [s for a in arms.values() for s in a.states.values()]
    any_eval = next(
        (
            r.eval.model_dump(exclude_unset=True)
            for a in arms.values()
            for r in a.records.values()
            if isinstance(r, RunRecord) and r.eval is not None
        ),
        None,
    )
    results = {name: arm_result(a) for name, a in arms.items()}
    # noise floor per metric: the base model's upper CI bound (below it a baseline is indistinguishable from
    # an untrained model)
    floors = {m: iv.high for m, iv in results[BASE_ARM].intervals.items()} if BASE_ARM in results else {}
    ref = arms.get(study.baseline)
    comparisons, samples = {}, sample_design(study, arms)
    for name, arm in arms.items():
        if name != study.baseline and ref is not None and arm.records and ref.records:
            comparisons[name] = _compare_arm(study, arm, ref, floors, samples)
    return StudyAnalysis(
        study,
        scale,
        sorted({s.seed for s in specs}),
        len(specs),
        states.count("complete"),
        states.count("failed"),
        any_eval,
        primary,
        results,
        floors,
        comparisons,
        factorials(arms, primary),
        goldilocks(arms, primary),
        decide(study, arms, specs, scale) if study.decision else None,
        power(study, arms, primary, n_tests=len(questions_asked(study, specs, scale)) or 1),
        arms,
    )


def arm_result(arm: ArmData) -> ArmResult:
    intervals, components = {}, {}
    for m, scores in arm.scores.items():
        y = matrix(scores)
        if y is None:
            continue
        intervals[m] = contrasts.arm_interval(y)
        vc = contrasts.variance_components(y)
        if vc is not None:
            components[m] = vc
    return ArmResult(arm.name, arm.config, arm.states, len(arm.records), intervals, components)


def precisions(arm: ArmData | None) -> set[str]:
    """The precisions the arm's finished runs trained in (record meta.precision); empty for the base arm."""
    if arm is None:
        return set()
    return {
        str(r.meta.get("precision"))
        for r in arm.records.values()
        if isinstance(r, RunRecord) and r.config is not None and r.meta and r.meta.get("precision")
    }


def with_precision(fd: design.FactorDiff, a: ArmData | None, b: ArmData | None) -> design.FactorDiff:
    """`fd` with 'precision' added as a factor where the two arms' runs trained in different precisions (a study
    resumed on another machine kind, a Ray cluster of mixed kinds): bf16 and fp32 runs of one config differ by
    several seed SDs in held-out loss, so such a comparison is confounded by the machine, not only the config."""
    pa, pb = precisions(a), precisions(b)
    if pa and pb and (pa != pb or len(pa) > 1):
        fd.factors["precision"] = (" + ".join(sorted(pa)), " + ".join(sorted(pb)))
    return fd


def sample_design(study: Study, arms: dict[str, ArmData]) -> contrasts.Design:
    """How the study's runs and items relate (its `pairing` and `item_clusters`), fixed by the study file before
    any score is read: the same for every comparison of the study."""
    return contrasts.Design(study.pairing, item_clusters(arms, study.item_clusters))


def _compare_arm(
    study: Study, arm: ArmData, ref: ArmData, floors: dict[str, float], samples: contrasts.Design | None = None
) -> ArmComparison:
    samples = samples or sample_design(study, {arm.name: arm, ref.name: ref})
    fd = with_precision(design.factors_of(arm.config, ref.config), arm, ref)
    fd.same_steps = design.same_computation(arm.config, ref.config) and "precision" not in fd.factors
    comps = contrasts.compare_all(arm.scores, ref.scores, [*METRICS, *RUN_METRICS], floors, samples)
    out = ArmComparison(arm.name, ref.name, fd, comps)
    if fd.split_only:  # same objective in expectation: the one place equivalence is asked for, by TOST
        for m, c in comps.items():
            margin = study.equivalence_margins.get(m, EQUIVALENCE_SHARE * abs(c.baseline.mean))
            if margin > 0:
                eq = contrasts.equivalence(arm.scores[m], ref.scores[m], margin, samples)
                if eq is not None:
                    out.equivalence[m] = eq
    return out


# ------------------------------------------------------------------------------------------ designs
def _trained(arms: dict[str, ArmData]) -> list[str]:
    return [n for n, a in arms.items() if a.config is not None and a.records]


def _factors(arms, x: str, y: str) -> dict[str, tuple]:
    return design.factors_of(arms[y].config, arms[x].config).factors


def factorials(arms: dict[str, ArmData], metric: str) -> list[Factorial]:
    """Every four trained arms that form a full 2 × 2: arms x, y differ from arm o in one factor each (f1, f2,
    from the full config difference), and arm z differs from o in exactly f1 and f2 at y's and x's levels."""
    names, found, seen = _trained(arms), [], set()
    for o in names:
        single: dict[str, list[str]] = {}
        for x in names:
            f = _factors(arms, o, x)
            if len(f) == 1:
                single.setdefault(next(iter(f)), []).append(x)
        for (f1, xs), (f2, ys) in itertools.combinations(sorted(single.items()), 2):
            for x, y in itertools.product(xs, ys):
                for z in names:
                    fz = _factors(arms, o, z)
                    if set(fz) != {f1, f2} or fz[f1] != _factors(arms, o, x)[f1] or fz[f2] != _factors(arms, o, y)[f2]:
                        continue
                    key = frozenset((o, x, y, z))
                    if key in seen:
                        continue
                    seen.add(key)
                    cells = {(0, 0): o, (1, 0): x, (0, 1): y, (1, 1): z}
                    levels1 = (_factors(arms, o, x)[f1][1], _factors(arms, o, x)[f1][0])
                    levels2 = (_factors(arms, o, y)[f2][1], _factors(arms, o, y)[f2][0])
                    effects = factorial.factorial_2x2({k: arms[n].scores[metric] for k, n in cells.items()})
                    found.append(Factorial(f1, f2, levels1, levels2, cells, effects))
    return found


def goldilocks(arms: dict[str, ArmData], metric: str) -> Goldilocks | None:
    """Arms that differ from each other only in rank (a batch split at the same effective batch trains the same
    objective in expectation under a split-invariant loss, so it may differ too): is a middle rank best?"""
    configs = {n: c for n in _trained(arms) if (c := arms[n].config) is not None}  # every trained arm's
    best: dict[int, str] = {}
    for anchor in configs:
        group = {configs[anchor].lora.r: anchor}
        for n in configs:
            fd = design.factors_of(configs[n], configs[anchor])
            if (
                n != anchor
                and set(fd.factors) <= {"rank", "batch split"}
                and not ("batch split" in fd.factors and fd.split_changes_objective)
            ):
                group.setdefault(configs[n].lora.r, n)
        if len(group) > len(best):
            best = group
    if len(best) < 3:
        return Goldilocks(best, False, "not supported by the data: fewer than three ranks at otherwise equal settings")
    ordered = [(float(r), arms[best[r]].scores[metric]) for r in sorted(best)]
    claimed, text = factorial.goldilocks(ordered, higher_is_better=higher_is_better(metric))
    return Goldilocks(dict(sorted(best.items())), claimed, text)


# ------------------------------------------------------------------------------------------ decision
def decide(study: Study, arms: dict[str, ArmData], specs: list[RunSpec], scale: str | None = None) -> DecisionResult:
    """Answer each question with its test — `better`: the seed-level t test in the metric's better direction;
    `equivalent`: TOST within its margin — Holm over the questions that are asked, and pick the first rule
    whose answers match (a question this scale does not ask matches no `when` that names it); estimate the
    recommended run's training time from measured throughput."""
    d = study.decision
    if d is None:
        raise ValueError(f"{study.name}: no decision to answer")  # analyse calls decide only with one
    sign = 1.0 if higher_is_better(d.metric) else -1.0
    run_arms = {s.arm for s in specs}
    answers, samples = [], sample_design(study, arms)
    for q, spec in d.questions.items():
        a, b = arms.get(spec.compare), arms.get(spec.against)
        fd = with_precision(design.factors_of(a.config if a else None, b.config if b else None), a, b)
        x = Answer(q, spec.compare, spec.against, None, fd.confounded, False, spec.test)
        x.not_asked = question_not_asked(study, spec, run_arms, a, b, scale)
        if x.not_asked is None and a and b:
            x.comparison = contrasts.compare(a.scores[d.metric], b.scores[d.metric], d.metric, design=samples)
            if spec.test == "equivalent" and x.comparison is not None:
                x.equivalence = contrasts.equivalence(
                    a.scores[d.metric], b.scores[d.metric], _question_margin(study, spec, x.comparison), samples
                )
        answers.append(x)
    tested = {
        x.question: (
            x.equivalence.p
            if x.test == "equivalent" and x.equivalence
            else x.comparison.p
            if x.test == "better" and x.comparison
            else math.nan
        )
        for x in answers
    }
    adjusted = contrasts.holm({q: p for q, p in tested.items() if math.isfinite(p)})
    for x in answers:
        if x.question not in adjusted:
            continue
        x.p_holm = adjusted[x.question]
        if x.test == "equivalent":
            x.yes = x.p_holm < contrasts.ALPHA
        else:
            assert x.comparison is not None  # a `better` question has a finite p only from its comparison
            x.comparison.p_holm = x.p_holm
            x.comparison.family = f"the decision's questions ({len(adjusted)} tests)" if len(adjusted) > 1 else ""
            x.yes = x.comparison.supported and sign * x.comparison.delta.mean > 0
    given = {x.question: x.yes for x in answers if x.not_asked is None}
    rule = next((r for r in d.rules if all(given.get(k) == v for k, v in r.when.items())), None)
    result = DecisionResult(d.metric, answers, rule)
    baseline = arms.get(study.baseline)
    if rule and rule.config and baseline is not None and baseline.config is not None:
        i = d.rules.index(rule)
        result.next_config = validate_config(
            deep_merge(baseline.config.model_dump(), rule.config), f"{study.name}: decision.rules.{i}.config"
        )
        result.rate, result.per_seq = measured_throughput([s for s in specs if s.train])
        if result.rate:  # the recommended run trains for its epochs (no max_steps)
            result.seconds = estimate_seconds(
                result.next_config.model_copy(update={"max_steps": None}), result.rate, result.per_seq
            )
    return result


def _question_margin(study: Study, spec, comparison: contrasts.Comparison) -> float:
    """The question's own margin, else the study's for the metric, else 10 % of the `against` arm's mean."""
    if spec.margin is not None:
        return spec.margin
    assert study.decision is not None  # a question is one of the decision's
    metric = study.decision.metric
    if metric in study.equivalence_margins:
        return study.equivalence_margins[metric]
    return EQUIVALENCE_SHARE * abs(comparison.baseline.mean) if comparison.baseline else math.nan


def question_not_asked(
    study: Study, spec, run_arms: set[str], a: ArmData | None, b: ArmData | None, scale: str | None
) -> str | None:
    """Why these runs cannot ask the question, from the configs alone (before any result is seen): an arm
    this scale does not run, two arms that compute the same steps (design.same_computation), or a corpus-size
    question (the arms differ in data.size alone) whose arms see
    the same number of distinct training examples (max_steps stops both before the smaller corpus is used up, so the
    data differ only in which
    examples, not how many)."""
    for arm in (spec.compare, spec.against):
        if arm not in run_arms:
            where = (
                f"scale {scale} skips it" if scale and arm in study.scale[scale].skip else "it is not among these runs"
            )
            return f"not asked at this scale: {where} ({arm})"
    if a is None or b is None or a.config is None or b.config is None:
        return None
    if design.same_objective(a.config, b.config):
        return identical_objective(spec.compare, spec.against, a.config, b.config)
    differ = set(design.differences(a.config, b.config))
    if "data.size" not in differ or not differ <= {"data.size", "data.val_size", design.OPTIMIZER_STEPS}:
        return None  # not a corpus-size question, or one that also compares something else
    seen_a, seen_b = a.config.distinct_examples_seen(), b.config.distinct_examples_seen()
    if seen_a is None or seen_a != seen_b:
        return None
    return (
        f"not asked at this scale: both arms see {seen_a} distinct examples (max_steps "
        f"{a.config.optimizer_steps()} × effective batch {a.config.effective_batch} in corpora of "
        f"{a.config.train_examples} and {b.config.train_examples} training examples): the corpus sizes "
        f"differ only in which examples are seen, not how many"
    )


def identical_objective(compare: str, against: str, a, b) -> str:
    """Why a question between two arms of the same objective (design.same_objective) is not asked, in words."""
    how = a.loss.normalisation
    text = (
        f"split: identical objective under this loss (loss.normalisation {how}) — {compare} and {against} "
        f"differ only in micro × accum, and a {how}-normalised loss over the step does not depend on the split; "
    )
    if design.same_computation(a, b):
        return text + (
            "no runs spent: grouped by length, each seed of one is the same run as that seed of the "
            "other, number for number, and is trained once. To ask what the split changes, train both "
            "under `loss: {normalisation: micro_batch}` (the seed study's loss)."
        )
    return text + (
        "their runs differ only by float rounding and dropout draws, so no test can find an effect of "
        "the split. To ask what it changes, train both under `loss: {normalisation: micro_batch}`."
    )


def questions_asked(study: Study, specs: list[RunSpec], scale: str | None = None) -> list[str]:
    """The decision's questions these runs can ask (from the configs alone: `question_not_asked`)."""
    if study.decision is None:
        return []
    configs = {s.arm: s.train for s in specs}

    def arm(name: str) -> ArmData | None:  # only the config matters here
        return ArmData(name, configs[name], {}, {}, {}, {}) if name in configs else None

    return [
        q
        for q, spec in study.decision.questions.items()
        if question_not_asked(study, spec, set(configs), arm(spec.compare), arm(spec.against), scale) is None
    ]
