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

import json
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ada_slm.errors import UserError
from ada_slm.files import write_json

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


def read_record(run_dir: str | Path) -> dict | None:
    """The record of a run directory; None when there is none yet. Raises CorruptRecord (one line, naming the
    file) when the file is truncated, not JSON, or not a record."""
    path = record_path(run_dir)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CorruptRecord(f"{path}: corrupt run record (not UTF-8 text); delete it to redo the run") from None
    except json.JSONDecodeError as e:
        raise CorruptRecord(f"{path}: corrupt run record ({e.msg} at line {e.lineno}, column {e.colno}); "
                            "delete it to redo the run") from None
    if not isinstance(record, dict) or not isinstance(record.get("status"), dict):
        raise CorruptRecord(f"{path}: not a run record (no 'status' object); delete it to redo the run")
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
