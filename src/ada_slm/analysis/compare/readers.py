"""Runs made with other tools -> the run-level structure a study's analysis consumes.

    ada-slm compare --arm base=evals/base --arm r16=evals/r16-s0,evals/r16-s1 [--baseline r16] [--metric acc]

One reader per source, each returning `ImportedRun`s (per-item scores per metric, or run-level numbers as one
item named "run"); `read_runs` picks the reader by what the path is:

    lm-eval      an `--output_path … --log_samples` folder or its results_*.json (+ samples_<task>_*.jsonl):
                 items = <task>/<doc_id>, scores = the per-sample metric fields
    Inspect      a log (.eval or .json), read with inspect_ai.log: items = sample ids, scores = each scorer's
                 value mapped to a number by Inspect's own value_to_float (C 1, P 0.5, I and N 0); the mean over
                 epochs where a log has several
    trainer      an HF Trainer / TRL output folder or its trainer_state.json: final and best eval loss, final
                 train loss, train runtime (one number per run, like held-out loss in a study)
    ada-slm      a run folder (record.json + eval.jsonl)
    table        CSV / JSONL / Parquet with columns run, item, metric, score (optional arm, seed)

`match` then checks that the runs can be compared at all (one kind of source, one task configuration) and keeps
the items every run scored, saying which were dropped; `compare_analysis.py` feeds the result to the study's
statistics and report.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ada_slm.analysis.arms import RUN_FIELDS
from ada_slm.analysis.compare.imported_run import (  # noqa: F401
    RUN_ITEM,
    ImportedRun,
    Source,
    check_inspect_file,
    mean_or_none,
    number,
    read_json_object,
)
from ada_slm.errors import UserError
from ada_slm.files import LIMIT_HINT, input_limit, iter_jsonl, open_regular, read_utf8
from ada_slm.run import records
from ada_slm.run.metrics import METRICS, RUN_METRICS

TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")
MAX_TABLE_ROWS = 10_000_000  # rows of one table (run × item × metric), checked from a Parquet footer before reading
PARQUET_BATCH = 65_536  # rows a Parquet table is read in


# ------------------------------------------------------------------------------------------ lm-eval
def _strip_functions(value):
    """lm-eval writes a task's Python callables with their memory address; keep only what names them."""
    if isinstance(value, dict):
        return {k: _strip_functions(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_functions(v) for v in value]
    if isinstance(value, str):
        return re.sub(r" at 0x[0-9a-f]+", "", value)
    return value


def _task_config(config: dict) -> dict:
    """A task's config as lm-eval records it, less what describes the model rather than the task: lm-eval
    copies the model args (pretrained=…, dtype=…) and the task file's path into `metadata`."""
    config = dict(config)
    if isinstance(config.get("metadata"), dict):
        config["metadata"] = {"version": config["metadata"].get("version")}
    return _strip_functions(config)


TASK_NAME = re.compile(r"[A-Za-z0-9_.\-]+")  # what names a samples_<task>_<time>.jsonl beside the results


def _check_lm_eval_shape(path: Path, results: dict) -> None:
    """The fields read from a results file, each of the type lm-eval writes, before any is used: task names that
    name a file beside it (no '/' or '..'), a config and higher_is_better that are mappings."""
    for task, config in results["configs"].items():
        if not TASK_NAME.fullmatch(task) or task in (".", ".."):
            raise UserError(f"{path}: task name {task!r} cannot name a samples file (letters, digits, '_', '.', '-')")
        if not isinstance(config, dict):
            raise UserError(f"{path}: configs.{task} is {type(config).__name__}, not an object")
    for key in ("config", "higher_is_better", "versions", "n-shot"):
        if results.get(key) is not None and not isinstance(results[key], dict):
            raise UserError(f"{path}: '{key}' is {type(results[key]).__name__}, not an object as lm-eval writes it")
    for task, higher in (results.get("higher_is_better") or {}).items():
        if higher is not None and not isinstance(higher, dict):
            raise UserError(f"{path}: higher_is_better.{task} is {type(higher).__name__}, not an object")


def read_lm_eval(path: str | Path) -> ImportedRun:
    """An lm-eval run written with `--output_path … --log_samples`: a results_<time>.json, or a folder holding
    exactly one, and the samples_<task>_<time>.jsonl files beside it."""
    path = given = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("results_*.json"))
        if not found:
            raise UserError(f"{path}: no lm-eval results_*.json in this folder (run lm_eval with --output_path)")
        if len(found) > 1:
            raise UserError(
                f"{path}: {len(found)} lm-eval results files (one per lm_eval run): name one run's "
                f"results_*.json each, e.g. {found[0]}"
            )
        path = found[0]
    results = read_json_object(path)
    if not isinstance(results.get("configs"), dict) or not isinstance(results.get("results"), dict):
        raise UserError(f"{path}: not an lm-eval results file (no 'results' and 'configs')")
    _check_lm_eval_shape(path, results)
    stamp = path.stem.removeprefix("results_")
    scores: dict[str, dict[str, float | None]] = {}
    hashes: dict[str, str] = {}
    lower: set[str] = set()
    for task in sorted(results["configs"]):
        samples = path.with_name(f"samples_{task}_{stamp}.jsonl")
        if not samples.is_file():
            raise UserError(
                f"{path}: no {samples.name} beside it: compare needs per-item scores, so run lm_eval with --log_samples"
            )
        for lineno, row in iter_jsonl(samples, input_limit()):
            where = f"{samples}:{lineno}"
            if "doc_id" not in row or not isinstance(row.get("metrics"), list):
                raise UserError(f"{where}: not an lm-eval sample (no doc_id or metrics)")
            item = f"{task}/{row['doc_id']}"
            if row.get("doc_hash"):
                hashes[item] = str(row["doc_hash"])
            flt = row.get("filter", "none")
            for metric in row["metrics"]:
                if not isinstance(metric, str):
                    raise UserError(f"{where}: metrics holds {metric!r}, not a metric name")
                name = metric if flt == "none" else f"{metric},{flt}"
                per_item = scores.setdefault(name, {})
                if item in per_item:
                    raise UserError(f"{where}: doc_id {row['doc_id']} of {task} scored twice on {name}")
                value = row.get(metric)
                per_item[item] = number(value, f"{where}: {metric}") if not isinstance(value, list) else None
        for metric, higher in ((results.get("higher_is_better") or {}).get(task) or {}).items():
            if higher is False:
                lower.add(metric)
    config = results.get("config") or {}
    return ImportedRun(
        source="lm-eval",
        path=str(path),
        name=str(given),
        task={
            "tasks": sorted(results["configs"]),
            "versions": results.get("versions"),
            "n-shot": results.get("n-shot"),
            "configs": {t: _task_config(c) for t, c in results["configs"].items()},
        },
        model={
            "model": config.get("model"),
            "model_args": config.get("model_args"),
            "seed": config.get("random_seed"),
            "gen_kwargs": config.get("gen_kwargs"),
        },
        scores=scores,
        lower_is_better=sorted(m for m in lower if m in scores),
        item_hashes=hashes,
    )


# ------------------------------------------------------------------------------------------ Inspect
INSPECT_MISSING = (
    "reading Inspect logs needs the inspect_ai package: pip install 'ada-slm[inspect]' (or pip install inspect_ai)"
)


def read_inspect(path: str | Path) -> ImportedRun:
    """One Inspect log (.eval or .json): a finished evaluation with its samples."""
    try:  # an optional extra, and heavy: imported only to read an Inspect log
        from inspect_ai.log import read_eval_log
        from inspect_ai.scorer import value_to_float
    except ImportError:
        raise UserError(f"{path}: {INSPECT_MISSING}") from None
    path = Path(path)
    check_inspect_file(path)
    try:
        log = read_eval_log(str(path))
    except Exception as e:  # a zip or JSON that is not a log: Inspect raises many kinds; the message says which
        raise UserError(f"{path}: not a readable Inspect log ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if log.status != "success":
        raise UserError(
            f"{path}: Inspect log status is {log.status!r}, not 'success' (an unfinished or failed evaluation)"
        )
    if not log.samples:
        raise UserError(f"{path}: the Inspect log holds no samples (written with --no-log-samples?)")
    to_float = value_to_float()
    sums: dict[str, dict[str, list[float | None]]] = {}
    for sample in log.samples:
        item = str(sample.id)
        for scorer, score in (sample.scores or {}).items():
            values = score.value.items() if isinstance(score.value, dict) else [(None, score.value)]
            for key, value in values:
                if isinstance(value, list):
                    raise UserError(f"{path}: sample {item}: scorer {scorer} gives a list, not one value per sample")
                name = scorer if key is None else f"{scorer}/{key}"
                sums.setdefault(name, {}).setdefault(item, []).append(None if value is None else to_float(value))
    scores = {m: {i: mean_or_none(vs) for i, vs in per.items()} for m, per in sums.items()}  # the mean over epochs
    ev = log.eval
    return ImportedRun(
        source="inspect",
        path=str(path),
        name=str(path),
        task={
            "task": ev.task,
            "task_version": ev.task_version,
            "task_args": ev.task_args,
            "dataset": ev.dataset.name,
            "epochs": ev.config.epochs,
            "scorers": sorted(scores),
        },
        model={
            "model": ev.model,
            "model_args": ev.model_args,
            "generate": log.plan.config.model_dump(exclude_none=True) if log.plan else None,
        },
        scores=scores,
    )


# ------------------------------------------------------------------------------------------ trainer_state.json
TRAINER_METRICS = ("final_eval_loss", "best_eval_loss", "final_train_loss", "train_runtime")


def trainer_state_file(path: Path) -> Path:
    """trainer_state.json of an output folder: at its top (trainer.save_state()), else in its last checkpoint."""
    if path.is_file():
        return path
    if (path / "trainer_state.json").is_file():
        return path / "trainer_state.json"
    checkpoints = [p for p in path.glob("checkpoint-*/trainer_state.json") if p.parent.name[11:].isdigit()]
    if not checkpoints:
        raise UserError(f"{path}: no trainer_state.json (nor checkpoint-*/trainer_state.json)")
    return max(checkpoints, key=lambda p: int(p.parent.name[11:]))


def read_trainer_state(path: str | Path) -> ImportedRun:
    """An HF Trainer / TRL run: its run-level losses and runtime from log_history."""
    file = trainer_state_file(Path(path))
    state = read_json_object(file)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise UserError(f"{file}: not a trainer_state.json (no log_history list)")
    evals = [e["eval_loss"] for e in history if isinstance(e, dict) and e.get("eval_loss") is not None]
    train = [e["loss"] for e in history if isinstance(e, dict) and e.get("loss") is not None]
    runtime = [e["train_runtime"] for e in history if isinstance(e, dict) and e.get("train_runtime") is not None]
    values = {
        "final_eval_loss": evals[-1] if evals else None,
        "best_eval_loss": min(evals) if evals else None,
        "final_train_loss": train[-1] if train else None,
        "train_runtime": runtime[-1] if runtime else None,
    }
    scores = {m: {RUN_ITEM: number(v, f"{file}: {m}")} for m, v in values.items() if v is not None}
    if not scores:
        raise UserError(f"{file}: log_history holds no eval_loss, loss or train_runtime")
    return ImportedRun(
        source="trainer",
        path=str(file),
        name=str(Path(path)),
        task={},
        model={k: state.get(k) for k in ("max_steps", "num_train_epochs", "train_batch_size", "global_step")},
        scores=scores,
        lower_is_better=list(scores),
    )


# ------------------------------------------------------------------------------------------ ada-slm run
def read_ada_slm(path: str | Path) -> ImportedRun:
    """An ada-slm run folder: per-item metrics of eval.jsonl (the mean over samples) and the record's losses."""
    path = Path(path)
    record = records.read_record(path)
    if record is None:
        raise UserError(f"{path}: no record.json")
    if records.state(record) != records.COMPLETE:
        raise UserError(f"{records.record_path(path)}: run is not complete ({records.state(record)})")
    sums: dict[str, dict[str, list[float | None]]] = {}
    if (path / records.EVAL_ITEMS).is_file():
        for lineno, row in iter_jsonl(path / records.EVAL_ITEMS, input_limit()):
            if "id" not in row or not isinstance(row.get("metrics"), dict):
                raise UserError(f"{path / records.EVAL_ITEMS}:{lineno}: not an eval row (no id or metrics)")
            for m in METRICS:
                value = number(row["metrics"].get(m), f"{path / records.EVAL_ITEMS}:{lineno}: {m}")
                sums.setdefault(m, {}).setdefault(str(row["id"]), []).append(value)
    scores = {m: {i: mean_or_none(vs) for i, vs in per.items()} for m, per in sums.items()}
    for m, key in RUN_FIELDS.items():
        value = getattr(record.train, key, None) if record.train is not None else None
        if value is not None:
            scores[m] = {RUN_ITEM: number(value, f"{records.record_path(path)}: train.{key}")}
    if not scores:
        raise UserError(f"{path}: neither eval.jsonl nor training losses to compare (run `ada-slm eval` on it)")
    ev = record.eval.model_dump(exclude_unset=True) if record.eval is not None else {}
    return ImportedRun(
        source="ada-slm",
        path=str(path),
        name=str(path),
        # the generation batch size is left out: outputs are identical at any size
        task={
            "suite": ev.get("suite"),
            "n_items": ev.get("n_items"),
            "limit": ev.get("limit"),
            "generation": {k: v for k, v in (ev.get("generation") or {}).items() if k != "batch_size"},
        },
        model={"base": records.base_model(record), "seed": record.config.seed if record.config is not None else None},
        scores=scores,
        lower_is_better=[m for m, higher in RUN_METRICS.items() if not higher and m in scores],
    )


# ------------------------------------------------------------------------------------------ plain table
TABLE_COLUMNS = ("run", "item", "metric", "score")


def _table_rows(path: Path):
    """(where, row dict) of a CSV, JSONL or Parquet table."""
    if path.suffix == ".csv":
        # the csv module splits lines itself, so a newline inside a quoted field stays in the field, and
        # reader.line_num counts file lines (where a row ends), not records
        reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
        try:
            missing = [c for c in TABLE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(
                    f"{path}:1: no column {missing[0]!r} (a table needs columns "
                    f"{', '.join(TABLE_COLUMNS)}; optional arm, seed)"
                )
            for row in reader:
                yield f"{path}:{reader.line_num}", row
        except csv.Error as e:  # a field over the csv module's limit, a NUL byte, an unclosed quote
            raise UserError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None
    elif path.suffix == ".jsonl":
        for n, row in iter_jsonl(path, input_limit()):
            yield f"{path}:{n}", row
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise UserError(f"{path}: a table is .csv, .jsonl or .parquet")


def _parquet_rows(path: Path):
    """(where, row dict) of a Parquet table, streamed in batches after its footer is checked against the limits:
    a table of millions of rows is refused before any is read, and a bad row stops the read."""
    import pyarrow.parquet as pq  # heavy: only a parquet table needs it

    try:
        with open_regular(path, input_limit()) as f:
            parquet = pq.ParquetFile(f)
            meta = parquet.metadata
            inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if meta.num_rows > MAX_TABLE_ROWS or inflated > input_limit():
                raise UserError(
                    f"{path}: {meta.num_rows:,} rows, {inflated / 2**20:,.0f} MiB once read: over "
                    f"the limits of {MAX_TABLE_ROWS:,} rows and {input_limit() / 2**20:g} MiB "
                    f"({LIMIT_HINT})"
                )
            missing = [c for c in TABLE_COLUMNS if c not in parquet.schema_arrow.names]
            if missing:
                raise UserError(f"{path}: no column {missing[0]!r} (a table needs columns {', '.join(TABLE_COLUMNS)})")
            n = 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
                for row in batch.to_pylist():
                    n += 1
                    yield f"{path} row {n}", row
    except UserError:
        raise
    except Exception as e:  # pyarrow's ArrowInvalid and friends: say what it said, on one line
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def read_table(path: str | Path, arm: str | None = None) -> list[ImportedRun]:
    """Runs of a long table (one row per run × item × metric). With `arm`, only the rows of that arm when the
    table has an arm column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    runs: dict[str, dict] = {}
    has_arm = False
    for where, row in _table_rows(path):
        for c in TABLE_COLUMNS:
            if row.get(c) in (None, "") and c != "score":
                raise UserError(f"{where}: no {c}")
        has_arm = has_arm or bool(row.get("arm"))
        if arm is not None and row.get("arm") and str(row["arm"]) != arm:
            continue
        run = str(row["run"])
        entry = runs.setdefault(
            run, {"arm": str(row["arm"]) if row.get("arm") else None, "scores": {}, "seed": row.get("seed")}
        )
        if row.get("arm") and entry["arm"] != str(row["arm"]):
            raise UserError(f"{where}: run {run} is in arm {entry['arm']!r} on an earlier row, {row['arm']!r} here")
        per_item = entry["scores"].setdefault(str(row["metric"]), {})
        item = str(row["item"])
        if item in per_item:
            raise UserError(f"{where}: run {run}, item {item}, metric {row['metric']} appears twice")
        per_item[item] = number(row.get("score"), where)
    if not runs:
        raise UserError(f"{path}: no rows" + (f" of arm {arm!r}" if arm and has_arm else ""))
    return [
        ImportedRun(
            source="table",
            path=str(path),
            name=run,
            task={},
            model={"seed": e["seed"]},
            scores=e["scores"],
            arm=e["arm"],
        )
        for run, e in runs.items()
    ]


# ------------------------------------------------------------------------------------------ by what it is
def source_of(path: Path) -> Source:
    """Which reader a path needs, from its name, and for a .json or a folder from what it holds."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "record.json").is_file():
            return "ada-slm"
        if (path / "trainer_state.json").is_file() or any(path.glob("checkpoint-*/trainer_state.json")):
            return "trainer"
        if any(path.rglob("results_*.json")):
            return "lm-eval"
        logs = sorted(path.glob("*.eval"))
        if len(logs) == 1:
            return "inspect"
        raise UserError(
            f"{path}: not a run folder of a known tool (lm-eval --output_path, trainer_state.json, "
            "ada-slm record.json" + (f"; it holds {len(logs)} Inspect logs: name each one" if logs else "") + ")"
        )
    if path.suffix == ".eval":
        return "inspect"
    if path.suffix in TABLE_SUFFIXES:
        return "table"
    if path.suffix == ".json":
        if path.name == "trainer_state.json":
            return "trainer"
        if path.name.startswith("results_"):
            return "lm-eval"
        head = read_json_object(path)
        if "log_history" in head:
            return "trainer"
        if "results" in head and "configs" in head:
            return "lm-eval"
        if "eval" in head and "version" in head:
            return "inspect"
    raise UserError(
        f"{path}: not a file compare can read (an lm-eval results_*.json, an Inspect .eval/.json log, "
        "a trainer_state.json, or a .csv/.jsonl/.parquet table)"
    )


def read_runs(path: str | Path, arm: str | None = None) -> list[ImportedRun]:
    """The runs at `path`, read by what it is (a table may hold many; every other source is one run)."""
    path = Path(path)
    kind = source_of(path)
    if kind == "table":
        return read_table(path, arm)
    if kind == "inspect" and path.is_dir():
        path = next(path.glob("*.eval"))
    reader = {"lm-eval": read_lm_eval, "inspect": read_inspect, "trainer": read_trainer_state, "ada-slm": read_ada_slm}[
        kind
    ]
    return [reader(path)]
