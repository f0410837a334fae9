"""The run record (`record.json`) and the results layout: one reader, one writer, one idea of "complete".

    results/<study>/<arm>/seed<k>/spec.json      what the run is (resolved train config + eval settings)
    results/<study>/<arm>/seed<k>/record.json    the run record: config, status, train, eval, meta
    results/<study>/<arm>/seed<k>/eval.jsonl     per-item outputs and metrics
    results/<study>/<arm>/seed<k>/run.log        the run's stderr (local executor)
    exports/<study>/<arm>/seed<k>/               the PEFT adapter

A record is one pydantic `RunRecord` (config: the TrainConfig that ran; status, train, eval, meta), read by
`read_record` and written by `write_record` with `model_dump_json`: the keys it was read or built with, in their
order, so a record of an earlier version is written back as it was. Writes are atomic (temp file + rename), so
a reader never sees half a record; a record that is nevertheless not valid JSON (a disk filled up, a hand
edit) or holds a field of the wrong type is one CorruptRecord line naming the file and the field.
"""

from __future__ import annotations

import importlib.metadata as md
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeGuard

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationError,
    model_serializer,
    model_validator,
)

from ada_slm.errors import UserError
from ada_slm.files import UnreadableFile, atomic_write_text, read_json
from ada_slm.run.config import TrainConfig

RECORD = "record.json"
SPEC = "spec.json"
EVAL_ITEMS = "eval.jsonl"
RUN_LOG = "run.log"

# status.state values a record can hold
COMPLETE, FAILED, RUNNING, INTERRUPTED = "complete", "failed", "running", "interrupted"


class CorruptRecord(UserError):
    """A record.json that exists but cannot be read as a run record."""


@dataclass(frozen=True)
class RunPaths:
    """Where one run of a study lives."""

    results_root: Path
    exports_root: Path
    study: str
    arm: str
    seed: int

    @property
    def run_dir(self) -> Path:
        return Path(self.results_root) / self.study / self.arm / f"seed{self.seed}"

    @property
    def export_dir(self) -> Path:
        return Path(self.exports_root) / self.study / self.arm / f"seed{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.arm}/seed{self.seed}"


def record_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RECORD


def _json_number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{type(value).__name__} {value!r:.40}, not a number")
    return value


# A JSON number, kept as written (an int stays an int, so a rewritten record holds the same text); "1.5" is damage.
Number = Annotated[int | float, PlainValidator(_json_number)]


class Section(BaseModel):
    """A part of a run record. Unlike a config (schema.Strict), a record is a log written by every version of
    the tool: a key this version does not know is kept as it is (and written back by mark_failed, the eval
    command, rescoring), and NaN/±inf are written as json.dumps writes them, so a rewrite changes nothing."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")


class Step(Section):
    """One optimizer step of train.steps (run/train.py)."""

    step: StrictInt = Field(description="Optimizer steps done, 1-based.")
    loss: Number = Field(description="Mean cross-entropy per target token over the step's sequences.")
    grad_norm: Number | None = Field(None, description="Gradient norm before clipping.")
    lr: Number | None = Field(None, description="Learning rate the step used.")
    sequences: Number | None = Field(None, description="Sequences in the step (micro × accum).")
    passes: StrictInt | None = Field(
        None,
        description="Forward/backward passes the step was executed in "
        "(config `execution`; the configured split is micro × accum).",
    )
    target_tokens: Number | None = Field(None, description="Tokens the loss is computed on.")
    tokens: Number | None = Field(None, description="All tokens forwarded (prompt included).")
    tokens_per_s: Number | None = Field(None, description="tokens / the step's seconds.")
    target_tokens_per_s: Number | None = Field(None, description="target_tokens / the step's seconds.")


class Point(Section):
    """One held-out evaluation of train.val."""

    step: StrictInt
    loss: Number = Field(description="Mean cross-entropy per target token over the held-out set.")


class TrainSection(Section):
    """record.json's "train": the steps so far, then (once exported) the run's totals and its adapter."""

    loss_normalisation: str | None = Field(None, description="What `loss` is a mean of.")
    steps: list[Step] = Field(default_factory=list)
    val: list[Point] = Field(default_factory=list)
    trainable_params: StrictInt | None = None
    last_checkpoint_step: StrictInt | None = Field(None, description="Step of the newest resumable checkpoint.")
    wall_s: Number | None = Field(None, description="Training seconds, over every resume.")
    final_train_loss: Number | None = None
    mean_train_loss: Number | None = None
    final_val_loss: Number | None = None
    tokens_per_s: Number | None = Field(None, description="All tokens / all step seconds.")
    target_tokens_per_s: Number | None = None
    peak_rss_mb: Number | None = None
    peak_gpu_mb: Number | None = None
    adapter_dir: str | None = Field(None, description="The exported PEFT adapter.")
    adapter_bytes: StrictInt | None = None
    final_adapter_sha256: str | None = None
    merged_dir: str | None = Field(None, description="The merged model (train --merge).")


class GenerationSection(Section):
    """eval.generation: the evaluate.GenerationSettings the outputs were generated with."""

    mode: str
    max_new_tokens: StrictInt
    batch_size: StrictInt


class EvalSection(Section):
    """record.json's "eval": run/evaluate.py's summary (also <run_dir>/eval_summary.json)."""

    suite: str | None = None
    suite_path: str | None = None
    n_items: StrictInt | None = None
    limit: StrictInt | None = None
    base: str | None = None
    adapter: str | None = Field(None, description="The adapter evaluated; None: the base model alone.")
    arm: str | None = None
    generation: GenerationSection | None = None
    generation_s: Number | None = Field(None, description="Seconds this evaluation spent generating.")
    items_per_s: Number | None = None
    cached_from: dict[str, Any] | None = Field(
        None, description="The stored generation reused (eval_cache.py: run, generated_at, generation_s, key), if any."
    )
    eval_cache: dict[str, Any] | None = None
    perplexity: Number | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="metric -> mean, n, ci_low, ci_high.")
    by_lang: dict[str, Any] | None = None
    seed_scoring: dict[str, Any] | None = None


class Status(Section):
    state: str | None = Field(None, description="running, complete, failed or interrupted.")
    reason: str | None = Field(None, description="Why the run failed or stopped.")


class ResolvedLora(Section):
    """The adapter PEFT built (init_adapter's own shape wins over the config's lora)."""

    r: StrictInt | None = None
    alpha: Number | None = None
    targets: list[str] | None = None
    use_rslora: bool | None = None
    use_dora: bool | None = None


class RunFacts(Section):
    """What record.json's "config" holds besides the TrainConfig: values fixed when training started, or, in
    the base arm's eval-only record, only the base model and the arm."""

    base: str | None = Field(None, description="The base arm's model (a trained run's is config.base).")
    arm: str | None = None
    effective_batch: StrictInt | None = None
    batch_arithmetic: str | None = None
    total_steps: StrictInt | None = None
    steps_per_epoch: StrictInt | None = None
    resolved_lora: ResolvedLora | None = None
    executed_split: str | None = Field(
        None,
        description="The configured split and how the steps were executed: "
        "`configured 1×16=16, executed in passes of ≤ 1024 padded tokens, grouped "
        "by length`.",
    )
    executed_passes: list[StrictInt] | None = Field(
        None,
        description="[padded tokens per pass at most, pass "
        "cost] the steps were cut with (None: batch.micro sequences "
        "per pass).",
    )


_FACTS = set(RunFacts.model_fields) - {"base"}  # `base` is the TrainConfig's too: see _split_config


class RunRecord(Section):
    """<run_dir>/record.json: what one run was (config), how far it got (status), what training and the
    evaluation measured (train, eval) and where it ran (meta). On disk "config" is one object, the TrainConfig's
    fields followed by `facts`; in memory they are apart, so `config` is exactly the TrainConfig that ran."""

    config: TrainConfig | None = Field(
        None, description="The config that trained; None for the base arm's eval-only record."
    )
    facts: RunFacts | None = Field(None, description="record.json config's other keys (RunFacts).")
    status: Status
    train: TrainSection | None = None
    eval: EvalSection | None = None
    meta: dict[str, Any] | None = Field(
        None, description="Provenance: data and weight hashes, packages, device, precision, seed, arm."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("config"), dict) and "facts" not in data:
            raw = data["config"]
            trained = {k: v for k, v in raw.items() if k not in _FACTS}
            facts = {k: v for k, v in raw.items() if k in _FACTS}
            config: dict | None = trained
            if set(trained) <= {"base"}:  # no training config: the base arm's {base, arm} (or facts alone)
                facts, config = raw, None
            data = {"config": config, "facts": facts, **{k: v for k, v in data.items() if k != "config"}}
        return data

    @model_serializer(mode="wrap")
    def _join_config(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        out = handler(self)
        if "config" not in out and "facts" not in out:
            return out
        joined = None
        if self.config is not None or self.facts is not None:
            # `execution` (how steps were computed, not what was learned) and `loss` are written only where they
            # were set: records of versions before them read and write back unchanged (their loss was per token);
            # facts.executed_split says how every newer run was executed
            unset = None if self.config is None else {"execution", "loss"} - self.config.model_fields_set
            joined = self.config.model_dump(mode=info.mode, exclude=unset) if self.config is not None else {}
            joined.update(out.get("facts") or {})
        return {"config": joined, **{k: v for k, v in out.items() if k not in ("config", "facts")}}

    def to_json(self) -> str:
        """record.json's text: the keys a record was read or built with, in their order (write_json's layout)."""
        return self.model_dump_json(indent=2, exclude_unset=True) + "\n"


def config_of(record: RunRecord | None) -> TrainConfig | None:
    """The TrainConfig a run trained with, from its record; None for the base arm or without a record. The
    adapter's shape is what PEFT built (facts.resolved_lora): with `lora.init_adapter` the continued adapter's
    r, alpha, rsLoRA and DoRA win over the config's, and every label, factor and plot must say so."""
    if record is None or record.config is None:
        return None
    built = record.facts.resolved_lora if record.facts is not None else None
    if built is None:
        return record.config
    shape = {
        k: v
        for k, v in (
            ("r", built.r),
            ("alpha", built.alpha),
            ("use_rslora", built.use_rslora),
            ("use_dora", built.use_dora),
        )
        if v is not None and getattr(record.config.lora, k) != v
    }
    if not shape:
        return record.config
    return record.config.model_copy(update={"lora": record.config.lora.model_copy(update=shape)})


def train_section(record: RunRecord) -> TrainSection:
    """The record's "train", which every record a run trains (train.new_record) has; only the base arm's
    eval-only record has none."""
    if record.train is None:
        raise ValueError("this run record has no train section (the base arm's eval-only record)")
    return record.train


def base_model(record: RunRecord) -> str | None:
    """The base model a run trained on or (the base arm) was evaluated as."""
    if record.config is not None:
        return record.config.base
    return record.facts.base if record.facts is not None else None


def adapter_dir(record: RunRecord | None) -> str | None:
    """The run's exported adapter; None for the base arm or before export."""
    return record.train.adapter_dir if record is not None and record.train is not None else None


def read_record(run_dir: str | Path, limit: int | None = None, within: list[Path] | None = None) -> RunRecord | None:
    """The record of a run directory; None when there is none yet. Raises CorruptRecord (one line, naming the
    file) when the file is truncated, not JSON, not a record, or not a regular file (files.read_json: also
    larger than `limit` or outside `within`)."""
    path = record_path(run_dir)
    try:
        record = read_json(path, limit, within)
    except UnreadableFile as e:
        raise CorruptRecord(f"{path}: corrupt run record ({e.reason}); delete it to redo the run") from None
    if record is None:
        return None
    return check_record(record, path)


def _where(loc: tuple) -> str:
    """A validation error's place as it is written in record.json (facts are keys of "config" there)."""
    parts = [str(x) for x in loc if not str(x).startswith(("function-", "union"))]
    if parts and parts[0] == "facts":
        parts[0] = "config"
    return ".".join(p if p.isprintable() else repr(p) for p in parts)


def check_record(record: Any, path: str | Path) -> RunRecord:
    """`record` (parsed JSON) as a RunRecord; else CorruptRecord naming the file and the field."""
    problem = None
    if not isinstance(record, dict) or not isinstance(record.get("status"), dict):
        problem = "no 'status' object"
    else:
        try:
            return RunRecord.model_validate(record)
        except ValidationError as e:
            err = e.errors()[0]
            problem = f"{_where(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
        except RecursionError:
            problem = "nested too deeply"
    raise CorruptRecord(f"{path}: not a run record ({problem}); delete it to redo the run")


def read_record_or_none(run_dir: str | Path) -> RunRecord | None:
    """Like read_record, but a corrupt record counts as no record (the runner redoes such a run)."""
    try:
        return read_record(run_dir)
    except CorruptRecord:
        return None


def write_record(run_dir: str | Path, record: RunRecord) -> None:
    atomic_write_text(record_path(run_dir), record.to_json())


def state(record: RunRecord | None) -> str | None:
    return record.status.state if record is not None else None


def is_trained(record: RunRecord | None) -> TypeGuard[RunRecord]:
    """Training finished (the adapter is exported); the evaluation may still be missing."""
    return state(record) == COMPLETE


def is_complete(record: RunRecord | None) -> TypeGuard[RunRecord]:
    """Trained (or the base arm) *and* evaluated: what a study never redoes."""
    return (
        record is not None and record.status.state == COMPLETE and record.eval is not None and bool(record.eval.metrics)
    )


def mark_failed(run_dir: str | Path, reason: str) -> RunRecord:
    """Record a failure with its reason, keeping whatever the record already holds (steps, meta)."""
    record = read_record_or_none(run_dir) or RunRecord(status=Status())
    record.status = Status(state=FAILED, reason=reason)
    write_record(run_dir, record)
    return record


# ------------------------------------------------------------------------------ provenance for a record's meta
def package_versions() -> dict:

    out: dict[str, str | None] = {}
    for pkg in ("ada-slm", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
