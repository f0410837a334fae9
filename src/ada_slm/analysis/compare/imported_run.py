"""A run read from another tool's output — the one shape every reader of `compare` returns — and the checks its
readers apply to what they take from files: scores as numbers, JSON objects through the bounded reader, an Inspect
log's zip directory before anything inflates."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ada_slm.errors import UserError
from ada_slm.files import LIMIT_HINT, input_limit, open_regular, parse_json, read_utf8

RUN_ITEM = "run"  # the one item of a run-level quantity
Source = Literal["lm-eval", "inspect", "trainer", "ada-slm", "table"]
MAX_SCORE = 1e12  # far beyond any metric; a 1e308 score would overflow the variances into NaN
MAX_INFLATION = 200  # an Inspect .eval member may inflate at most this many times its compressed size


class ImportedRun(BaseModel):
    """One run read from another tool's output: its scores and where they came from."""

    source: Source = Field(description="The tool that wrote the run.")
    path: str = Field(description="The file or folder it was read from.")
    name: str = Field(description="The run's label in the report (its path, or the table's run id).")
    task: dict = Field(
        default_factory=dict,
        description="The evaluation's configuration (task, dataset, "
        "scorers, generation): runs are compared only when it is equal.",
    )
    model: dict = Field(
        default_factory=dict, description="What was evaluated (model, model args, seed): recorded, allowed to differ."
    )
    scores: dict[str, dict[str, float | None]] = Field(
        description="Metric -> item id -> score (None where the metric does not apply to the item)."
    )
    lower_is_better: list[str] = Field(default_factory=list, description="Metrics where lower is better.")
    item_hashes: dict[str, str] = Field(
        default_factory=dict,
        description="Item id -> a hash of the item's "
        "content where the tool records one (lm-eval's doc_hash): one id must "
        "mean one item in every run.",
    )
    arm: str | None = Field(None, description="The arm a table row names, if any.")


def number(value, where: str) -> float | None:
    """A score as a float: None where missing (empty, NaN); a UserError naming `where` for text, ±inf or a
    magnitude over MAX_SCORE (whose squares overflow the statistics into NaN)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: score {value!r} is not a number") from None
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise UserError(f"{where}: score {value!r} is not finite")
    if abs(x) > MAX_SCORE:
        raise UserError(f"{where}: score {value!r} is beyond ±{MAX_SCORE:g}: not a score the statistics can use")
    return x


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of an item's scores (over epochs, or repeated rows); None when any of them is missing."""
    present = [v for v in values if v is not None]
    return None if len(present) < len(values) else sum(present) / len(present)


def read_json_object(path: Path) -> dict:
    """A JSON object from a file, through the bounded reader: a regular file (never a FIFO or device) of at most
    input_limit() bytes, UTF-8, nested at most files.MAX_JSON_DEPTH deep, no integer of thousands of digits."""
    obj = parse_json(read_utf8(path), str(path))
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def check_inspect_file(path: Path) -> None:
    """What inspect_ai would read, checked first: a regular file within input_limit(); for a .eval (a zip), every
    member's declared size, their sum and their compression ratio — a small file that inflates to gigabytes is
    refused before anything is inflated."""

    with open_regular(path, input_limit()) as f:
        if path.suffix != ".eval":
            return
        try:
            members = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable Inspect log (not a zip: {e})") from None
    total = sum(m.file_size for m in members)
    if total > input_limit():
        raise UserError(
            f"{path}: inflates to {total / 2**20:,.0f} MiB, over the limit of "
            f"{input_limit() / 2**20:g} MiB ({LIMIT_HINT})"
        )
    for m in members:
        if m.file_size > 2**20 and m.file_size > MAX_INFLATION * max(1, m.compress_size):
            raise UserError(
                f"{path}: member {m.filename} inflates {m.file_size / max(1, m.compress_size):,.0f}× "
                f"(over {MAX_INFLATION}×): refused as a zip bomb"
            )
