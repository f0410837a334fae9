"""Imported runs -> the study's analysis: match items across runs, then the same statistics a study gets.

`match` refuses what cannot be compared (mixed sources, different task configurations, item sets that overlap
too little) with a reason, and keeps the items every run scored, recording the dropped ones for the report.
`analyse` builds the study's `StudyAnalysis` from the matched runs: arm intervals and variance components
(`analysis.arm_result`), comparisons against the baseline with Holm across metrics (`contrasts.compare_all`),
TOST where a margin is given (`contrasts.equivalence`) and power / runs needed (`power.power_from`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator

from ada_slm.analysis import design
from ada_slm.analysis.analysis import ArmComparison, StudyAnalysis, arm_result
from ada_slm.analysis.arms import ArmData, matrix
from ada_slm.analysis.compare.readers import ImportedRun, read_runs
from ada_slm.analysis.power import Power, power_from
from ada_slm.analysis.report.doc import shorten
from ada_slm.errors import UserError
from ada_slm.run.config import format_validation_error, load_yaml
from ada_slm.schema import Strict
from ada_slm.stats import contrasts
from ada_slm.stats.power_simulation import PowerInputs, power_inputs
from ada_slm.study.spec import BASE_ARM

NAME = r"^[A-Za-z0-9_.-]+$"
MIN_SHARED = 0.9  # default: refuse when fewer than 90 % of a metric's items are scored in every run


class CompareSpec(Strict):
    """What to compare: `ada-slm compare spec.yaml`, or the same from --arm options. Relative paths in a file
    are relative to the file's folder."""

    name: str = Field("compare", pattern=NAME, description="The comparison's name (the report's title).")
    description: str = ""
    arms: dict[str, list[str]] = Field(
        ...,
        description="Arm name -> its runs: paths of lm-eval output, Inspect "
        "logs, trainer folders, ada-slm run folders or tables.",
    )
    baseline: str | None = Field(
        None,
        description="The arm every comparison is made against (default: the "
        "arm named base if there is one, else the first arm).",
    )
    metric: str | None = Field(None, description="The primary metric (default: the first one the runs have).")
    equivalence_margin: float | None = Field(
        None,
        gt=0,
        description="Margin of the equivalence test (TOST) on the primary metric: Δ inside ±margin is claimed equal.",
    )
    equivalence_margins: dict[str, float] = Field(
        default_factory=dict, description="Metric -> margin, for equivalence on other metrics too."
    )
    min_effect: float | None = Field(
        None,
        gt=0,
        description="A difference worth detecting on the primary "
        "metric: the report says how many runs per arm detect it with 80 % power.",
    )
    allow_differing: list[str] = Field(
        default_factory=list,
        description="Setting names (e.g. temperature) that "
        "may differ between the runs' task configurations: the factor being "
        "compared. Anywhere in a task's config, a key of this name is left out of "
        "the check that the runs ran the same task; the report names them.",
    )
    min_shared: float = Field(
        MIN_SHARED,
        gt=0,
        le=1,
        description="Refuse when fewer than this share of a metric's items are scored in every run.",
    )

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(v) < 2:
            raise ValueError("compare needs at least two arms")
        for name, paths in v.items():
            if not re.match(NAME, name):
                raise ValueError(f"arm name {name!r}: use letters, digits, '_', '.', '-'")
            if not paths:
                raise ValueError(f"arm {name}: no runs")
        return v

    @field_validator("equivalence_margins")
    @classmethod
    def _margins(cls, v: dict[str, float]) -> dict[str, float]:
        for name, margin in v.items():
            if not margin > 0:
                raise ValueError(f"margin of {name} must be > 0")
        return v

    @property
    def baseline_arm(self) -> str:
        return self.baseline or (BASE_ARM if BASE_ARM in self.arms else next(iter(self.arms)))


def load_spec(path) -> CompareSpec:
    raw = load_yaml(path)
    try:
        spec = CompareSpec.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(path))) from None
    here = Path(path).parent
    spec.arms = {a: [str(p if Path(p).is_absolute() else here / p) for p in paths] for a, paths in spec.arms.items()}
    return spec


# ------------------------------------------------------------------------------------------ matching
@dataclasses.dataclass
class MetricItems:
    metric: str
    n_items: int  # items scored in at least one run
    shared: list[str]  # items scored in every run: the ones compared
    dropped: dict[str, list[str]]  # run name -> items scored elsewhere but not in this run


@dataclasses.dataclass
class Matched:
    runs: dict[str, list[ImportedRun]]  # arm -> its runs, scores restricted to the shared items
    metrics: dict[str, MetricItems]
    left_out: dict[str, list[str]]  # metric -> runs without it (such a metric is not compared)
    lower_is_better: list[str]


def read_arms(spec: CompareSpec) -> dict[str, list[ImportedRun]]:
    arms: dict[str, list[ImportedRun]] = {}
    seen: dict[tuple[str, str], str] = {}  # (path, name) -> its arm
    for arm, paths in spec.arms.items():
        runs = [r for p in paths for r in read_runs(p, arm)]
        for r in runs:  # one run in two places would be counted twice, or compared with itself
            key = (r.path, r.name)
            if key in seen:
                where = "twice in arm " + arm if seen[key] == arm else f"in arms {seen[key]} and {arm}"
                raise UserError(f"run {r.name} ({r.path}) is listed {where}")
            seen[key] = arm
        arms[arm] = runs
    return arms


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return (
        f"{prefix.rstrip('.')}: {shorten(json.dumps(a, default=str), 80)} vs {shorten(json.dumps(b, default=str), 80)}"
    )


def _without(obj, keys: set[str]):
    """`obj` with every mapping entry whose key is in `keys` left out, at any depth."""
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_without(v, keys) for v in obj]
    return obj


def _task_names(task: dict):
    """The task names a run's configuration holds (lm-eval's tasks, Inspect's task), or None."""
    return task.get("tasks", task.get("task"))


def match(
    arms: dict[str, list[ImportedRun]], min_shared: float = MIN_SHARED, allow_differing: Sequence[str] = ()
) -> Matched:
    """Check that the runs can be compared (the same tool, the same task configuration but for the settings in
    `allow_differing`, the same items) and keep the items every run scored (per metric)."""
    runs = [r for rs in arms.values() for r in rs]
    kinds = sorted({r.source for r in runs})
    if len(kinds) > 1:
        first = {k: next(r for r in runs if r.source == k) for k in kinds}
        raise UserError(
            "runs from different tools cannot be compared item by item: "
            + ", ".join(f"{r.name} is {k}" for k, r in first.items())
        )
    ref = runs[0]
    allowed = set(allow_differing)
    for r in runs[1:]:
        if _task_names(r.task) != _task_names(ref.task):
            raise UserError(
                f"{r.name} and {ref.name} ran different tasks ({_task_names(r.task)} vs "
                f"{_task_names(ref.task)}): their scores are not comparable"
            )
        if _without(r.task, allowed) != _without(ref.task, allowed):
            raise UserError(
                f"{r.name} and {ref.name} ran different task configurations "
                f"({_first_difference(_without(r.task, allowed), _without(ref.task, allowed))}): their "
                "scores are not comparable (if that setting is the factor you compare, name it with "
                "--allow-differing)"
            )
    for r in runs[1:]:
        for item, h in r.item_hashes.items():
            if ref.item_hashes.get(item, h) != h:
                raise UserError(
                    f"item {item} is not the same item in {r.name} and {ref.name} (its content hash "
                    "differs): the runs evaluated different data under the same ids"
                )
    all_metrics = list(dict.fromkeys(m for r in runs for m in r.scores))
    left_out = {m: [r.name for r in runs if m not in r.scores] for m in all_metrics}
    left_out = {m: names for m, names in left_out.items() if names}
    metrics = {}
    for m in all_metrics:
        if m in left_out:
            continue
        scored = [{i for i, v in r.scores[m].items() if v is not None} for r in runs]
        union = set.union(*scored)
        shared = set.intersection(*scored)
        if not union:
            left_out[m] = ["(no run scored it)"]
            continue
        if len(shared) < min_shared * len(union):
            worst = min(range(len(runs)), key=lambda k: len(scored[k]))
            raise UserError(
                f"metric {m}: only {len(shared)} of {len(union)} items are scored in every run "
                f"({runs[worst].name} has {len(scored[worst])}), below the {min_shared:.0%} needed "
                "(--min-shared): these runs did not evaluate the same items"
            )
        metrics[m] = MetricItems(
            m,
            len(union),
            sorted(shared),
            {r.name: sorted(union - s) for r, s in zip(runs, scored, strict=True) if union - s},
        )
    if not metrics:
        raise UserError(
            "no metric is scored in every run: "
            + "; ".join(f"{m} missing in {', '.join(n[:3])}" for m, n in left_out.items())
        )
    kept = {
        a: [
            r.model_copy(update={"scores": {m: {i: r.scores[m][i] for i in metrics[m].shared} for m in metrics}})
            for r in rs
        ]
        for a, rs in arms.items()
    }
    lower = sorted({m for r in runs for m in r.lower_is_better if m in metrics})
    return Matched(kept, metrics, left_out, lower)


# ------------------------------------------------------------------------------------------ the analysis
@dataclasses.dataclass
class CompareResult:
    spec: CompareSpec
    matched: Matched
    analysis: StudyAnalysis


def arm_data(name: str, runs: list[ImportedRun]) -> ArmData:
    """The study's per-arm structure: run k of the arm in place of seed k (the training run is the unit)."""
    metrics = list(runs[0].scores)
    return ArmData(
        name,
        None,
        {k: {"source": r.source, "path": r.path, "name": r.name} for k, r in enumerate(runs)},
        {m: {k: r.scores[m] for k, r in enumerate(runs)} for m in metrics},
        {},
        {k: "complete" for k in range(len(runs))},
    )


def _power(arms: dict[str, ArmData], baseline: str, metric: str, min_effect: float | None) -> Power | None:
    """`analysis.power` over every other arm (an imported arm has no train config to select it by)."""
    ref_y = matrix(arms[baseline].scores[metric])
    if ref_y is None:
        return None
    measured = [
        power_inputs(y, ref_y)
        for name, arm in arms.items()
        if name != baseline and (y := matrix(arm.scores[metric])) is not None
    ]
    found = [i for i in measured if i is not None]
    if not found:
        return None
    run_mean_sd, residual_sd, interaction_sd = (
        float(np.median([getattr(i, f) for i in found])) for f in ("run_mean_sd", "residual_sd", "interaction_sd")
    )
    inputs = PowerInputs(run_mean_sd, residual_sd, interaction_sd, int(min(i.n_items for i in found)))
    return power_from(inputs, metric, ref_y.shape[0], 1, min_effect)


def analyse(spec: CompareSpec, matched: Matched) -> CompareResult:
    baseline = spec.baseline_arm
    if baseline not in spec.arms:
        raise UserError(f"--baseline {baseline}: not an arm ({', '.join(spec.arms)})")
    metrics = list(matched.metrics)
    primary = spec.metric or metrics[0]
    if primary not in matched.metrics:
        why = (
            f"not scored in {', '.join(matched.left_out[primary][:3])}"
            if primary in matched.left_out
            else "the runs have " + ", ".join(metrics)
        )
        raise UserError(f"--metric {primary}: {why}")
    margins = {primary: spec.equivalence_margin} if spec.equivalence_margin else {}
    margins.update(spec.equivalence_margins)
    for m in margins:
        if m not in matched.metrics:
            raise UserError(f"equivalence margin for {m}: no such metric (the runs have {', '.join(metrics)})")
    metrics = [primary] + [m for m in metrics if m != primary]
    arms = {name: arm_data(name, runs) for name, runs in matched.runs.items()}
    results = {name: arm_result(a) for name, a in arms.items()}
    # the noise floor of the % and × columns, as in a study: an arm named `base` is the untrained model
    floors = (
        {m: iv.high for m, iv in results[BASE_ARM].intervals.items()}
        if BASE_ARM in results and baseline != BASE_ARM
        else {}
    )
    ref = arms[baseline]
    comparisons = {}
    for name, arm in arms.items():
        if name == baseline:
            continue
        comps = contrasts.compare_all(arm.scores, ref.scores, metrics, floors)
        comp = ArmComparison(name, baseline, design.FactorDiff(), comps)
        for m, margin in margins.items():
            eq = contrasts.equivalence(arm.scores[m], ref.scores[m], margin)
            if eq is not None:
                comp.equivalence[m] = eq
        comparisons[name] = comp
    n_runs = sum(len(a.records) for a in arms.values())
    a = StudyAnalysis(
        spec,
        None,
        list(range(max(len(x.records) for x in arms.values()))),
        n_runs,
        n_runs,
        0,
        None,
        primary,
        results,
        floors,
        comparisons,
        [],
        None,
        None,
        _power(arms, baseline, primary, spec.min_effect),
        arms,
    )
    return CompareResult(spec, matched, a)


def compare(spec: CompareSpec) -> CompareResult:
    """Read, match and analyse the runs of `spec`."""
    return analyse(spec, match(read_arms(spec), spec.min_shared, spec.allow_differing))


# ------------------------------------------------------------------------------------------ --json
def _plain(obj):
    """Dataclasses, pydantic models and numpy numbers as JSON values; NaN and ±inf as null."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.repr}
    if isinstance(obj, BaseModel):
        return _plain(obj.model_dump())
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def to_json(result: CompareResult) -> dict:
    """The typed result for scripts: the spec, the item matching and the analysis (without per-item scores)."""
    a = result.analysis
    comparisons = {}
    for name, comp in a.comparisons.items():
        comparisons[name] = {
            "against": comp.against,
            "metrics": {m: {**_plain(c), "supported": c.supported} for m, c in comp.comparisons.items()},
            "equivalence": {m: {**_plain(e), "equivalent": e.equivalent} for m, e in comp.equivalence.items()},
        }
    return {
        "spec": _plain(result.spec),
        "baseline": result.spec.baseline_arm,
        "primary": a.primary,
        "runs": {
            arm: [{"name": r.name, "source": r.source, "path": r.path, "model": _plain(r.model)} for r in runs]
            for arm, runs in result.matched.runs.items()
        },
        "task": _plain(next(iter(result.matched.runs.values()))[0].task),
        "items": {
            m: {"n_items": mi.n_items, "n_shared": len(mi.shared), "dropped": mi.dropped}
            for m, mi in result.matched.metrics.items()
        },
        "metrics_left_out": result.matched.left_out,
        "lower_is_better": result.matched.lower_is_better,
        "arms": {
            name: {"n_runs": arm.n_complete, "intervals": _plain(arm.intervals), "components": _plain(arm.components)}
            for name, arm in a.arms.items()
        },
        "comparisons": comparisons,
        "power": _plain(a.power),
        "test": contrasts.TEST_NAME,
    }
