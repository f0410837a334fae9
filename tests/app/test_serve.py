"""`study serve` without a browser: run states from what a results folder can hold, the analysis against the
report's own numbers, the HTTP endpoints, and that serving never writes into results or takes the study lock."""

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from ada_slm.analysis.report import decision as report_decision
from ada_slm.analysis.report import doc as report_doc
from ada_slm.analysis.report import writer as report
from ada_slm.app import serve, study_view
from ada_slm.errors import UserError
from ada_slm.files import write_json, write_jsonl
from ada_slm.run.metrics import METRICS
from ada_slm.study.spec import expand, load_study
from tests.shared import CLI, DATA, STUDIES

TINY = DATA / "tiny-2arm.yaml"


# ------------------------------------------------------------------------------------------ fabricated results
def finished_run(spec, rng, lift: float, n_items: int = 24) -> None:
    """A finished run's record.json and eval.jsonl as the runner writes them (numbers drawn at random, `lift`
    added to every metric), so the statistics have something non-trivial to compare."""
    rows = []
    for i in range(n_items):
        metrics = {m: float(np.clip(rng.uniform(0, 0.6) + lift, 0, 1)) for m in METRICS}
        metrics["translation_chrf"] = None if i % 4 else metrics["translation_chrf"]
        rows.append(
            {
                "id": f"item{i:02d}",
                "lang": ["en", "de", "jbo"][i % 3],
                "category": ["certainty", "temporal"][i % 2],
                "prompt": f"prompt {i}",
                "output": f"⊕ self here t₀ {i}",
                "metrics": metrics,
            }
        )
    write_jsonl(spec.run_dir / "eval.jsonl", rows)
    means = {m: float(np.mean([r["metrics"][m] for r in rows if r["metrics"][m] is not None])) for m in METRICS}
    evaluation = {
        "suite": "multilang",
        "n_items": n_items,
        "generation_s": 2.0,
        "metrics": {m: {"mean": v, "n": n_items} for m, v in means.items()},
        "generation": {"mode": "greedy", "max_new_tokens": 6, "batch_size": 8},
    }
    train = None
    if spec.train is not None:
        steps = [
            {
                "step": k,
                "loss": 5 - 0.2 * k - lift + rng.normal(0, 0.02),
                "tokens": 400,
                "sequences": 4,
                "tokens_per_s": 200.0,
            }
            for k in (1, 2, 3)
        ]
        train = {
            "steps": steps,
            "val": [{"step": 3, "loss": 4.5 - lift + rng.normal(0, 0.02)}],
            "final_train_loss": steps[-1]["loss"],
            "final_val_loss": 4.5 - lift,
            "wall_s": 6.0,
            "tokens_per_s": 200.0,
        }
    write_json(
        spec.run_dir / "record.json",
        {
            "config": {"total_steps": 3},
            "status": {"state": "complete", "reason": None},
            "train": train,
            "eval": evaluation,
            "meta": {"seed": spec.seed},
        },
    )


@pytest.fixture
def tiny(tmp_path):
    study = load_study(TINY)
    specs = expand(study, str(TINY), results_root=tmp_path / "results", exports_root=tmp_path / "exports")
    return study, specs, {s.key: s for s in specs}


@pytest.fixture
def fabricated(tiny):
    """tiny2 with base, r8 and r16-b1 finished (r16-b1 clearly better), broken failed."""
    study, specs, by_key = tiny
    rng = np.random.default_rng(7)
    for s in specs:
        if s.arm == "broken":
            write_json(s.run_dir / "record.json", {"status": {"state": "failed", "reason": "lora.init_adapter: gone"}})
        else:
            finished_run(s, rng, {"base": 0.0, "r8": 0.1, "r16-b1": 0.3}[s.arm])
    return tiny


def md_table(md: str, heading: str) -> list[dict]:
    """The first table after `heading` in report.md, as {column: cell} rows."""
    lines = md[md.index(heading + "\n") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return [dict(zip(table[0], row, strict=True)) for row in table[2:]]


# ------------------------------------------------------------------------------------------ run states
def test_run_states_from_what_a_results_folder_can_hold(tiny):
    study, specs, by = tiny
    reader, now = study_view.JsonReader(), 1e10
    finished_run(by["r8/seed0"], np.random.default_rng(0), 0.1)
    running = by["r8/seed1"]
    steps = [{"step": k, "loss": 5.0 - k / 10, "tokens": 100, "tokens_per_s": 50.0} for k in (1, 2, 3, 4)]
    write_json(
        running.run_dir / "record.json",
        {
            "config": {"total_steps": 10},
            "status": {"state": "running"},
            "train": {"steps": steps, "val": []},
            "eval": None,
        },
    )
    write_json(by["broken/seed0"].run_dir / "record.json", {"status": {"state": "failed", "reason": "no adapter"}})
    by["broken/seed1"].run_dir.mkdir(parents=True)
    (by["broken/seed1"].run_dir / "record.json").write_text('{"status": {"state": "comp')  # half-written
    write_json(by["base/seed0"].run_dir / "spec.json", {"arm": "base"})  # started, no record yet
    by["base/seed1"].run_dir.mkdir(parents=True)
    (by["base/seed1"].run_dir / "record.json").write_text("[1, 2]")
    write_json(by["r16-b1/seed0"].run_dir / "record.json", {"status": "complete"})  # wrong shape
    states = {k: study_view.run_state(s, reader, True, now) for k, s in by.items()}

    assert states["r8/seed0"]["state"] == "complete" and states["r8/seed0"]["final_val_loss"] == pytest.approx(4.4)
    r = states["r8/seed1"]
    assert (r["state"], r["step"], r["total_steps"], r["loss"]) == ("running", 4, 10, pytest.approx(4.6))
    assert r["eta_s"] == pytest.approx(6 * 2.0)  # 6 steps left at 100 tokens / 50 tokens/s
    assert (states["broken/seed0"]["state"], states["broken/seed0"]["detail"]) == ("failed", "no adapter")
    assert states["broken/seed1"]["state"] == "unreadable"
    assert "half-written or corrupt" in states["broken/seed1"]["detail"]
    assert states["base/seed0"]["state"] == "running" and states["base/seed0"]["detail"] == "evaluating"
    assert states["base/seed1"]["state"] == "unreadable" and "JSON list" in states["base/seed1"]["detail"]
    assert states["r16-b1/seed0"]["state"] == "unreadable" and "not a run record" in states["r16-b1/seed0"]["detail"]
    assert states["r16-b1/seed1"]["state"] == "pending"
    # without a runner holding the lock, a 'running' record is a stopped run, and spec.json alone is pending
    assert study_view.run_state(running, reader, False, now)["state"] == "interrupted"
    assert study_view.run_state(by["base/seed0"], reader, False, now)["state"] == "pending"


def test_compute_left_is_estimated_from_the_finished_runs():
    runs = [
        {"arm": "r8", "state": "complete", "seconds": 10.0, "eval_s": 2.0},
        {"arm": "base", "state": "complete", "seconds": 3.0, "eval_s": 3.0},
        {"arm": "r8", "state": "pending"},  # r8's mean run: 10
        {"arm": "r16-b1", "state": "pending"},  # no r16-b1 yet: trained mean 10
        {"arm": "r8", "state": "running", "detail": "training", "eta_s": 4.0},  # 4 + mean evaluation 2.5
        {"arm": "base", "state": "running", "detail": "evaluating"},  # mean evaluation 2.5
        {"arm": "broken", "state": "failed"},
    ]
    assert study_view._compute_left(runs) == pytest.approx(10 + 10 + 6.5 + 2.5)
    assert study_view._compute_left([{"arm": "r8", "state": "pending"}]) is None


def test_state_of_a_study_with_no_run_yet(tiny):
    study, specs, _ = tiny
    view = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2])
    st = view.state()
    assert st["counts"]["pending"] == len(specs) and st["runner"] is False
    assert "does not exist yet" in st["notes"][0]
    assert view.analysis() == {
        "available": False,
        "reason": "No finished run yet: nothing to compare.",
        "version": st["versions"]["analysis"],
    }
    assert view.curves() == {"runs": {}}


def test_runner_is_seen_through_the_lock_without_taking_it(fabricated):
    study, specs, _ = fabricated
    view = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2])
    lock = FileLock(str(view.root / ".lock"))
    with lock.acquire(timeout=0):  # a runner at work: the server answers and leaves the lock alone
        assert view.state()["runner"] in (True, None)
        assert view.analysis()["available"]
        assert lock.is_locked
    assert view.state()["runner"] in (False, None)


# ------------------------------------------------------------------------------------------ one analysis, two views
@pytest.mark.slow
def test_analysis_shows_the_reports_numbers(fabricated, tmp_path):
    """Every cell the page shows equals report.md's cell in the same place (headers included)."""
    study, specs, _ = fabricated
    md = report.build_report(study, specs, None, tmp_path / "report").read_text()
    a = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2]).analysis()
    assert a["available"] and a["errors"] == [], a
    summary = md_table(md, "## Full series summary")
    assert [title for _, title in a["summary_header"]] == list(summary[0])
    assert [[r["cells"][k] for k, _ in a["summary_header"]] for r in a["arms"]] == [list(r.values()) for r in summary]
    assert [r["arm"] for r in a["arms"] if r["baseline"]] == ["r8"]
    for arm in ("base", "r16-b1"):
        comp, table = a["comparisons"][arm], md_table(md, f"### {arm} vs r8")
        assert comp["header"] == list(table[0])
        assert [list(r["cells"].values()) for r in comp["rows"]] == [list(r.values()) for r in table]
        assert [r["supported"] for r in comp["rows"]] == [r["difference"].startswith("supported") for r in table]
        assert comp["notes"] and all(f"\n{n}\n" in md for n in comp["notes"])
    shown = {r["metric"]: r for r in a["comparisons"]["r16-b1"]["rows"]}
    assert {"heldout_loss", "train_loss", "tokens_per_s"} <= set(shown)  # the run-level quantities too
    assert shown["heldout_loss"]["supported"]  # r16-b1 made clearly better
    # at 2 runs per arm (t with ≈ 2 d.f.) agl_awareness's p 0.034 is not supported over the 16 metrics of the
    # table (the caption names that family once; the cell says "—"), yet answers the one decision question
    assert not shown["agl_awareness"]["supported"]
    assert shown["agl_awareness"]["cells"]["difference"] == "—"
    assert "'supported' = Holm p < 0.05 over the metrics of that comparison" in md
    assert shown["agl_awareness"]["delta"]["mean"] == pytest.approx(0.1892, abs=5e-5)
    assert (
        a["comparisons"]["broken"]
        == {"notes": ["No finished runs to compare (seed 0: failed, seed 1: failed)."], "rows": []}
        and a["comparisons"]["broken"]["notes"][0] in md
    )
    decision = md_table(md, "## Decision")
    assert a["decision"]["header"] == list(decision[0])
    assert [list(q.values()) for q in a["decision"]["questions"]] == [list(r.values()) for r in decision]
    assert a["decision"]["questions"][0]["answer"] == "yes"
    assert f"\n{a['decision']['intro']}\n" in md
    notes = a["decision"]["notes"]
    assert notes[0] == "Recommended next run: more rank" and "`ada-slm study next tiny2`" in notes[2]
    assert "\n\n".join(notes) in md  # the recommendation, config, `study next` hint and time, as in the report
    # designs, power (and an adaptive study's rounds): the report's own blocks, each as report.md has it
    assert [b[2] for b in a["blocks"] if b[0] == "h"] == [
        "Factorial analysis",
        "Rank: is there a Goldilocks zone?",
        "Power",
    ]
    for block in a["blocks"]:
        doc = report_doc.Doc()
        doc.blocks = [tuple(block)]
        assert doc.markdown() in md, block
    assert a["metrics"][-3:] == ["heldout_loss", "train_loss", "tokens_per_s"]
    r8 = next(r for r in a["arms"] if r["arm"] == "r8")
    assert r8["metrics"]["heldout_loss"]["text"] == "4.4000 [4.4000, 4.4000]"


CRITERIA = """criteria:
  - {text: "r16-b1 lower held-out loss than r8", arm: r16-b1, metric: heldout_loss, better_than: r8}
  - {text: "r8 AGL awareness above 0.99", arm: r8, metric: agl_awareness, above: 0.99}
  - {text: "broken AGL awareness above 0", arm: broken, metric: agl_awareness, above: 0.0}
"""


def test_success_criteria_are_the_reports(fabricated, tmp_path):
    """The page's success criteria equal report.md's table cell by cell (the same runs, tiny2 with a criteria
    block): met, not met and undecided alike; a study without criteria has none on the page."""
    study, specs, _ = fabricated
    results = specs[0].run_dir.parents[2]
    assert study_view.StudyView(study, specs, None, results).analysis()["criteria"] is None
    with_criteria = tmp_path / "tiny-criteria.yaml"
    with_criteria.write_text(TINY.read_text() + CRITERIA)
    study = load_study(with_criteria)
    specs = expand(study, str(with_criteria), results_root=results, exports_root=tmp_path / "exports")
    md = report.build_report(study, specs, None, tmp_path / "report").read_text()
    a = study_view.StudyView(study, specs, None, results).analysis()
    assert a["available"] and a["errors"] == [], a
    table = md_table(md, "## Success criteria")
    assert a["criteria"]["header"] == list(table[0])
    assert [list(r.values()) for r in a["criteria"]["rows"]] == [list(r.values()) for r in table]
    assert [r["judged"] for r in a["criteria"]["rows"]] == ["met", "not met", "undecided"]
    assert f"\n{a['criteria']['intro']}\n" in md


def test_rounds_of_an_adaptive_study_are_shown_and_a_corrupt_file_is_reported(fabricated):
    study, specs, _ = fabricated
    view = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2])
    first = view.analysis()
    assert not any(b[0] == "h" and b[2] == "Adaptive rounds" for b in first["blocks"])
    rounds = {
        "plan": {
            "seeds": [0, 1],
            "seeds_per_round": 1,
            "max_seeds": 3,
            "looks": [2, 3],
            "metric": "agl_awareness",
            "rule": "O'Brien-Fleming",
            "alpha": 0.05,
        },
        "outcome": "decided",
        "rounds": [
            {
                "round": 1,
                "questions": {"rank": {"delta": 0.19, "p": 0.0004, "status": "supported"}},
                "runs_per_arm": {"r8": 2, "r16-b1": 2},
                "threshold": 0.0005,
                "next_arms": [],
            }
        ],
    }
    write_json(view.root / "rounds.json", rounds)
    shown = view.analysis()
    assert shown["version"] != first["version"] and shown["errors"] == []
    doc = report_doc.Doc()
    report_decision.render_rounds(doc, rounds)
    assert shown["blocks"][-len(doc.blocks) :] == [list(b) for b in doc.blocks]
    (view.root / "rounds.json").write_text('{"plan": ')
    broken = view.analysis()
    assert broken["available"] and "rounds.json is half-written or corrupt" in broken["errors"][0]
    assert not any(b[0] == "h" and b[2] == "Adaptive rounds" for b in broken["blocks"])


def test_a_corrupt_eval_file_is_reported_not_raised(fabricated):
    study, specs, by = fabricated
    with open(by["r8/seed1"].run_dir / "eval.jsonl", "a") as f:
        f.write('{"id": "cut off\n')
    view = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2])
    a = view.analysis()  # the damaged run is left out, with its reason; the rest is analysed
    assert a["available"] and len(a["errors"]) == 1
    assert "r8/seed1" in a["errors"][0] and "eval.jsonl:25: invalid JSON" in a["errors"][0]
    arms = {arm["arm"]: arm for arm in a["arms"]}
    assert (arms["r8"]["n_complete"], arms["r16-b1"]["n_complete"], arms["base"]["n_complete"]) == (1, 2, 2)
    assert "unreadable 1" in arms["r8"]["cells"]["runs"] and "r16-b1" in a["comparisons"]
    detail = view.run("r8", 1)
    assert len(detail["items"]) == 24 and "eval.jsonl:25: invalid JSON" in detail["errors"][0]


def test_a_damaged_eval_file_costs_its_run_only_in_the_report(fabricated, tmp_path):
    study, specs, by = fabricated
    with open(by["r8/seed1"].run_dir / "eval.jsonl", "a") as f:
        f.write("[" * 5000 + "]" * 5000 + "\n")  # nested past the recursion limit: RecursionError on main
    md = report.build_report(study, specs, None, tmp_path / "report")
    text = md.read_text()
    assert "Left out of every number in this report" in text and "r8/seed1: " in text and "nested deeper" in text
    rows = {r["arm"].removesuffix(" (baseline)"): r for r in md_table(text, "## Full series summary")}
    assert rows["r8"]["runs"] == "complete 1, unreadable 1" and rows["r16-b1"]["runs"] == "complete 2"


def test_run_page_data(fabricated):
    study, specs, _ = fabricated
    view = study_view.StudyView(study, specs, None, specs[0].run_dir.parents[2])
    d = view.run("r16-b1", 0)
    assert d["config"]["lora"]["r"] == 16 and d["config"]["batch"]["micro"] == 1
    assert "steps" not in d["record"]["train"] and d["curve"]["train"][0][0] == 1
    assert {r["lang"] for r in d["items"]} == {"en", "de", "jbo"} and d["errors"] == []
    assert view.run("base", 0)["config"] is None and view.run("r8", 9) is None


# ------------------------------------------------------------------------------------------ choosing study and scale
def test_default_study_and_scale_from_the_runs_on_disk(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(UserError, match="none yet"):
        serve.default_study(results)
    study = load_study(STUDIES / "phase14d.yaml")
    assert serve.infer_scale(study, "phase14d.yaml", results, tmp_path / "exports") is None
    for s in expand(study, "phase14d.yaml", "quick", only=["v9B"], results_root=results, exports_root="elsewhere"):
        write_json(
            s.run_dir / "spec.json",
            {
                "arm": s.arm,
                "seed": s.seed,
                "base": s.base,
                "train": s.train.model_dump(),
                "eval": s.eval,
                "tracking": None,
            },
        )
    assert serve.default_study(results) == "phase14d"
    assert serve.infer_scale(study, "phase14d.yaml", results, tmp_path / "exports") == "quick"
    (results / "other").mkdir()
    with pytest.raises(UserError, match="other, phase14d"):
        serve.default_study(results)


# ------------------------------------------------------------------------------------------ the server
def _tree(root: Path) -> dict:
    """Every file under root with its mtime and size: a file the server created or touched shows up here."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()
    }


def _get(url: str, host: str | None = None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_server(results: Path, *extra) -> tuple[subprocess.Popen, str]:
    """`ada-slm study serve` on tiny-2arm in its own process, at a free port; returns it and its URL."""
    proc = subprocess.Popen(
        CLI + ["study", "serve", str(TINY), "--results", str(results), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    match = re.search(r"http://\S+/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no URL announced: {line!r} {proc.stderr.read()}")
    return proc, match.group(0)


def test_server_answers_and_never_writes_into_results(fabricated):
    study, specs, _ = fabricated
    results = specs[0].run_dir.parents[2]
    before = _tree(results)
    proc, url = start_server(results)
    try:
        status, body = _get(url + "api/state")
        st = json.loads(body)
        assert status == 200 and st["counts"]["complete"] == 6 and st["counts"]["failed"] == 2
        assert json.loads(_get(url + "api/analysis")[1])["available"]
        assert set(json.loads(_get(url + "api/curves")[1])["runs"]) == {
            f"{a}/seed{k}" for a in ("r8", "r16-b1") for k in (0, 1)
        }
        assert json.loads(_get(url + "api/run/r8/1")[1])["state"]["state"] == "complete"
        assert _get(url + "api/run/nope/0")[0] == 404 and _get(url + "api/run/r8/x")[0] == 404
        page = _get(url)[1]
        assert "/static/app.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from outside
        assert "lineChart" in _get(url + "static/app.js")[1]
        assert _get(url + "api/state", host="attacker.example")[0] == 400  # DNS rebinding guard on loopback
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert _tree(results) == before


def test_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run(
            CLI + ["study", "serve", str(TINY), "--results", str(tmp_path), "--port", str(port)],
            capture_output=True,
            text=True,
        )
    assert p.returncode == 1 and f"--port {port}: cannot listen there" in p.stderr and "Traceback" not in p.stderr


def test_a_corrupt_a_huge_a_fifo_and_an_escaping_record_cost_their_own_cells_under_load(fabricated, tmp_path):
    """One record nested 100 000 deep, one of 50 MB, one FIFO (a FIFO eval.jsonl too) and one symlink to a JSON
    outside the results: under concurrent polling every route answers 200 with the other runs' content, the
    four runs are 'unreadable' with their reason, and nothing outside the results folder is served. On main
    the FIFO blocks the server's threads (the requests time out) and the deep record makes every route 500."""
    import concurrent.futures
    import threading

    study, specs, by = fabricated
    results = specs[0].run_dir.parents[2]
    (by["r8/seed1"].run_dir / "record.json").write_text(
        '{"status": {"state": "complete"}, "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with open(by["r16-b1/seed1"].run_dir / "record.json", "w") as f:  # a valid record of 50 MB
        f.write('{"status": {"state": "complete"}, "meta": {"padding": "' + "x" * (50 * 2**20) + '"}}')
    (by["base/seed1"].run_dir / "record.json").unlink()
    os.mkfifo(by["base/seed1"].run_dir / "record.json")
    (by["broken/seed1"].run_dir / "eval.jsonl").unlink(missing_ok=True)
    by["broken/seed1"].run_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(by["broken/seed1"].run_dir / "eval.jsonl")
    secret = tmp_path / "outside.json"
    secret.write_text('{"status": {"state": "failed", "reason": "SECRET-OUTSIDE-THE-RESULTS"}}')
    (by["broken/seed0"].run_dir / "record.json").unlink()
    (by["broken/seed0"].run_dir / "record.json").symlink_to(secret)

    urls = ["api/state", "api/curves", "api/analysis"] + [f"api/run/{s.arm}/{s.seed}" for s in specs]
    answers: list[tuple[str, int, str]] = []

    def fetch(path: str):
        with urllib.request.urlopen(url + path, timeout=120) as r:
            return path, r.status, r.read().decode()

    def load():
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            answers.extend(pool.map(fetch, urls * 3))

    proc, url = start_server(results)
    try:
        poller = threading.Thread(target=load, daemon=True)
        poller.start()
        poller.join(timeout=900)  # a server that hangs fails here, however slow the machine
        assert not poller.is_alive(), "the server stopped answering"
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert len(answers) == 3 * len(urls) and all(status == 200 for _, status, _ in answers)
    assert not any("SECRET-OUTSIDE" in body for _, _, body in answers)
    state = json.loads(next(body for path, _, body in answers if path == "api/state"))
    cells = {r["key"]: r for r in state["runs"]}
    assert {k for k, r in cells.items() if r["state"] == "complete"} == {"base/seed0", "r8/seed0", "r16-b1/seed0"}
    assert cells["broken/seed1"]["state"] == "failed"
    assert "nested deeper than" in cells["r8/seed1"]["detail"]
    assert "too large (50.0 MiB" in cells["r16-b1/seed1"]["detail"]
    assert "not a regular file (a FIFO)" in cells["base/seed1"]["detail"]
    assert "outside" in cells["broken/seed0"]["detail"]
    assert all(cells[k]["state"] == "unreadable" for k in ("r8/seed1", "r16-b1/seed1", "base/seed1", "broken/seed0"))
    analysis = json.loads(next(body for path, _, body in answers if path == "api/analysis"))
    assert analysis["available"] and {a["arm"]: a["n_complete"] for a in analysis["arms"]} == {
        "base": 1,
        "r8": 1,
        "r16-b1": 1,
        "broken": 0,
    }
    assert sum("left out of the analysis" in e for e in analysis["errors"]) == 4
    run_pages = {path: json.loads(body) for path, _, body in answers if path.startswith("api/run/")}
    assert len(run_pages["api/run/r8/0"]["items"]) == 24 and run_pages["api/run/r8/0"]["errors"] == []
    assert any("not a regular file (a FIFO)" in e for e in run_pages["api/run/broken/1"]["errors"])
    assert run_pages["api/run/broken/0"]["record"] is None


@pytest.mark.parametrize("port", ["-1", "99999"])
def test_a_port_out_of_range_is_refused_without_a_traceback(tmp_path, port):
    p = subprocess.run(
        CLI + ["study", "serve", str(TINY), "--results", str(tmp_path), "--port", port], capture_output=True, text=True
    )
    assert p.returncode == 2 and "Invalid value for '--port'" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------------ in a real browser
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HELD_BACK = "r16-b1/seed1"  # the run that finishes while the page is open


def chromium_or_skip() -> str:
    """Debian's Chromium and the playwright package; in CI (CI=true) their absence fails instead of skipping."""
    import shutil

    why = None
    try:
        import playwright.sync_api  # noqa: F401  (only whether it is there)
    except ImportError:
        why = "the playwright package is missing (pip install -e '.[test]')"
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "no Chromium on this machine (Debian: apt-get install chromium)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the browser test cannot run: {why}")
        pytest.skip(f"browser test skipped: {why}")
    return path


def _finish_held_back_run(done: Path, root: Path) -> list[str]:
    """What the runner writes for one run, in its order (each write atomic, as the runner's): spec.json and
    record.json while training (two steps so far), then eval.jsonl and the complete record.json."""
    import shutil

    src, dst = done / HELD_BACK, root / HELD_BACK
    dst.mkdir(parents=True)
    shutil.copy(src / "spec.json", dst / "spec.json")
    final = json.loads((src / "record.json").read_text())
    training = {
        **final,
        "status": {"state": "running", "reason": None},
        "eval": None,
        "train": {"steps": final["train"]["steps"][:2], "val": []},
    }
    write_json(dst / "record.json", training)
    yield "running"
    for name in ("eval.jsonl", "eval_summary.json"):
        shutil.copy(src / name, dst / (name + ".tmp"))
        (dst / (name + ".tmp")).replace(dst / name)
    write_json(dst / "record.json", final)
    yield "complete"


def _page_matches_report(page, md: str) -> None:
    """The page's tables cell by cell against report.md's: the series summary, r16-b1 against the baseline and
    the decision, headers included."""

    def texts(selector: str) -> list[str]:
        return page.eval_on_selector_all(selector, "els => els.map(e => e.innerText.trim())")

    summary = md_table(md, "## Full series summary")
    assert texts("#arms thead th") == list(summary[0])
    for row in summary:
        assert texts(f'#arms tr[data-arm="{row["arm"].removesuffix(" (baseline)")}"] td') == list(row.values())
    table = md_table(md, "### r16-b1 vs r8")
    assert texts('#comparisons table[data-arm="r16-b1"] thead th') == list(table[0])
    for row in table:
        assert texts(f'#comparisons table[data-arm="r16-b1"] tr[data-metric="{row["metric"]}"] td') == list(
            row.values()
        )
    notes = texts("#comparisons p")  # what differs, why an arm is not compared: the report's paragraphs
    assert len(notes) == 3 and all(f"\n{n}\n" in md for n in notes), notes
    decision = md_table(md, "## Decision")
    assert texts("#decision thead th") == list(decision[0])
    for row in decision:
        assert texts(f'#decision tr[data-question="{row["question"]}"] td') == list(row.values())
    assert all(f"\n{n}\n" in md for n in texts("#decision p") + texts("#blocks p"))  # intro, notes, power...
    assert texts("#blocks h3") == ["Factorial analysis", "Rank: is there a Goldilocks zone?", "Power"]
    recommended = page.inner_text("#decision .recommend")
    assert recommended.startswith("Recommended next run: ") and f"\n{recommended}\n" in md


def _overflowing(page) -> list[str]:
    """What is cut at the page's width: the page itself, or a scroll box or table wider than what holds it."""
    return page.evaluate("""() => {
      const out = [];
      if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push("page " +
        document.documentElement.scrollWidth);
      for (const el of document.querySelectorAll(".scroll, .wide, table")) {
        if (el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
          out.push((el.id || el.className || el.tagName) + " " + el.scrollWidth + ">" + el.clientWidth);
      }
      return out;
    }""")


@pytest.mark.slow
def test_the_page_in_chromium_follows_a_study_and_shows_the_reports_numbers(finished_study, tmp_path):
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = chromium_or_skip()
    done = finished_study[0]
    results, root = tmp_path / "results", tmp_path / "results" / "tiny2"
    reports = {"report.md", "report.html", "comparisons.json", "loss_curves.png", "metrics.png", "metric_vs_rank.png"}
    shutil.copytree(
        done,
        root,
        ignore=lambda d, names: [
            n for n in names if (Path(d) == done and n in reports) or (Path(d) == done / "r16-b1" and n == "seed1")
        ],
    )
    study = load_study(TINY)
    partial_md = report.build_report(
        study, expand(study, str(TINY), results_root=results), None, tmp_path / "report-before"
    ).read_text()
    before = _tree(results)
    proc, url = start_server(results)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(180_000)  # a guard against a hang, not a speed requirement
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector('#arms tr[data-arm="r16-b1"]')
            page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
            cells = {
                el.get_attribute("data-run"): el.get_attribute("data-state")
                for el in page.query_selector_all("#grid [data-run]")
            }
            assert cells == {
                "base/seed0": "complete",
                "base/seed1": "complete",
                "r8/seed0": "complete",
                "r8/seed1": "complete",
                "r16-b1/seed0": "complete",
                HELD_BACK: "pending",
                "broken/seed0": "failed",
                "broken/seed1": "failed",
            }
            assert "init_adapter" in page.inner_text('[data-run="broken/seed0"]')
            _page_matches_report(page, partial_md)

            with FileLock(str(root / ".lock")):  # the test plays the runner, which holds the study lock
                steps = _finish_held_back_run(done, root)
                next(steps)
                page.wait_for_selector(f'[data-run="{HELD_BACK}"][data-state="running"]:has-text("step 2/3")')
                assert "ETA" in page.inner_text(f'[data-run="{HELD_BACK}"]')
                next(steps)
                page.wait_for_selector(f'[data-run="{HELD_BACK}"][data-state="complete"]')
            page.wait_for_selector('#arms tr[data-arm="r16-b1"] td[data-col="runs"]:has-text("complete 2")')
            assert page.evaluate("window.sameDocument") is True
            _page_matches_report(page, (done / "report.md").read_text())
            assert page.locator('#curves .panel[data-arm="r16-b1"] polyline').count() == 4  # 2 seeds × train, val
            # the answer first, and nothing cut at 1,280 px: no table wider than its box, no page wider than the window
            assert page.locator("#answer-box").is_visible() and "**" not in page.inner_text("#answer")
            assert page.locator("#answer strong", has_text="rank").count() == 1
            assert _overflowing(page) == [], _overflowing(page)
            page.screenshot(path=str(tmp_path / "serve-overview.png"), full_page=True)

            page.click('[data-run="r8/seed0"]')
            page.wait_for_selector("#items tr[data-item]")
            assert page.locator("#items tr[data-item]").count() == 12
            assert "lora.r" in page.inner_text("#run-config") and "complete" in page.inner_text("#run-state")
            lang = page.eval_on_selector("#filter-lang", "s => s.options[1].value")
            page.select_option("#filter-lang", lang)
            langs = {el.get_attribute("data-lang") for el in page.query_selector_all("#items tr[data-item]")}
            assert langs == {lang} and 0 < page.locator("#items tr[data-item]").count() < 12
            category = page.eval_on_selector("#filter-category", "s => s.options[1].value")
            page.select_option("#filter-category", category)
            assert all(
                el.get_attribute("data-category") == category for el in page.query_selector_all("#items tr[data-item]")
            )
            page.screenshot(path=str(tmp_path / "serve-run.png"), full_page=True)
            page.goto((done / "report.html").as_uri())  # the report, at the same width: the answer before the tables
            text = page.inner_text("body")
            assert text.index("The answer") < text.index("Full series summary") and "nan" not in text.split()
            assert _overflowing(page) == [], _overflowing(page)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert errors == []
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    after = {k: v for k, v in _tree(results).items() if not k.startswith(f"tiny2/{HELD_BACK}") and k != "tiny2/.lock"}
    assert after == {k: v for k, v in before.items() if k != "tiny2/.lock"}, "the server wrote into results"
    print(f"screenshots: {tmp_path / 'serve-overview.png'} {tmp_path / 'serve-run.png'}")
