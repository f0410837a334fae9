"""Studies: a YAML file -> expanded runs (arms × seeds); running them is executors.py, the layout records.py.

    results/<study>/<arm>/seed<k>/spec.json      what the run is (resolved train config + eval settings)
    results/<study>/<arm>/seed<k>/record.json    run record (train + eval), status complete/failed
    results/<study>/<arm>/seed<k>/eval.jsonl     per-item outputs and metrics
    exports/<study>/<arm>/seed<k>/               the PEFT adapter

A run whose record is complete is never redone, so a killed or interrupted study continues where it stopped.
The `base` arm (no adapter) is evaluated like every other arm, to show the untrained floor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ada_slm.run import models, records
from ada_slm.run.config import SEED_LIMIT, build_config, format_validation_error, load_yaml
from ada_slm.errors import UserError
from ada_slm.files import check_name, path_under

BASE_ARM = "base"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_seeds(seeds: list[int]) -> list[int]:
    """Seeds name run folders (seed<k>) and seed numpy: 0 ≤ seed < 2**32, each once."""
    for seed in seeds:
        if not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed {seed}: must be 0 ≤ seed < 2**32")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seed {repeated[0]} is listed twice (each seed is one run folder)")
    return seeds


class EvalSettings(Strict):
    """Identical for every arm of the study."""

    suite: str = Field("multilang", description="Suite name or file.")
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch (outputs identical at any size).")
    max_new_tokens: int = Field(48, gt=0, description="Generation budget per answer.")
    limit: Optional[int] = Field(None, gt=0, description="Only N suite items, spread evenly over the suite.")


class ScalePreset(Strict):
    """A named size of the study: `quick` for CPU demos, `full` for the seed's sizes."""

    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict, description="key.sub: value applied to the "
                                      "defaults, before each arm's own overrides (e.g. base, data.size, max_steps).")
    arms: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-arm overrides applied last, "
                                            "to keep an arm's difference at this scale (e.g. a smaller data arm).")
    eval: dict[str, Any] = Field(default_factory=dict, description="Overrides of the eval settings.")
    seeds: Optional[list[int]] = Field(None, description="Seeds for this preset (default: the study's).")
    skip: list[str] = Field(default_factory=list, description="Arms not run at this scale (e.g. an arm whose "
                            "question this scale cannot ask); the decision says so instead of answering it.")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: Optional[list[int]]) -> Optional[list[int]]:
        return None if v is None else _check_seeds(v)


class Question(Strict):
    """test `better`: 'does arm `compare` beat arm `against` on the decision metric?' — yes when the seed-level
    test supports the difference in the metric's better direction. test `equivalent`: 'do they give the same
    result?' — yes when two one-sided tests (TOST) put the difference inside ±margin; no otherwise (not shown
    equivalent), never from a mere 'not significant'. A question that compares corpus sizes is not asked when
    both arms see the same number of distinct training examples (max_steps caps them)."""

    compare: str
    against: str
    test: Literal["better", "equivalent"] = Field("better", description="better (superiority) or equivalent "
                                                  "(TOST within ±margin).")
    margin: Optional[float] = Field(None, gt=0, description="Equivalence margin on the decision metric (test "
                                    "equivalent; default: the study's equivalence_margins of the metric, else "
                                    "10 % of the `against` arm's mean).")

    @model_validator(mode="after")
    def _margin_needs_equivalence(self):
        if self.margin is not None and self.test != "equivalent":
            raise ValueError("margin is the equivalence margin: set test: equivalent")
        return self


class Rule(Strict):
    when: dict[str, bool] = Field(default_factory=dict, description="Answers required; {} matches anything.")
    recommend: str = Field(..., description="What to run next, in words.")
    config: dict[str, Any] = Field(default_factory=dict, description="Overrides of the baseline's config.")


class Decision(Strict):
    metric: str = Field("agl_awareness", description="The metric the questions are asked on: a per-item metric "
                        "(metrics.METRICS) or a run-level one (heldout_loss, train_loss: lower is better; "
                        "tokens_per_s).")
    questions: dict[str, Question]
    rules: list[Rule] = Field(..., min_length=1, description="First matching rule wins.")
    min_effect: Optional[float] = Field(None, gt=0, description="Smallest difference on `metric` worth acting on: "
                                        "the report says how many seeds per arm detect it with 80 % power.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return _check_metric(v)


def _check_metric(name: str) -> str:
    from ada_slm.run.metrics import METRICS, RUN_METRICS

    if name not in METRICS and name not in RUN_METRICS:
        raise ValueError(f"unknown metric {name!r} (one of: {', '.join((*METRICS, *RUN_METRICS))})")
    return name


class Adaptive(Strict):
    """How `ada-slm study run --until-decided` adds runs (README, "Adaptive studies")."""

    seeds_per_round: int = Field(1, gt=0, description="Runs added to each arm that is still open, per round.")
    max_seeds: int = Field(10, ge=2, description="Runs per arm at most (the last planned look; the alpha "
                           "spending is planned over the looks up to it).")
    eliminate: bool = Field(False, description="Sweep: arms significantly worse than the current leader stop "
                            "receiving runs; the sweep ends when one arm is left (or the rest are equivalent "
                            "within `margin`).")
    metric: Optional[str] = Field(None, description="Metric of the elimination (default: the decision's).")
    margin: Optional[float] = Field(None, gt=0, description="Equivalence margin on the metric: a question (or "
                                    "the sweep) also ends when the difference is shown to lie within ±margin "
                                    "(default: equivalence_margins of the metric, else decision.min_effect, "
                                    "else no equivalence stop).")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else _check_metric(v)


class Criterion(Strict):
    """A success criterion stated before the runs and judged from the runs' CIs in the report: met, not met or
    undecided. Exactly one of `above`, `below`, `better_than`."""

    text: str = Field(..., description="The criterion in the study's own words.")
    arm: str = Field(..., description="The arm it is about.")
    metric: str = Field(..., description="A per-item or run-level metric.")
    above: Optional[float] = Field(None, description="Met when the arm's 95 % CI lies above this value, not met "
                                   "when it lies below, else undecided.")
    below: Optional[float] = Field(None, description="Met when the arm's 95 % CI lies below this value.")
    better_than: Optional[str] = Field(None, description="Met when the arm beats this arm on the metric by the "
                                       "seed-level rule (lower for losses); not met when the 95 % CI of the "
                                       "difference lies on the worse side of 0.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return _check_metric(v)

    @model_validator(mode="after")
    def _one_test(self):
        if sum(x is not None for x in (self.above, self.below, self.better_than)) != 1:
            raise ValueError("give exactly one of above, below, better_than")
        return self


class Study(Strict):
    name: str = Field(..., description="Names the study's folders: letters, digits, '_', '.', '-'.")
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict, description="A run config shared by every arm.")
    arms: dict[str, dict[str, Any]] = Field(..., description="Arm name -> overrides of defaults (nested or "
                                            "key.sub keys).")
    baseline: str = Field(..., description="The arm every comparison is made against.")
    include_base: bool = Field(True, description="Also evaluate the base model without an adapter ('base').")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    scale: dict[str, ScalePreset] = Field(default_factory=dict)
    decision: Optional[Decision] = None
    followup_of: Optional[str] = Field(None, description="Study whose best arm `champion:` references use.")
    adaptive: Adaptive = Field(default_factory=Adaptive, description="Rounds of `study run --until-decided`.")
    equivalence_margins: dict[str, float] = Field(default_factory=dict, description="Metric -> margin of the "
                                                  "equivalence test (TOST) for arms that differ only in batch split "
                                                  "(default: 10 % of the baseline's mean).")
    criteria: list[Criterion] = Field(default_factory=list, description="Success criteria stated before the "
                                      "runs, judged met / not met / undecided in the report.")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        return _as_value_error(check_name, v, "study name")

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, v: dict) -> dict:
        for arm in v:
            _as_value_error(check_name, arm, "arm")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return _check_seeds(v)

    @field_validator("equivalence_margins")
    @classmethod
    def _known_margins(cls, v: dict[str, float]) -> dict[str, float]:
        for name, margin in v.items():
            _check_metric(name)
            if not margin > 0:
                raise ValueError(f"margin of {name} must be > 0")
        return v

    @model_validator(mode="after")
    def _check(self):
        if not self.arms:
            raise ValueError("arms: a study needs at least one arm")
        if BASE_ARM in self.arms:
            raise ValueError(f"arms: '{BASE_ARM}' is reserved for the untrained base model")
        if self.baseline not in self.arms:
            raise ValueError(f"baseline: {self.baseline!r} is not an arm ({', '.join(self.arms)})")
        for name, preset in self.scale.items():
            for arm in preset.arms:
                if arm not in self.arms:
                    raise ValueError(f"scale.{name}.arms: unknown arm {arm!r}")
            for arm in preset.skip:
                if arm not in self.arms:
                    raise ValueError(f"scale.{name}.skip: unknown arm {arm!r}")
                if arm == self.baseline:
                    raise ValueError(f"scale.{name}.skip: the baseline {arm!r} is run at every scale")
        for i, c in enumerate(self.criteria):
            for arm in (c.arm, c.better_than):
                if arm is not None and arm not in self.arms and arm != BASE_ARM:
                    raise ValueError(f"criteria.{i}: unknown arm {arm!r}")
        if self.decision:
            for q, spec in self.decision.questions.items():
                for arm in (spec.compare, spec.against):
                    if arm not in self.arms and arm != BASE_ARM:
                        raise ValueError(f"decision.questions.{q}: unknown arm {arm!r}")
            for i, rule in enumerate(self.decision.rules):
                for q in rule.when:
                    if q not in self.decision.questions:
                        raise ValueError(f"decision.rules.{i}.when: unknown question {q!r}")
        return self


def _as_value_error(check, *args):
    """A files.py check inside a pydantic validator: its UserError becomes the field's ValueError."""
    try:
        return check(*args)
    except UserError as e:
        raise ValueError(str(e)) from None


@dataclass
class RunSpec:
    arm: str
    seed: int
    run_dir: Path
    export_dir: Path
    train: Optional[dict]  # resolved TrainConfig as a dict; None for the base arm
    base: str
    eval: dict

    @property
    def key(self) -> str:
        return f"{self.arm}/seed{self.seed}"


def load_study(path: str | Path) -> Study:
    raw = load_yaml(path)
    try:
        return Study.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(path))) from None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.endswith("data.mix"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _as_overrides(d: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in _flatten(d).items()]


def expand(study: Study, source: str, scale: str | None = None, only: list[str] | None = None,
           seeds: list[int] | None = None, results_root: str | Path = "results",
           exports_root: str | Path = "exports") -> list[RunSpec]:
    """Every (arm, seed) run of the study, with its resolved config, in a stable order (base first)."""
    preset = ScalePreset()
    if scale is not None:
        if scale not in study.scale:
            raise UserError(f"{source}: no scale preset {scale!r} (defined: {', '.join(study.scale) or 'none'})")
        preset = study.scale[scale]
    seeds = seeds or preset.seeds or study.seeds
    try:
        _check_seeds(list(seeds))
    except ValueError as e:
        raise UserError(f"{source}: {e}") from None
    eval_settings = study.eval.model_copy(update=preset.eval)
    try:
        eval_settings = EvalSettings.model_validate(eval_settings.model_dump())
    except ValidationError as e:
        raise UserError(format_validation_error(e, f"{source} (scale {scale}.eval)")) from None
    arm_names = ([BASE_ARM] if study.include_base else []) + [a for a in study.arms if a not in preset.skip]
    if only:
        unknown = [a for a in only if a not in arm_names]
        skipped = [a for a in unknown if a in preset.skip]
        if skipped:
            raise UserError(f"--only {skipped[0]!r}: scale {scale} does not run it ({source}: scale.{scale}.skip)")
        if unknown:
            raise UserError(f"--only {unknown[0]!r}: not an arm of {study.name} ({', '.join(arm_names)})")
        arm_names = [a for a in arm_names if a in only]
    specs = []
    for arm in arm_names:
        # defaults ← preset ← arm ← preset's per-arm tweak: an arm keeps what makes it different
        overrides = _as_overrides(preset.overrides)
        if arm != BASE_ARM:
            overrides += _as_overrides(study.arms[arm]) + _as_overrides(preset.arms.get(arm, {}))
        cfg = build_config(study.defaults, overrides, source=f"{source} (arm {arm})")
        for seed in seeds:
            # names are checked (Study), and the folders must still land under their roots (a symlinked arm)
            run_dir = path_under(results_root, study.name, arm, f"seed{seed}")
            export_dir = path_under(exports_root, study.name, arm, f"seed{seed}")
            train = None
            if arm != BASE_ARM:
                seeded = cfg.model_copy(update={"seed": seed, "out_dir": str(run_dir),
                                                "export_dir": str(export_dir)})
                train = seeded.model_dump()
            specs.append(RunSpec(arm, seed, run_dir, export_dir, train, cfg.base, eval_settings.model_dump()))
    return specs


def validate_models(specs: list[RunSpec]) -> None:
    """Fail before anything runs if a base model can't be found (never mid-study)."""
    for base in sorted({s.base for s in specs}):
        models.resolve(base)


def record_of(spec: RunSpec) -> dict | None:
    """The run's record; None if there is none yet or it is corrupt (such a run is redone)."""
    return records.read_record_or_none(spec.run_dir)


def is_complete(spec: RunSpec) -> bool:
    return records.is_complete(record_of(spec))


def state_of(spec: RunSpec) -> str:
    """done | failed | corrupt | pending (never started, or started and not finished)."""
    try:
        rec = records.read_record(spec.run_dir)
    except records.CorruptRecord:
        return "corrupt"
    if rec is None:
        return "pending"
    if records.is_complete(rec):
        return "done"
    return "failed" if records.state(rec) == records.FAILED else "pending"


def estimate_seconds(spec: RunSpec, tokens_per_s: float | None, mean_tokens: float | None) -> float | None:
    """Training time from measured throughput: tokens per example × examples × epochs ÷ tokens/s."""
    if spec.train is None or not tokens_per_s or not mean_tokens:
        return None
    t = spec.train
    n_train = train_examples(t)
    effective = t["batch"]["micro"] * t["batch"]["accum"]
    sequences = (t["max_steps"] * effective) if t["max_steps"] else n_train * t["epochs"]
    return sequences * mean_tokens / tokens_per_s


def measured_throughput(specs: list[RunSpec]) -> tuple[float | None, float | None]:
    """(tokens/s, tokens per sequence) from finished runs of these specs, if any."""
    rates, per_seq = [], []
    for s in specs:
        rec = record_of(s)
        if rec and rec.get("train") and rec["train"].get("tokens_per_s"):
            rates.append(rec["train"]["tokens_per_s"])
            steps = rec["train"]["steps"]
            per_seq.append(sum(x["tokens"] for x in steps) / max(1, sum(x["sequences"] for x in steps)))
    if not rates:
        return None, None
    return sum(rates) / len(rates), sum(per_seq) / len(per_seq)


def train_examples(cfg: dict) -> int:
    """Training examples of a builder corpus: size - val_size, or ≈ size × (1 - val_fraction) (the builder
    allocates the held-out share per category)."""
    data = cfg["data"]
    if data.get("val_size"):
        return int(data["size"] - data["val_size"])
    return int(data["size"] * (1 - data["val_fraction"]))


def optimizer_steps(cfg: dict) -> int:
    """Optimizer steps of a run as train.py counts them: max_steps, or ⌈epochs × ⌈train examples / effective
    batch⌉⌉."""
    if cfg.get("max_steps"):
        return int(cfg["max_steps"])
    effective = cfg["batch"]["micro"] * cfg["batch"]["accum"]
    return max(1, math.ceil(cfg["epochs"] * math.ceil(train_examples(cfg) / effective)))


def distinct_examples_seen(cfg: dict) -> int | None:
    """How many different training examples a run of the builder's corpus sees: all of them, unless max_steps
    stops it first (steps × effective batch sequences, each a different example within an epoch). None for a
    corpus from data.path, whose size the config does not say."""
    if cfg["data"].get("path"):
        return None
    n_train = train_examples(cfg)
    effective = cfg["batch"]["micro"] * cfg["batch"]["accum"]
    return min(n_train, optimizer_steps(cfg) * effective)
