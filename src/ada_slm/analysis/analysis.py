"""Finished runs -> one typed analysis of a study: comparisons, factor differences, factorials, the rank
question, decision answers, power and the next run's time. `report.py` renders it and the CLI prints from it;
nothing here formats text for a page.

Every "supported" below is `stats.Comparison.supported` (or the same t rule on a contrast): one rule for the
tables, the decision, the 2 × 2, the Goldilocks question, the % and × columns and the power estimate.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ada_slm.run import records
from ada_slm.analysis import design, factorial, stats
from ada_slm.analysis.power import PowerInputs, detectable_effect, power_inputs, seeds_needed
from ada_slm.errors import UserError
from ada_slm.run.config import TrainConfig
from ada_slm.files import iter_jsonl
from ada_slm.run.metrics import METRICS, RUN_METRICS, SEED_METRICS, higher_is_better, seed_score
from ada_slm.study.spec import (BASE_ARM, Rule, RunSpec, Study, distinct_examples_seen, estimate_seconds,
                           measured_throughput, optimizer_steps, train_examples)

# record["train"] field of each run-level metric
RUN_FIELDS = {"heldout_loss": "final_val_loss", "train_loss": "final_train_loss", "tokens_per_s": "tokens_per_s"}
EQUIVALENCE_SHARE = 0.10  # default TOST margin: 10 % of the baseline's mean


@dataclass
class ArmData:
    name: str
    config: dict | None  # resolved train config of the first seed (None for base)
    records: dict[int, dict]  # seed -> record
    scores: dict[str, dict[int, dict[str, float | None]]]  # metric -> seed -> item -> score (run metrics: 1 item)
    seed_scores: dict[str, dict[int, dict[str, float]]]  # seed-compatible scorer, same layout
    states: dict[int, str]
    unreadable: dict[int, str] = field(default_factory=dict)  # seed -> why its record or eval.jsonl is left out


def _typed(config: dict | None) -> TrainConfig | None:
    # ArmData.config is still the spec's dict (RunSpec.train); `design` takes the typed config (None = base model)
    return None if config is None else TrainConfig.model_validate(config)


UNREADABLE = "unreadable"  # the state of a run whose record.json or eval.jsonl cannot be read


def collect(specs: list[RunSpec], limit: int | None = None, within: list[Path] | None = None) -> dict[str, ArmData]:
    """Read every run's record and per-item outputs (the one place that reads records). A run whose record or
    eval.jsonl cannot be read (files.read_json, iter_jsonl: corrupt, not a regular file, larger than `limit`,
    a symlink out of `within`) is left out with its reason: one damaged file costs its own run only."""
    arms: dict[str, ArmData] = {}
    for s in specs:
        arm = arms.setdefault(s.arm, ArmData(s.arm, s.train, {}, {m: {} for m in (*METRICS, *RUN_METRICS)},
                                             {m: {} for m in SEED_METRICS}, {}))
        try:
            rec = records.read_record(s.run_dir, limit, within)
            state = records.state(rec) or "pending"
            items = None
            if rec and state == "complete" and os.path.lexists(s.run_dir / "eval.jsonl"):
                items = _item_scores(s.run_dir / "eval.jsonl", limit, within)
        except UserError as e:
            arm.states[s.seed], arm.unreadable[s.seed] = UNREADABLE, str(e)
            continue
        arm.states[s.seed] = state
        if items is None:
            continue
        arm.records[s.seed] = rec
        for item, (metrics, compat) in items.items():
            for m in METRICS:
                arm.scores[m].setdefault(s.seed, {})[item] = metrics.get(m)
            for m in SEED_METRICS:
                arm.seed_scores[m].setdefault(s.seed, {})[item] = compat[m]
        for m, key in RUN_FIELDS.items():
            value = (rec.get("train") or {}).get(key)
            if value is not None:
                arm.scores[m][s.seed] = {"run": float(value)}
    return arms


def _item_scores(path: Path, limit: int | None, within: list[Path] | None) -> dict[str, tuple[dict, dict]]:
    """item id -> (its metrics, its seed-compatible scores), from eval.jsonl; a row without a string id and
    output or with a metric that is not a number is a UserError naming FILE:LINE."""
    out = {}
    for lineno, row in iter_jsonl(path, limit, within):
        metrics, item, output = row.get("metrics"), row.get("id"), row.get("output")
        if not isinstance(item, str) or not isinstance(output, str) or not isinstance(metrics, dict):
            raise UserError(f"{path}:{lineno}: not an evaluated item (needs a string id and output and a metrics "
                            "object)")
        for m in METRICS:
            value = metrics.get(m)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"{path}:{lineno}: metrics.{m} is {value!r}, not a number")
        out[item] = (metrics, seed_score(output))
    return out


def matrix(scores: dict[int, dict[str, float | None]]) -> np.ndarray | None:
    """Y[run, item] over the items every run has; None when nothing is scored."""
    if not scores:
        return None
    items = sorted(set.intersection(*(set(v) for v in scores.values())))
    y = np.array([[np.nan if scores[s][i] is None else scores[s][i] for i in items] for s in sorted(scores)],
                 dtype=float)
    return y if y.size and np.isfinite(y).any() else None


# ------------------------------------------------------------------------------------------ the result
@dataclass
class ArmResult:
    name: str
    config: dict | None
    states: dict[int, str]
    n_complete: int
    intervals: dict[str, stats.Interval]  # metric -> mean with CI (item and run metrics)
    components: dict[str, stats.VarianceComponents]  # metric -> seed SD vs item SD


@dataclass
class ArmComparison:
    arm: str
    against: str
    factors: design.FactorDiff
    comparisons: dict[str, stats.Comparison]  # Holm across all metrics of this comparison
    equivalence: dict[str, stats.Equivalence] = field(default_factory=dict)  # only when the split alone differs


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
    comparison: stats.Comparison | None  # for test better, p_holm is Holm over the decision's questions
    confounded: bool
    yes: bool
    test: str = "better"  # better (superiority) | equivalent (TOST)
    equivalence: stats.Equivalence | None = None  # test equivalent: the TOST (90 % CI, margin, p)
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
    next_config: dict | None = None
    seconds: float | None = None
    rate: float | None = None
    per_seq: float | None = None


@dataclass
class Power:
    metric: str
    inputs: PowerInputs
    alpha: float  # the threshold of the first Holm step over the decision's questions
    n_seeds: int
    detectable: dict[int, float]  # runs per arm -> smallest |Δ| detected with 80 % power
    min_effect: float | None = None
    seeds_for_min_effect: int | None = None


@dataclass
class StudyAnalysis:
    study: Study
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


def analyse(study: Study, specs: list[RunSpec], scale: str | None = None,
            arms: dict[str, ArmData] | None = None) -> StudyAnalysis:
    arms = arms if arms is not None else collect(specs)
    primary = study.decision.metric if study.decision else "agl_awareness"
    states = [s for a in arms.values() for s in a.states.values()]
    any_eval = next((r["eval"] for a in arms.values() for r in a.records.values() if r.get("eval")), None)
    results = {name: _arm_result(a) for name, a in arms.items()}
    # noise floor per metric: the base model's upper CI bound (below it a baseline is indistinguishable from
    # an untrained model)
    floors = {m: iv.high for m, iv in results[BASE_ARM].intervals.items()} if BASE_ARM in results else {}
    ref = arms.get(study.baseline)
    comparisons = {}
    for name, arm in arms.items():
        if name != study.baseline and ref is not None and arm.records and ref.records:
            comparisons[name] = _compare_arm(study, arm, ref, floors)
    return StudyAnalysis(
        study, scale, sorted({s.seed for s in specs}), len(specs), states.count("complete"), states.count("failed"),
        any_eval, primary, results, floors, comparisons, factorials(arms, primary), goldilocks(arms, primary),
        decide(study, arms, specs, scale) if study.decision else None,
        power(study, arms, primary, n_tests=len(questions_asked(study, specs, scale)) or 1), arms)


def _arm_result(arm: ArmData) -> ArmResult:
    intervals, components = {}, {}
    for m, scores in arm.scores.items():
        y = matrix(scores)
        if y is None:
            continue
        intervals[m] = stats.arm_interval(y)
        vc = stats.variance_components(y)
        if vc is not None:
            components[m] = vc
    return ArmResult(arm.name, arm.config, arm.states, len(arm.records), intervals, components)


def _compare_arm(study: Study, arm: ArmData, ref: ArmData, floors: dict[str, float]) -> ArmComparison:
    fd = design.factors_between(design.differences(_typed(arm.config), _typed(ref.config)))
    comps = stats.compare_all(arm.scores, ref.scores, [*METRICS, *RUN_METRICS], floors)
    out = ArmComparison(arm.name, ref.name, fd, comps)
    if fd.split_only:  # same objective in expectation: the one place equivalence is asked for, by TOST
        for m, c in comps.items():
            margin = study.equivalence_margins.get(m, EQUIVALENCE_SHARE * abs(c.baseline.mean))
            if margin > 0:
                eq = stats.equivalence(arm.scores[m], ref.scores[m], margin)
                if eq is not None:
                    out.equivalence[m] = eq
    return out


# ------------------------------------------------------------------------------------------ designs
def _trained(arms: dict[str, ArmData]) -> list[str]:
    return [n for n, a in arms.items() if a.config is not None and a.records]


def _factors(arms, x: str, y: str) -> dict[str, tuple]:
    return design.factors_between(design.differences(_typed(arms[y].config), _typed(arms[x].config))).factors


def factorials(arms: dict[str, ArmData], metric: str) -> list[Factorial]:
    """Every four trained arms that form a full 2 × 2: arms x, y differ from arm o in one factor each (f1, f2,
    from the full config difference), and arm z differs from o in exactly f1 and f2 at y's and x's levels."""
    names, found, seen = _trained(arms), [], set()
    for o in names:
        single = {}
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
    objective in expectation, so it may differ too): is a middle rank best?"""
    names = _trained(arms)
    best: dict[int, str] = {}
    for anchor in names:
        group = {arms[anchor].config["lora"]["r"]: anchor}
        for n in names:
            if n != anchor and set(_factors(arms, anchor, n)) <= {"rank", "batch split"}:
                group.setdefault(arms[n].config["lora"]["r"], n)
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
    sign = 1.0 if higher_is_better(d.metric) else -1.0
    run_arms = {s.arm for s in specs}
    answers = []
    for q, spec in d.questions.items():
        a, b = arms.get(spec.compare), arms.get(spec.against)
        fd = design.factors_between(design.differences(_typed(a.config if a else None),
                                                       _typed(b.config if b else None)))
        x = Answer(q, spec.compare, spec.against, None, fd.confounded, False, spec.test)
        x.not_asked = question_not_asked(study, spec, run_arms, a, b, scale)
        if x.not_asked is None and a and b:
            x.comparison = stats.compare(a.scores[d.metric], b.scores[d.metric], d.metric)
            if spec.test == "equivalent" and x.comparison is not None:
                x.equivalence = stats.equivalence(a.scores[d.metric], b.scores[d.metric],
                                                  _question_margin(study, spec, x.comparison))
        answers.append(x)
    tested = {x.question: (x.equivalence.p if x.test == "equivalent" and x.equivalence else
                           x.comparison.p if x.test == "better" and x.comparison else math.nan) for x in answers}
    adjusted = stats.holm({q: p for q, p in tested.items() if math.isfinite(p)})
    for x in answers:
        if x.question not in adjusted:
            continue
        x.p_holm = adjusted[x.question]
        if x.test == "equivalent":
            x.yes = x.p_holm < stats.ALPHA
        else:
            x.comparison.p_holm = x.p_holm
            x.comparison.family = f"the decision's questions ({len(adjusted)} tests)" if len(adjusted) > 1 else ""
            x.yes = x.comparison.supported and sign * x.comparison.delta.mean > 0
    given = {x.question: x.yes for x in answers if x.not_asked is None}
    rule = next((r for r in d.rules if all(given.get(k) == v for k, v in r.when.items())), None)
    result = DecisionResult(d.metric, answers, rule)
    if rule and rule.config:
        baseline_spec = next((s for s in specs if s.arm == study.baseline), None)
        cfg = json.loads(json.dumps(baseline_spec.train)) if baseline_spec else {}
        _merge(cfg, rule.config)
        result.next_config = cfg
        result.rate, result.per_seq = measured_throughput([s for s in specs if s.train])
        if result.rate and cfg:
            next_spec = RunSpec("next", 0, Path("."), Path("."), cfg | {"max_steps": None}, cfg.get("base", ""), {})
            result.seconds = estimate_seconds(next_spec, result.rate, result.per_seq)
    return result


def _question_margin(study: Study, spec, comparison: stats.Comparison) -> float:
    """The question's own margin, else the study's for the metric, else 10 % of the `against` arm's mean."""
    if spec.margin is not None:
        return spec.margin
    metric = study.decision.metric
    if metric in study.equivalence_margins:
        return study.equivalence_margins[metric]
    return EQUIVALENCE_SHARE * abs(comparison.baseline.mean) if comparison.baseline else math.nan


def question_not_asked(study: Study, spec, run_arms: set[str], a: ArmData | None, b: ArmData | None,
                       scale: str | None) -> str | None:
    """Why these runs cannot ask the question, from the configs alone (before any result is seen): an arm
    this scale does not run, or a corpus-size question (the arms differ in data.size alone) whose arms see
    the same number of distinct training examples (max_steps stops both before the smaller corpus is used up, so the data differ only in which
    examples, not how many)."""
    for arm in (spec.compare, spec.against):
        if arm not in run_arms:
            where = f"scale {scale} skips it" if scale and arm in study.scale[scale].skip else "it is not among these runs"
            return f"not asked at this scale: {where} ({arm})"
    if a is None or b is None or a.config is None or b.config is None:
        return None
    differ = set(design.differences(_typed(a.config), _typed(b.config)))
    if "data.size" not in differ or not differ <= {"data.size", "data.val_size", design.OPTIMIZER_STEPS}:
        return None  # not a corpus-size question, or one that also compares something else
    seen_a, seen_b = distinct_examples_seen(a.config), distinct_examples_seen(b.config)
    if seen_a is None or seen_a != seen_b:
        return None
    steps = optimizer_steps(a.config), optimizer_steps(b.config)
    return (f"not asked at this scale: both arms see {seen_a} distinct examples (max_steps {steps[0]} × effective "
            f"batch {a.config['batch']['micro'] * a.config['batch']['accum']} in corpora of "
            f"{train_examples(a.config)} and {train_examples(b.config)} training examples): the corpus sizes "
            f"differ only in which examples are seen, not how many")


def questions_asked(study: Study, specs: list[RunSpec], scale: str | None = None) -> list[str]:
    """The decision's questions these runs can ask (from the configs alone: `question_not_asked`)."""
    if study.decision is None:
        return []
    configs = {s.arm: s.train for s in specs}

    def arm(name: str) -> ArmData | None:  # only the config matters here
        return ArmData(name, configs[name], {}, {}, {}, {}) if name in configs else None

    return [q for q, spec in study.decision.questions.items()
            if question_not_asked(study, spec, set(configs), arm(spec.compare), arm(spec.against), scale) is None]


def _merge(into: dict, changes: dict):
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


# ------------------------------------------------------------------------------------------ power
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
    for name in _trained(arms):
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
