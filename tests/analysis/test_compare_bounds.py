"""compare's readers go through the project's file guards: a FIFO, a file linked to /dev/zero, a zip or Parquet
bomb, JSON nested 100 k deep, a 5,000-digit integer, a CSV field over the csv module's limit, a newline inside a
quoted id, a score of 1e308 — each refused (or read right) in one line, in bounded time and memory."""

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ada_slm.analysis.compare.readers import read_inspect, read_lm_eval, read_table, read_trainer_state
from ada_slm.errors import UserError

ROWS = [
    {"run": "r1", "item": "q1", "metric": "acc", "score": "1"},
    {"run": "r1", "item": "q2", "metric": "acc", "score": "0"},
]


def _in_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that prints its peak RSS (KiB) last: hangs and memory are measured there."""
    tail = "\nimport resource; print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    return subprocess.run([sys.executable, "-c", code + tail], capture_output=True, text=True, timeout=timeout)


def _rss_kb(p: subprocess.CompletedProcess) -> int:
    return int(p.stdout.split("RSS")[-1])


def test_a_fifo_named_like_results_json_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "results_2026.json"
    os.mkfifo(fifo)
    p = _in_child(
        "from ada_slm.analysis.compare.readers import read_lm_eval\nfrom ada_slm.errors import UserError\n"
        f"try:\n    read_lm_eval({str(fifo)!r})\nexcept UserError as e:\n    print('ERR', e)",
        timeout=60,
    )
    assert "not a regular file (a FIFO)" in p.stdout, p.stdout + p.stderr


def test_a_results_json_linked_to_dev_zero_is_refused_in_bounded_memory(tmp_path):
    link = tmp_path / "results_2026.json"
    link.symlink_to("/dev/zero")
    p = _in_child(
        "from ada_slm.analysis.compare.readers import read_lm_eval\nfrom ada_slm.errors import UserError\n"
        f"try:\n    read_lm_eval({str(link)!r})\nexcept UserError as e:\n    print('ERR', e)"
    )
    assert "ERR" in p.stdout and "not a regular file" in p.stdout, p.stdout + p.stderr
    assert _rss_kb(p) < 1_000_000  # KiB: it grew to 2.5 GB before


def test_a_file_over_the_input_limit_names_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    path = tmp_path / "results_x.json"
    path.write_text(json.dumps({"results": {}, "configs": {}, "pad": "x" * 3 * 2**20}))
    monkeypatch.setenv("ADA_SLM_MAX_INPUT_MB", "1")
    with pytest.raises(UserError, match="too large .*ADA_SLM_MAX_INPUT_MB"):
        read_lm_eval(path)


@pytest.mark.slow
def test_an_inspect_zip_bomb_is_refused_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.eval"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("header.json", "w", force_zip64=True) as f:
            chunk = b" " * 2**20
            for _ in range(600):  # 600 MiB of spaces: ≈ 0.6 MB compressed
                f.write(chunk)
    assert bomb.stat().st_size < 5 * 2**20
    p = _in_child(
        "from ada_slm.analysis.compare.readers import read_inspect\nfrom ada_slm.errors import UserError\n"
        f"try:\n    read_inspect({str(bomb)!r})\nexcept UserError as e:\n    print('ERR', e)",
        timeout=120,
    )
    assert "ERR" in p.stdout and ("over the limit" in p.stdout or "zip bomb" in p.stdout), p.stdout + p.stderr
    assert _rss_kb(p) < 1_500_000


def test_a_parquet_bomb_is_refused_from_its_footer(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 2_000_000
    table = pa.table(
        {
            "run": pa.array(["r1"] * n),
            "item": pa.array(["q1"] * n),
            "metric": pa.array(["acc"] * n),
            "score": pa.array([1.0] * n),
        }
    )
    path = tmp_path / "bomb.parquet"
    pq.write_table(table, path, compression="zstd")
    del table
    monkeypatch.setattr("ada_slm.analysis.compare.readers.MAX_TABLE_ROWS", 1_000_000)
    with pytest.raises(UserError, match=r"2,000,000 rows.*over the limits of 1,000,000 rows"):
        read_table(path)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("results_deep.json", "[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ("results_int.json", '{"results": ' + "7" * 5000 + "}", "invalid JSON"),
    ],
)
def test_malformed_lm_eval_json_is_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_lm_eval(path)


def test_a_huge_integer_in_trainer_state_is_one_line(tmp_path):
    (tmp_path / "trainer_state.json").write_text('{"log_history": [{"eval_loss": ' + "9" * 5000 + "}]}")
    with pytest.raises(UserError, match="invalid JSON"):
        read_trainer_state(tmp_path)


def test_a_csv_keeps_a_newline_inside_a_quoted_id_and_counts_file_lines(tmp_path):
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "item", "metric", "score"])
        w.writeheader()
        w.writerows(
            [
                {"run": "r1", "item": "x\ny", "metric": "acc", "score": "1"},
                {"run": "r1", "item": "xy", "metric": "acc", "score": "0"},
                {"run": "r1", "item": "z", "metric": "acc", "score": "oops"},
            ]
        )
    with pytest.raises(UserError, match=r"t.csv:5: score 'oops' is not a number"):  # line 5 of the file, record 3
        read_table(path)
    path.write_text(path.read_text().replace("oops", "1"))
    (run,) = read_table(path)
    assert set(run.scores["acc"]) == {"x\ny", "xy", "z"}  # two ids, not one collision


def test_a_csv_field_over_the_csv_limit_is_one_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("run,item,metric,score\nr1," + "q" * 200_000 + ",acc,1\n")
    with pytest.raises(UserError, match=r"t.csv:\d+: not a readable CSV row \(field larger than field limit"):
        read_table(path)


def test_a_score_of_1e308_is_refused_not_turned_into_nan(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("run,item,metric,score\nr1,q1,acc,1e308\n")
    with pytest.raises(UserError, match=r"t.csv:2: score '1e308' is beyond"):
        read_table(path)


def test_compare_out_does_not_overwrite_an_existing_report(tmp_path):
    from tests.analysis.test_compare import crossed_rows, run_compare, write_csv

    table = write_csv(tmp_path / "t.csv", crossed_rows({"a": 0.0, "b": 0.5}, n_items=10))
    out = tmp_path / "out"
    first = run_compare(table, "--out", out)
    assert first.returncode == 0, first.stderr
    again = run_compare(table, "--out", out)
    assert again.returncode == 1 and "already holds a report" in again.stderr and "--force" in again.stderr
    assert run_compare(table, "--out", out, "--force").returncode == 0


def test_inspect_reader_checks_a_json_log_as_a_regular_file(tmp_path):
    fifo = tmp_path / "log.json"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        read_inspect(fifo)


def test_the_shipped_readers_never_read_bytes_unguarded():
    """No reader of compare reads a path with Path.read_bytes/read_text (which would follow a FIFO or /dev/zero)."""
    import ada_slm.analysis.compare as compare_package

    modules = sorted(Path(compare_package.__file__).parent.glob("*.py"))
    assert {p.name for p in modules} >= {"readers.py", "imported_run.py", "analysis.py"}
    for path in modules:
        text = path.read_text()
        assert ".read_bytes()" not in text and ".read_text(" not in text, path.name


def _lm_eval_run(tmp_path, results: dict, samples: list[dict] | None = None) -> Path:
    path = tmp_path / "results_2026.json"
    path.write_text(json.dumps({"results": {"t": {}}, "configs": {"t": {}}, **results}))
    task = next(iter(json.loads(path.read_text())["configs"]))
    if samples is not None and "/" not in task:
        (tmp_path / f"samples_{task}_2026.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    return path


@pytest.mark.parametrize(
    "results, samples, message",
    [
        ({}, [{"doc_id": 0, "metrics": [1], "1": 1.0}], "metrics holds 1, not a metric name"),
        ({}, [{"doc_id": 0, "metrics": [None]}], "metrics holds None, not a metric name"),
        ({}, [{"doc_id": 0, "metrics": [["acc"]]}], "metrics holds ['acc'], not a metric name"),
        ({"higher_is_better": {"t": ["acc"]}}, [], "higher_is_better.t is list, not an object"),
        ({"config": "hf"}, [], "'config' is str, not an object"),
        ({"higher_is_better": None}, [{"doc_id": 0, "metrics": ["acc"], "acc": None}], None),  # found by Hypothesis
        (
            {"configs": {"../evil": {}}, "results": {"../evil": {}}},
            None,
            "task name '../evil' cannot name a samples file",
        ),
    ],
)
def test_malformed_lm_eval_fields_are_one_line(tmp_path, results, samples, message):
    if message is None:  # a field lm-eval may leave null: read, not a traceback
        assert read_lm_eval(_lm_eval_run(tmp_path, results, samples)).scores == {"acc": {"t/0": None}}
        return
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        read_lm_eval(_lm_eval_run(tmp_path, results, samples))
