"""A study's finished runs read into per-arm data: each run's record and per-item scores, and the config each arm
trained with — taken from the record of what ran, not from the study file as it reads today (which may have
been edited since). The one place that reads records for the analysis."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ada_slm.analysis.design import differences
from ada_slm.errors import UserError
from ada_slm.files import iter_jsonl
from ada_slm.run import records
from ada_slm.run.config import TrainConfig, format_validation_error
from ada_slm.run.metrics import METRICS, RUN_METRICS, SEED_METRICS, seed_score
from ada_slm.study.spec import RunSpec

# record["train"] field of each run-level metric
RUN_FIELDS = {"heldout_loss": "final_val_loss", "train_loss": "final_train_loss", "tokens_per_s": "tokens_per_s"}


@dataclass
class ArmData:
    name: str
    # what the arm's first finished run trained with (its record.json); the study file's config while none has
    # finished; None for the base arm
    config: TrainConfig | None
    # seed -> record; run k -> {source, path, name} of an imported run (compare/analysis.py: arm_data)
    records: dict[int, records.RunRecord | dict[str, str]]
    scores: dict[str, dict[int, dict[str, float | None]]]  # metric -> seed -> item -> score (run metrics: 1 item)
    seed_scores: dict[str, dict[int, dict[str, float]]]  # seed-compatible scorer, same layout
    states: dict[int, str]
    unreadable: dict[int, str] = field(default_factory=dict)  # seed -> why its record or eval.jsonl is left out
    edited: str | None = None  # how a finished run's config differs from what the study file expands to now
    item_groups: dict[str, dict[str, str]] = field(default_factory=dict)  # item id -> its "category" and, for a
    # generated item, "template" (eval.jsonl): what the item term may cluster on (item_clusters)


UNREADABLE = "unreadable"  # the state of a run whose record.json or eval.jsonl cannot be read


def collect(specs: list[RunSpec], limit: int | None = None, within: list[Path] | None = None) -> dict[str, ArmData]:
    """Read every run's record and per-item outputs (the one place that reads records). A run whose record or
    eval.jsonl cannot be read (files.read_json, iter_jsonl: corrupt, not a regular file, larger than `limit`,
    a symlink out of `within`) is left out with its reason: one damaged file costs its own run only."""
    arms: dict[str, ArmData] = {}
    from_runs: set[str] = set()  # arms whose config is already taken from a finished run's record
    for s in specs:
        arm = arms.setdefault(
            s.arm,
            ArmData(s.arm, s.train, {}, {m: {} for m in (*METRICS, *RUN_METRICS)}, {m: {} for m in SEED_METRICS}, {}),
        )
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
        assert rec is not None  # items are read only for a complete record
        arm.records[s.seed] = rec
        ran = _config_that_ran(arm, s, rec)
        if ran is not None and s.arm not in from_runs:
            arm.config = ran
            from_runs.add(s.arm)
        for item, (metrics, compat, groups) in items.items():
            arm.item_groups.setdefault(item, groups)
            for m in METRICS:
                arm.scores[m].setdefault(s.seed, {})[item] = metrics.get(m)
            for m in SEED_METRICS:
                arm.seed_scores[m].setdefault(s.seed, {})[item] = compat[m]
        for m, key in RUN_FIELDS.items():
            value = getattr(rec.train, key, None) if rec.train is not None else None
            if value is not None:
                arm.scores[m][s.seed] = {"run": float(value)}
    return arms


def _config_that_ran(arm: ArmData, spec: RunSpec, record: records.RunRecord) -> TrainConfig | None:
    """What a finished run trained with (None for the base arm, or a record without a readable config); a run
    whose config is not what the study file expands to now (the file was edited after it ran) is noted in
    `arm.edited`, once per arm."""
    if spec.train is None:
        return None
    why: str | None
    try:
        ran = config_of_record(record)
    except ValidationError as e:
        ran, why = (
            None,
            format_validation_error(e, f"{spec.run_dir / records.RECORD}: config")
            + "; the study file's config is shown",
        )
    else:
        # what was configured then against what is configured now (ran has the adapter PEFT built: not an edit)
        changed = differences(record.config, spec.train) if ran is not None else {}
        why = ", ".join(f"{k} {v[0]} (the file now: {v[1]})" for k, v in changed.items()) if changed else None
        why = why and f"{spec.key} ran with {why}"
    if why and arm.edited is None:
        arm.edited = why
    return ran


def config_of_record(record: records.RunRecord) -> TrainConfig | None:
    """The train config a run's record.json holds (validated when the record was read); None for the base arm."""
    return records.config_of(record)


def _item_scores(path: Path, limit: int | None, within: list[Path] | None) -> dict[str, tuple[dict, dict, dict]]:
    """item id -> (its metrics, its seed-compatible scores, its category and template where given), from
    eval.jsonl; a row without a string id and output or with a metric that is not a number is a UserError naming
    FILE:LINE."""
    out = {}
    for lineno, row in iter_jsonl(path, limit, within):
        metrics, item, output = row.get("metrics"), row.get("id"), row.get("output")
        if not isinstance(item, str) or not isinstance(output, str) or not isinstance(metrics, dict):
            raise UserError(
                f"{path}:{lineno}: not an evaluated item (needs a string id and output and a metrics object)"
            )
        for m in METRICS:
            value = metrics.get(m)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"{path}:{lineno}: metrics.{m} is {value!r}, not a number")
        groups = {k: row[k] for k in ("category", "template") if isinstance(row.get(k), str)}
        out[item] = (metrics, seed_score(output), groups)
    return out


ITEM_CLUSTERS = ("template", "category", "none")


def item_clusters(arms: dict[str, ArmData], how: str) -> dict[str, str] | None:
    """Item id -> the cluster its effect is shared within, for the item term (a study's `item_clusters`):
    'template' — the template a generated item was made from, a hand-written item its own; 'category' — the
    item's category; 'none' — every item independent (None)."""
    if how == "none":
        return None
    out: dict[str, str] = {}
    for arm in arms.values():
        for item, groups in arm.item_groups.items():
            out.setdefault(item, groups.get(how) or item)
    return out


def matrix(scores: dict[int, dict[str, float | None]]) -> np.ndarray | None:
    """Y[run, item] over the items every run has; None when nothing is scored."""
    if not scores:
        return None
    items = sorted(set.intersection(*(set(v) for v in scores.values())))
    y = np.array(
        [[np.nan if scores[s][i] is None else scores[s][i] for i in items] for s in sorted(scores)], dtype=float
    )
    return y if y.size and np.isfinite(y).any() else None
