"""What `ada-slm study serve`'s page shows, read from a study's results folder: each run's cell of the arm × seed
grid, the loss curves, report.md's numbers (one `analysis.analyse`) and one run's page. serve.py answers HTTP with it.

Nothing here slows the runner: files are only read (a runner's writes are atomic renames, so a read sees an old or a
new file, and a corrupt one is shown, not raised), the study lock is never taken (whether a runner holds it is read
from /proc/locks), and nothing is written under results/. Only regular files are read (a FIFO or device would block
a worker thread), only where they resolve inside the results folder (a symlink to ~/.ssh is not followed), and only
up to MAX_READ_BYTES; such a file, or one that does not parse, costs its own run's cell (state 'unreadable', with the
reason), never a route.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from ada_slm.analysis.analysis import analyse
from ada_slm.analysis.arms import collect
from ada_slm.analysis.report import decision as report_decision
from ada_slm.analysis.report import doc as report_doc
from ada_slm.analysis.report import writer as report
from ada_slm.analysis.report.answer import answer_lines
from ada_slm.errors import UserError
from ada_slm.files import UnreadableFile, iter_jsonl, parse_json, read_regular
from ada_slm.run import records
from ada_slm.run.metrics import METRICS, RUN_METRICS
from ada_slm.run.records import RunRecord, check_record
from ada_slm.study.spec import BASE_ARM, RunSpec, Study

RECORD, SPEC, EVAL, ROUNDS = "record.json", "spec.json", "eval.jsonl", "rounds.json"


# ------------------------------------------------------------------------------------------ reading results
# A file larger than this is shown as "too large", not read: one stray 50 MB file must not stall every poll.
# A record of 20 000 optimizer steps is about 4 MB; an eval.jsonl of 5 000 items about 5 MB.
MAX_READ_BYTES = 32 * 2**20


class JsonReader:
    """JSON files read without ever writing or locking, re-parsed only when their size or mtime changes.
    A missing file reads as (None, None); one that cannot be used as (None, why) for the page to show: half-written
    or corrupt, not an object, failing `check`, not a regular file (a FIFO would block the reading thread), larger
    than MAX_READ_BYTES, or resolving (a symlink) outside the folders in `within`."""

    def __init__(self, within: list[Path] | None = None, limit: int | None = MAX_READ_BYTES):
        self.within, self.limit = within, limit
        self._cache: dict[Path, tuple] = {}

    def read(self, path: Path, check=None) -> tuple[Any, str | None]:
        """(the parsed object, or what `check` makes of it, None) or (None, why it cannot be used)."""
        try:
            st = path.stat()
        except OSError:
            return None, None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
        obj, err = None, None
        try:
            data = read_regular(path, self.limit, self.within)
            obj = None if data is None else parse_json(data, path.name)
            if obj is not None and not isinstance(obj, dict):
                obj, err = None, f"{path.name} holds a JSON {type(obj).__name__}, not an object"
            elif obj is not None and check is not None:
                obj = check(obj, path.name)
        except UnreadableFile as e:
            what = "is half-written or corrupt" if e.where == path.name else "cannot be read"
            obj, err = None, f"{path.name} {what} ({e.reason})"
        except UserError as e:  # check's verdict
            obj, err = None, str(e)
        self._cache[path] = (stamp, obj, err)
        return obj, err

    def record(self, run_dir: Path) -> tuple[RunRecord | None, str | None]:
        """A run's record.json as the RunRecord the rest of the package reads (records.check_record), or why not."""
        return self.read(run_dir / RECORD, check_record)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def runner_holds_lock(lock: Path) -> bool | None:
    """Whether some process holds the study's lock (a `study run` is at work), read from /proc/locks without
    taking the lock; None where that cannot be known (no /proc/locks: not Linux)."""
    try:
        st = lock.stat()
    except OSError:
        return False  # the runner creates the lock file before it starts
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(ident in line.split() for line in table.splitlines())


def _train_progress(rec: RunRecord) -> dict:
    """Step k of n, the last loss and the time left, from the steps a running record holds so far."""
    steps = rec.train.steps if rec.train is not None else []
    total = rec.facts.total_steps if rec.facts is not None else None
    done = steps[-1].step if steps else 0
    step_s = [s.tokens / s.tokens_per_s for s in steps if s.tokens and s.tokens_per_s]
    eta = (total - done) * sum(step_s) / len(step_s) if step_s and total is not None else None
    return {"step": done, "total_steps": total, "eta_s": eta, "loss": steps[-1].loss if steps else None}


def run_state(spec: RunSpec, reader: JsonReader, runner: bool | None, now: float) -> dict:
    """One cell of the grid. state: pending, running, complete, failed, interrupted or unreadable."""
    out = {"key": spec.key, "arm": spec.arm, "seed": spec.seed, "state": "pending", "detail": ""}
    rec, err = reader.record(spec.run_dir)
    stamp = _stamp(spec.run_dir / RECORD) or _stamp(spec.run_dir / SPEC)
    out["updated_s_ago"] = max(0.0, now - stamp[0] / 1e9) if stamp else None
    out["version"] = digest([_stamp(spec.run_dir / f) for f in (RECORD, SPEC, EVAL)])  # run page: refetch on change
    if err:
        return {**out, "state": "unreadable", "detail": err}
    if rec is None:
        if (spec.run_dir / SPEC).is_file() and runner is not False:  # the runner has started it
            return {**out, "state": "running", "detail": "evaluating" if spec.arm == BASE_ARM else "starting"}
        return out
    state, reason = rec.status.state, rec.status.reason
    train = rec.train
    if records.is_complete(rec):
        assert rec.eval is not None  # is_complete: it holds the evaluation
        generation_s = rec.eval.generation_s or 0.0
        return {
            **out,
            "state": "complete",
            "detail": "",
            "final_val_loss": train.final_val_loss if train else None,
            "final_train_loss": train.final_train_loss if train else None,
            "n_items": rec.eval.n_items,
            "eval_s": generation_s,
            "seconds": ((train.wall_s if train else None) or 0.0) + generation_s,
        }
    if state in ("complete", "running") and runner is False:
        return {
            **out,
            "state": "interrupted",
            "detail": "no runner holds the study lock (stopped?): `study run` again continues it",
        }
    if state == "complete":
        return {**out, "state": "running", "detail": "trained; evaluating"}
    if state == "running":
        return {**out, "state": "running", "detail": "training", **_train_progress(rec)}
    if state in ("failed", "interrupted"):
        return {**out, "state": state, "detail": reason or "no reason recorded"}
    return {**out, "state": "unreadable", "detail": f"{RECORD}: unknown state {state!r}"}


def _compute_left(runs: list[dict]) -> float | None:
    """Seconds of runs still to do, from the finished ones: a pending run takes the mean duration of its arm's
    finished runs (of all trained arms' for an arm with none yet); a training run its ETA plus a mean evaluation;
    an evaluating run a mean evaluation; a starting run a whole mean run. Failed runs are not counted."""
    done = [r for r in runs if r["state"] == "complete"]
    if not done:
        return None
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    by_arm: dict[str, list[float]] = {}
    for r in done:
        by_arm.setdefault(r["arm"], []).append(r["seconds"])
    trained = [r["seconds"] for r in done if r["arm"] != BASE_ARM] or [r["seconds"] for r in done]
    evaluation = mean([r["eval_s"] for r in done])
    total = 0.0
    for r in runs:
        whole_run = mean(by_arm.get(r["arm"]) or trained)
        if r["state"] in ("pending", "interrupted") or r.get("detail") == "starting":
            total += whole_run
        elif r["state"] == "running":
            total += (r.get("eta_s") or 0.0) + evaluation
    return total


def digest(parts: list) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def _curve(rec: RunRecord | None) -> dict | None:
    if rec is None or rec.train is None or not rec.train.steps:
        return None
    return {"train": [[s.step, s.loss] for s in rec.train.steps], "val": [[v.step, v.loss] for v in rec.train.val]}


def _eval_rows(path: Path, within: list[Path] | None = None) -> tuple[list[dict], str | None]:
    """The items of eval.jsonl (every one read before a malformed line), and what is wrong with it, if anything
    (iter_jsonl: also a FIFO, a file larger than MAX_READ_BYTES or a symlink out of `within`)."""
    rows: list[dict] = []
    if not os.path.lexists(path):
        return rows, None
    keep = ("id", "lang", "category", "prompt", "output", "reference", "sample", "metrics")
    try:
        for _, row in iter_jsonl(path, MAX_READ_BYTES, within):
            rows.append({k: row.get(k) for k in keep if k in row})
    except UserError as e:
        return rows, str(e)
    return rows, None


# ------------------------------------------------------------------------------------------ the analysis
# Keys for the cells of report.md's tables, in the report's column order (the headers come from the report).
SUMMARY_KEYS = ("arm", "config", "held_out_loss", "final_train_loss", "metric", "seed_item_sd", "vs_baseline", "runs")
COMPARISON_KEYS = ("metric", "baseline", "value", "delta", "percent", "ratio", "df", "p_holm", "p_perm", "difference")
DECISION_KEYS = ("question", "comparison", "evidence", "answer")
CRITERIA_KEYS = ("criterion", "judged", "evidence")


def interval_cells(iv) -> dict:
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "text": report_doc.ci4(iv)}


def _analysis_json(
    study: Study, specs: list[RunSpec], scale: str | None, rounds: dict | None = None, within: list[Path] | None = None
) -> dict:
    """The page's statistics: ONE `analysis.analyse` (what report.md renders), its cells made by report.py's own
    table helpers (summary_table, comparison_table, decision_table, decision_notes) and its other sections by
    report.py's render functions, so the page shows report.md's strings. The only place serve.py touches the
    statistics."""
    a = analyse(study, specs, scale, collect(specs, MAX_READ_BYTES, within))
    header, cells = report.summary_table(a)
    arms = [
        {
            "arm": name,
            "baseline": name == study.baseline,
            "n_complete": arm.n_complete,
            "cells": dict(zip(SUMMARY_KEYS, row, strict=True)),
            "metrics": {m: interval_cells(iv) for m, iv in arm.intervals.items()},
        }
        for (name, arm), row in zip(a.arms.items(), cells, strict=True)
    ]
    comparisons: dict[str, dict[str, Any]] = {}
    for name, arm in a.arms.items():
        if name == study.baseline:
            continue
        comp = a.comparisons.get(name)
        if comp is None:
            comparisons[name] = {"notes": [report.no_comparison_note(arm)], "rows": []}
            continue
        head, rows = report.comparison_table(a, comp)
        notes = [
            report.factor_note(comp, name) + report.samples_note(comp.comparisons.get(a.primary)),
            report.equivalence_note(a, comp),
        ]
        comparisons[name] = {
            "header": head,
            "notes": [n for n in notes if n],
            "rows": [
                {
                    "metric": m,
                    "cells": dict(zip(COMPARISON_KEYS, row, strict=True)),
                    "delta": interval_cells(c.delta),
                    "supported": c.supported,
                }
                for (m, c), row in zip(comp.comparisons.items(), rows, strict=True)
            ],
        }
    decision = None
    if a.decision:
        head, rows = report_decision.decision_table(a.decision)
        decision = {
            "metric": a.decision.metric,
            "intro": report_decision.decision_intro(a.decision),
            "header": head,
            "questions": [dict(zip(DECISION_KEYS, row, strict=True)) for row in rows],
            "notes": report_decision.decision_notes(a),
        }
    criteria = None
    if study.criteria:  # report.md's "Success criteria" table, judged by the same function
        head, rows = report_decision.criteria_table(a)
        criteria = {
            "intro": report_decision.CRITERIA_INTRO,
            "header": head,
            "rows": [dict(zip(CRITERIA_KEYS, row, strict=True)) for row in rows],
        }
    doc = report_doc.Doc()  # the report's remaining sections, read back from its own renderer
    report.render_designs(doc, a)
    report_decision.render_power(doc, a)
    errors = [f"left out of the analysis: {run}" for run in report.unreadable_runs(a)]
    why = report_decision.render_rounds_or_why(doc, rounds)
    if why:
        errors.append(f"{ROUNDS}: {why}: the adaptive rounds are not shown")
    present = [m for m in (*METRICS, *RUN_METRICS) if any(m in arm.intervals for arm in a.arms.values())]
    return {
        "metric": a.primary,
        "baseline": study.baseline,
        "metrics": present,
        "answer": answer_lines(a),
        "summary_header": [[k, h] for k, h in zip(SUMMARY_KEYS, header, strict=True)],
        "arms": arms,
        "comparisons": comparisons,
        "decision": decision,
        "criteria": criteria,
        "blocks": [list(b) for b in doc.blocks if b[0] != "img"],
        "errors": errors,
    }


# ------------------------------------------------------------------------------------------ the view
class StudyView:
    """What the endpoints answer, from the study's specs and its results folder."""

    def __init__(self, study: Study, specs: list[RunSpec], scale: str | None, results_root: str | Path):
        self.study, self.specs, self.scale = study, specs, scale
        self.label = f"study {study.name}"  # what a 404 names
        self.root = Path(results_root) / study.name
        # files are read only where they resolve inside the results folder (or the study's folder, which may
        # itself be a link to elsewhere): a symlink in a run folder does not serve ~/.ssh
        self.within = [Path(results_root), self.root]
        self.reader = JsonReader(self.within)
        self._analysis_lock = threading.Lock()
        self._analysis: tuple[str, dict] | None = None

    def _complete_stamps(self) -> list:
        """(run, record and eval.jsonl stamps) of the runs the analysis reads: a change means new numbers."""
        out = []
        for s in self.specs:
            rec, _ = self.reader.record(s.run_dir)
            if records.is_complete(rec):
                out.append((s.key, _stamp(s.run_dir / RECORD), _stamp(s.run_dir / EVAL)))
        return out

    def _analysis_version(self) -> tuple[list, str]:
        """The finished runs' stamps, and a version that changes with them or with an adaptive study's rounds."""
        stamps = self._complete_stamps()
        return stamps, digest([stamps, _stamp(self.root / ROUNDS)])

    def state(self) -> dict:
        now = time.time()
        runner = runner_holds_lock(self.root / ".lock")
        runs = [run_state(s, self.reader, runner, now) for s in self.specs]
        counts = {
            k: sum(1 for r in runs if r["state"] == k)
            for k in ("complete", "running", "pending", "failed", "interrupted", "unreadable")
        }
        notes = []
        if not self.root.is_dir():
            notes.append(f"{self.root} does not exist yet: no run of this study has started.")
        elif not counts["complete"]:
            notes.append("No finished run yet: the metrics, the comparison and the decision appear as runs finish.")
        return {
            "study": self.study.name,
            "description": self.study.description.strip(),
            "scale": self.scale,
            "results": str(self.root),
            "baseline": self.study.baseline,
            "arms": list(dict.fromkeys(s.arm for s in self.specs)),
            "seeds": sorted({s.seed for s in self.specs}),
            "runs": runs,
            "counts": counts,
            "runner": runner,
            "compute_left_s": _compute_left(runs),
            "notes": notes,
            "versions": {
                "curves": digest([(s.key, _stamp(s.run_dir / RECORD)) for s in self.specs]),
                "analysis": self._analysis_version()[1],
            },
        }

    def curves(self) -> dict:
        out = {}
        for s in self.specs:
            curve = _curve(self.reader.record(s.run_dir)[0])
            if curve:
                out[s.key] = {"arm": s.arm, "seed": s.seed, **curve}
        return {"runs": out}

    def analysis(self) -> dict:
        with self._analysis_lock:  # one computation at a time; polls in between get the cached result
            stamps, version = self._analysis_version()
            if self._analysis and self._analysis[0] == version:
                return self._analysis[1]
            if not stamps:
                result: dict[str, Any] = {"available": False, "reason": "No finished run yet: nothing to compare."}
            else:
                try:
                    rounds, rounds_err = self.reader.read(self.root / ROUNDS)  # an adaptive study's history
                    result = {
                        "available": True,
                        **_analysis_json(self.study, self.specs, self.scale, rounds, self.within),
                    }
                    if rounds_err:
                        result["errors"].append(f"{rounds_err}: the adaptive rounds are not shown")
                except UserError as e:
                    result = {"available": False, "reason": f"The finished runs cannot be analysed: {e}"}
                except (
                    KeyError,
                    TypeError,
                    ValueError,
                    AttributeError,
                    IndexError,
                    AssertionError,
                ) as e:  # data no run wrote
                    result = {
                        "available": False,
                        "reason": f"The finished runs cannot be analysed: {type(e).__name__} {e}",
                    }
            result["version"] = version
            self._analysis = (version, result)
            return result

    def run(self, arm: str, seed: int) -> dict | None:
        spec = next((s for s in self.specs if s.arm == arm and s.seed == seed), None)
        if spec is None:
            return None
        rec, rec_err = self.reader.record(spec.run_dir)
        on_disk, spec_err = self.reader.read(spec.run_dir / SPEC)
        record = None
        if rec is not None:  # record.json as written (the config and its facts joined); the steps are the curve
            record = rec.model_dump(mode="json", exclude_unset=True)
            if isinstance(record.get("train"), dict):
                record["train"] = {k: v for k, v in record["train"].items() if k not in ("steps", "val")}
        items, items_err = _eval_rows(spec.run_dir / EVAL, self.within)
        return {
            "key": spec.key,
            "arm": arm,
            "seed": seed,
            "run_dir": str(spec.run_dir),
            "state": run_state(spec, self.reader, runner_holds_lock(self.root / ".lock"), time.time()),
            # what the runner was given (spec.json) where it has started, else what it will be given
            "config": on_disk.get("train") if on_disk else spec.train and spec.train.model_dump(mode="json"),
            "base": spec.base,
            "eval_settings": spec.eval,
            "record": record,
            "errors": [e for e in (rec_err, spec_err, items_err) if e],
            "curve": _curve(rec),
            "items": items,
        }
