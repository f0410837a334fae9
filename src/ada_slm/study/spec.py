"""Studies: a YAML file -> expanded runs (arms × seeds); running them is executors.py, the layout records.py.

    results/<study>/<arm>/seed<k>/spec.json      what the run is (resolved train config + eval settings)
    results/<study>/<arm>/seed<k>/record.json    run record (train + eval), status complete/failed
    results/<study>/<arm>/seed<k>/eval.jsonl     per-item outputs and metrics
    exports/<study>/<arm>/seed<k>/               the PEFT adapter

A run whose record is complete is never redone, so a killed or interrupted study continues where it stopped.
The `base` arm (no adapter) is evaluated like every other arm, to show the untrained floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text, check_name, path_under, read_regular
from ada_slm.run import models, records
from ada_slm.run.config import (
    SEED_LIMIT,
    ConfigPatch,
    TrainConfig,
    deep_merge,
    format_validation_error,
    load_yaml,
    patch_layer,
    validate_config,
)
from ada_slm.run.suites import MAX_NEW_TOKENS
from ada_slm.run.tracking import Tracking
from ada_slm.study.decision import Adaptive, Criterion, Decision, Strict, check_metric

BASE_ARM = "base"


# Caps on a study's size, far above any real study, far below what exhausts a machine: checked before anything is
# expanded (every check here is linear in the study file's size).
MAX_SEEDS = 1000  # per study (or per --seeds)
MAX_ARMS = 1000
MAX_RUNS = 10_000  # arms × seeds, the runs `study plan` and `study run` expand


def _check_seeds(seeds: list[int]) -> list[int]:
    """Seeds name run folders (seed<k>) and seed numpy: 0 ≤ seed < 2**32, each once, at most MAX_SEEDS."""
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"{len(seeds)} seeds: at most {MAX_SEEDS} in one study")
    seen: set[int] = set()
    for seed in seeds:
        if not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed {seed}: must be 0 ≤ seed < 2**32")
        if seed in seen:
            raise ValueError(f"seed {seed} is listed twice (each seed is one run folder)")
        seen.add(seed)
    return seeds


class EvalSettings(Strict):
    """Identical for every arm of the study."""

    suite: str = Field("multilang", description="Suite name or file.")
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch (outputs identical at any size).")
    max_new_tokens: int = Field(48, gt=0, le=MAX_NEW_TOKENS, description="Generation budget per answer.")
    limit: int | None = Field(None, gt=0, description="Only N suite items, spread evenly over the suite.")


# A scale preset's `eval`: part of EvalSettings, checked when the study file is read.
EvalPatch = Annotated[dict[str, Any], BeforeValidator(lambda raw: patch_layer(EvalSettings, raw))]


class ScalePreset(Strict):
    """A named size of the study: `quick` for CPU demos, `full` for the seed's sizes."""

    description: str = Field("", description="What this scale is for, in words (shown by `study plan`).")
    overrides: ConfigPatch = Field(
        default_factory=dict,
        description="Run-config keys (nested or key.sub) laid "
        "over the defaults, before each arm's own overrides (e.g. base, data.size, "
        "max_steps).",
    )
    arms: dict[str, ConfigPatch] = Field(
        default_factory=dict,
        description="Per-arm overrides applied last, "
        "to keep an arm's difference at this scale (e.g. a smaller data arm).",
    )
    eval: EvalPatch = Field(default_factory=dict, description="Overrides of the eval settings.")
    seeds: list[int] | None = Field(None, description="Seeds for this preset (default: the study's).")
    skip: list[str] = Field(
        default_factory=list,
        description="Arms not run at this scale (e.g. an arm whose "
        "question this scale cannot ask); the decision says so instead of answering it.",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else _check_seeds(v)


class Study(Strict):
    name: str = Field(..., description="Names the study's folders: letters, digits, '_', '.', '-'.")
    description: str = Field("", description="What the study asks, in words (the report and the page show it).")
    defaults: ConfigPatch = Field(
        default_factory=dict,
        description="Run-config keys shared by every arm (nested or key.sub keys; any TrainConfig field).",
    )
    arms: dict[str, ConfigPatch] = Field(
        ..., description="Arm name -> run-config keys laid over the defaults (nested or key.sub keys)."
    )
    baseline: str = Field(..., description="The arm every comparison is made against.")
    include_base: bool = Field(True, description="Also evaluate the base model without an adapter ('base').")
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        description="Training seeds: one run per arm and seed (0 ≤ seed < 2**32; arms sharing a seed are paired).",
    )
    eval: EvalSettings = Field(default_factory=EvalSettings, description="How every run is evaluated.")
    scale: dict[str, ScalePreset] = Field(
        default_factory=dict, description="Named sizes of the study (quick, cpu, full…): `--scale NAME`."
    )
    decision: Decision | None = Field(
        None, description="The questions the study asks and the rules that turn their answers into the next run."
    )
    followup_of: str | None = Field(None, description="Study whose best arm `champion:` references use.")
    adaptive: Adaptive = Field(default_factory=Adaptive, description="Rounds of `study run --until-decided`.")
    equivalence_margins: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> margin of the "
        "equivalence test (TOST) for arms that differ only in batch split "
        "(default: 10 % of the baseline's mean).",
    )
    criteria: list[Criterion] = Field(
        default_factory=list,
        description="Success criteria stated before the runs, judged met / not met / undecided in the report.",
    )
    pairing: Literal["seed", "none"] = Field(
        "seed",
        description="How two arms' runs are compared, fixed before "
        "any result: seed — the runs of the seeds both arms have are paired "
        "(same data order, LoRA init and items: a seed is a block) and the "
        "interval is of the same-seed differences; none — independent runs.",
    )
    item_clusters: Literal["template", "category", "none"] = Field(
        "template",
        description="What items share an effect in the item term: template — a generated item's "
        "template (a hand-written item is its own); category — the item's category; none — every item "
        "independent. The item term's d.f. is then the clusters − 1.",
    )

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        return _as_value_error(check_name, v, "study name")

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, v: dict) -> dict:
        if len(v) > MAX_ARMS:
            raise ValueError(f"{len(v)} arms: at most {MAX_ARMS} in one study")
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
            check_metric(name)
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


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: where it lives, what it trains (None for the base arm) and how it is evaluated."""

    paths: records.RunPaths
    train: TrainConfig | None
    base: str
    eval: dict  # EvalSettings.model_dump(), identical for every arm

    @property
    def arm(self) -> str:
        return self.paths.arm

    @property
    def seed(self) -> int:
        return self.paths.seed

    @property
    def run_dir(self) -> Path:
        return self.paths.run_dir

    @property
    def export_dir(self) -> Path:
        return self.paths.export_dir

    @property
    def key(self) -> str:
        return self.paths.key


SPEC_LIMIT = 2**20  # a spec.json is a few KiB; more is not a file `study run` wrote


class SpecFile(Strict):
    """<run_dir>/spec.json: what the runner gives a run's own process."""

    arm: str
    seed: int = Field(..., ge=0, lt=SEED_LIMIT)
    base: str = Field(..., description="Base model of the run (the base arm's only setting).")
    train: TrainConfig | None = Field(..., description="The resolved train config; null for the base arm.")
    eval: EvalSettings
    tracking: Tracking | None = None


def write_spec_file(spec: RunSpec, tracking: Tracking | None) -> None:
    text = SpecFile(
        arm=spec.arm, seed=spec.seed, base=spec.base, train=spec.train, eval=spec.eval, tracking=tracking
    ).model_dump_json(indent=2)
    atomic_write_text(spec.run_dir / records.SPEC, text + "\n")


def read_spec_file(run_dir: Path) -> SpecFile:
    """The spec.json of a run folder; a missing, special (a FIFO), huge or malformed file is one UserError line
    naming it (the run is then marked failed)."""
    path = run_dir / records.SPEC
    data = read_regular(path, limit=SPEC_LIMIT)
    if data is None:
        raise UserError(f"{path}: no such file (run the study with `study run` to write it)")
    try:
        return SpecFile.model_validate_json(data)
    except ValidationError as e:
        raise UserError(
            format_validation_error(e, f"{path}: not a run spec written by `study run` (run it again to rewrite it)")
        ) from None


def load_study(path: str | Path) -> Study:
    raw = load_yaml(path)
    try:
        study = Study.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(path))) from None
    check_configs(study, str(path))
    return study


def check_configs(study: Study, source: str) -> None:
    """Every config the study can train, resolved and checked when the file is read: each arm at no scale and at
    each scale preset (a skipped arm too: the file is wrong either way), and each decision rule's `config` over the
    baseline arm's. A patch alone can be valid and its merge not (data.val_size ≥ data.size): that is one line at
    `study plan`, not a failed run or a surprise after the runs when the rule matches."""
    for scale, preset in [(None, ScalePreset()), *study.scale.items()]:
        for arm in study.arms:
            arm_config(study, arm, preset, source, scale)
    if study.decision is None:
        return
    baseline = deep_merge(study.defaults, study.arms[study.baseline])
    for i, rule in enumerate(study.decision.rules):
        if rule.config:
            validate_config(deep_merge(baseline, rule.config), f"{source}: decision.rules.{i}.config")


def arm_config(study: Study, arm: str, preset: ScalePreset, source: str, scale: str | None = None) -> TrainConfig:
    """defaults ← scale preset ← arm ← the preset's per-arm tweak (an arm keeps what makes it different), as one
    validated TrainConfig; a mistake is one line naming the file, the arm and the scale."""
    layers = [preset.overrides]
    if arm != BASE_ARM:
        layers += [study.arms[arm], preset.arms.get(arm, {})]
    where = f"arm {arm}" if scale is None else f"arm {arm}, scale {scale}"
    return validate_config(deep_merge(study.defaults, *layers), f"{source} ({where})")


def expand(
    study: Study,
    source: str,
    scale: str | None = None,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
    results_root: str | Path = "results",
    exports_root: str | Path = "exports",
) -> list[RunSpec]:
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
    specs = []
    arms = _arm_names(study, preset, scale, only, source)
    if len(arms) * len(seeds) > MAX_RUNS:
        raise UserError(
            f"{source}: {len(arms)} arms × {len(seeds)} seeds = {len(arms) * len(seeds)} runs: at most "
            f"{MAX_RUNS} in one study (split it, or run some arms with --only)"
        )
    for arm in arms:
        cfg = arm_config(study, arm, preset, source, scale)
        for seed in seeds:
            paths = records.RunPaths(Path(results_root), Path(exports_root), study.name, arm, seed)
            # names are checked (Study), and the folders must still land under their roots (a symlinked arm)
            path_under(results_root, study.name, arm, f"seed{seed}")
            path_under(exports_root, study.name, arm, f"seed{seed}")
            train = None
            if arm != BASE_ARM:
                train = cfg.model_copy(
                    update={"seed": seed, "out_dir": str(paths.run_dir), "export_dir": str(paths.export_dir)}
                )
            specs.append(RunSpec(paths, train, cfg.base, eval_settings.model_dump()))
    return specs


def _arm_names(study: Study, preset: ScalePreset, scale: str | None, only: list[str] | None, source: str) -> list[str]:
    """The arms this scale runs (base first), narrowed to `only` (--only) where given."""
    arm_names = ([BASE_ARM] if study.include_base else []) + [a for a in study.arms if a not in preset.skip]
    if only:
        unknown = [a for a in only if a not in arm_names]
        skipped = [a for a in unknown if a in preset.skip]
        if skipped:
            raise UserError(f"--only {skipped[0]!r}: scale {scale} does not run it ({source}: scale.{scale}.skip)")
        if unknown:
            raise UserError(f"--only {unknown[0]!r}: not an arm of {study.name} ({', '.join(arm_names)})")
        arm_names = [a for a in arm_names if a in only]
    return arm_names


def validate_models(specs: list[RunSpec]) -> None:
    """Fail before anything runs if a base model can't be found (never mid-study)."""
    for base in sorted({s.base for s in specs}):
        models.resolve(base)


def record_of(spec: RunSpec) -> records.RunRecord | None:
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


def estimate_seconds(
    cfg: TrainConfig | None, tokens_per_s: float | None, tokens_per_sequence: float | None
) -> float | None:
    """Training time from measured throughput: sequences (max_steps × effective batch, else training examples ×
    epochs) × tokens per sequence ÷ tokens/s. None for the base arm (nothing to train) or without a rate."""
    if cfg is None or not tokens_per_s or not tokens_per_sequence:
        return None
    sequences = cfg.max_steps * cfg.effective_batch if cfg.max_steps else cfg.train_examples * cfg.epochs
    return sequences * tokens_per_sequence / tokens_per_s


def measured_throughput(specs: list[RunSpec]) -> tuple[float | None, float | None]:
    """(tokens/s, tokens per sequence) from finished runs of these specs, if any."""
    rates, per_seq = [], []
    for s in specs:
        rec = record_of(s)
        if rec and rec.train is not None and rec.train.tokens_per_s:
            rates.append(rec.train.tokens_per_s)
            # the train section's tokens_per_s was computed from every step's counts: all of them are there
            counts = [
                (x.tokens, x.sequences) for x in rec.train.steps if x.tokens is not None and x.sequences is not None
            ]
            per_seq.append(sum(t for t, _ in counts) / max(1, sum(n for _, n in counts)))
    if not rates:
        return None, None
    return sum(rates) / len(rates), sum(per_seq) / len(per_seq)
