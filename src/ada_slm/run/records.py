"""The run record (`record.json`) and the results layout: one reader, one writer, one idea of "complete".

    results/<study>/<arm>/seed<k>/spec.json      what the run is (resolved train config + eval settings)
    results/<study>/<arm>/seed<k>/record.json    the run record: config, status, train, eval, meta
    results/<study>/<arm>/seed<k>/eval.jsonl     per-item outputs and metrics
    results/<study>/<arm>/seed<k>/run.log        the run's stderr (local executor)
    exports/<study>/<arm>/seed<k>/               the PEFT adapter

Writes are atomic (temp file + rename), so a reader never sees half a record; a record that is nevertheless
not valid JSON (a disk filled up, a hand edit) is reported naming the file instead of a traceback.
"""

from __future__ import annotations

import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from ada_slm.errors import UserError
from ada_slm.files import UnreadableFile, read_json, write_json

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


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


Number = StrictFloat  # JSON numbers only (an int is one too): "1.5" in a record is damage, not a number


class _Step(_Open):
    """One optimizer step of record["train"]["steps"]."""

    step: StrictInt
    loss: Number
    tokens: Optional[Number] = None
    sequences: Optional[Number] = None
    tokens_per_s: Optional[Number] = None


class _Point(_Open):
    """One held-out evaluation of record["train"]["val"]."""

    step: StrictInt
    loss: Number


class _Train(_Open):
    """record["train"]: what the readers of a record (the analysis, the page, the status table) use of it."""

    steps: list[_Step] = Field(default_factory=list)
    val: list[_Point] = Field(default_factory=list)
    final_val_loss: Optional[Number] = None
    final_train_loss: Optional[Number] = None
    tokens_per_s: Optional[Number] = None
    wall_s: Optional[Number] = None
    adapter_dir: Optional[str] = None


class _Generation(_Open):
    mode: str
    max_new_tokens: StrictInt
    batch_size: StrictInt


class _Eval(_Open):
    """record["eval"]: the evaluation's summary."""

    suite: Optional[str] = None
    n_items: Optional[StrictInt] = None
    generation_s: Optional[Number] = None
    generation: Optional[_Generation] = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class _Status(_Open):
    state: Optional[str] = None
    reason: Optional[str] = None


class _Config(_Open):
    total_steps: Optional[StrictInt] = None


class RecordShape(_Open):
    """The parts of a run record its readers rely on, checked once when it is read so that a damaged record is
    one CorruptRecord naming the field, never a KeyError deep in a reader. Other keys are kept as they are."""

    status: _Status
    config: Optional[_Config] = None
    train: Optional[_Train] = None
    eval: Optional[_Eval] = None
    meta: Optional[dict[str, Any]] = None


def read_record(run_dir: str | Path, limit: int | None = None, within: list[Path] | None = None) -> dict | None:
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


def check_record(record: Any, path: str | Path) -> dict:
    """`record` when it has a run record's shape (RecordShape); else CorruptRecord naming the file and field."""
    problem = None
    if not isinstance(record, dict) or not isinstance(record.get("status"), dict):
        problem = "no 'status' object"
    else:
        try:
            RecordShape.model_validate(record)
        except ValidationError as e:
            err = e.errors()[0]
            problem = f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
        except RecursionError:
            problem = "nested too deeply"
    if problem:
        raise CorruptRecord(f"{path}: not a run record ({problem}); delete it to redo the run")
    return record


def read_record_or_none(run_dir: str | Path) -> dict | None:
    """Like read_record, but a corrupt record counts as no record (the runner redoes such a run)."""
    try:
        return read_record(run_dir)
    except CorruptRecord:
        return None


def write_record(run_dir: str | Path, record: dict) -> None:
    write_json(record_path(run_dir), record)


def state(record: dict | None) -> str | None:
    return (record or {}).get("status", {}).get("state")


def is_trained(record: dict | None) -> bool:
    """Training finished (the adapter is exported); the evaluation may still be missing."""
    return state(record) == COMPLETE


def is_complete(record: dict | None) -> bool:
    """Trained (or the base arm) *and* evaluated: what a study never redoes."""
    return state(record) == COMPLETE and bool((record.get("eval") or {}).get("metrics"))


def mark_failed(run_dir: str | Path, reason: str) -> dict:
    """Record a failure with its reason, keeping whatever the record already holds (steps, meta)."""
    record = read_record_or_none(run_dir) or {}
    record = {**record, "status": {"state": FAILED, "reason": reason}}
    write_record(run_dir, record)
    return record


# ------------------------------------------------------------------------------ provenance for a record's meta
def package_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("ada-slm", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
