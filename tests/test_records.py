import subprocess
import sys

import pytest

from ada_slm.run import records
from ada_slm.study.spec import RunSpec, state_of

CLI = [sys.executable, "-m", "ada_slm.app.cli"]


def test_read_write_and_states(tmp_path):
    assert records.read_record(tmp_path) is None
    records.write_record(tmp_path, {"status": {"state": "complete"}, "eval": None})
    rec = records.read_record(tmp_path)
    assert records.is_trained(rec) and not records.is_complete(rec)  # trained, not yet evaluated
    rec["eval"] = {"metrics": {}}
    assert not records.is_complete(rec)  # an empty summary is not an evaluation
    rec["eval"] = {"metrics": {"agl_awareness": {"mean": 0.1}}}
    assert records.is_complete(rec)
    steps = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}]
    records.write_record(tmp_path, {"status": {"state": "running"}, "train": {"steps": steps}})
    failed = records.mark_failed(tmp_path, "boom")
    assert failed["status"] == {"state": "failed", "reason": "boom"} and failed["train"] == {"steps": steps}
    paths = records.RunPaths(tmp_path / "results", tmp_path / "exports", "s", "v9B", 2)
    assert paths.run_dir == tmp_path / "results" / "s" / "v9B" / "seed2"
    assert paths.export_dir == tmp_path / "exports" / "s" / "v9B" / "seed2" and paths.key == "v9B/seed2"


@pytest.mark.parametrize("content, message", [
    (b'{"status": {"state": "comp', "corrupt run record (invalid JSON (Unterminated string"),
    (b'{"status": {"state": "failed"}, "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "corrupt run record (invalid JSON (nested deeper than"),
    (b'{"status": {"state": "failed"}, "meta": {"seed": ' + b"7" * 5000 + b"}}",
     "corrupt run record (invalid JSON (Exceeds the limit (4300 digits)"),
    (b'{"status": {"state": "complete"}, "train": {"steps": [{"step": 1, "loss": "low"}]}}',
     "not a run record (train.steps.0.loss: "),
    (b'{"status": {"state": "complete"}, "eval": [1]}', "not a run record (eval: "),
    (b"\xff\xfe\x00garbage", "corrupt run record (not UTF-8 text (byte 0xff at offset 0))"),
    (b'[1, 2]', "not a run record"),
    (b'{"config": {}}', "not a run record"),
])
def test_a_corrupt_record_is_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / "record.json").write_bytes(content)
    with pytest.raises(records.CorruptRecord) as e:
        records.read_record(tmp_path)
    assert str(tmp_path / "record.json") in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)
    assert records.read_record_or_none(tmp_path) is None


def test_a_record_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "record.json")  # opened for reading the usual way, this blocks until a writer comes
    with pytest.raises(records.CorruptRecord, match=r"record.json: corrupt run record \(not a regular file \(a FIFO\)"):
        records.read_record(tmp_path)


def test_study_status_and_eval_report_a_corrupt_record_without_a_traceback(tmp_path):
    paths = records.RunPaths(tmp_path / "results", tmp_path / "exp", "s", "a", 0)
    run_dir = paths.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text('{"status": {"state": "complete"}, "train": {"adapter_di')
    p = subprocess.run(CLI + ["eval", str(run_dir)], capture_output=True, text=True)
    assert p.returncode == 1 and "corrupt run record" in p.stderr and str(run_dir) in p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    spec = RunSpec(paths, None, "tiny-lfm2", {})
    assert state_of(spec) == "corrupt"


def test_study_status_shows_a_record_that_parses_badly_as_corrupt(tmp_path):
    from pathlib import Path

    run_dir = tmp_path / "results" / "tiny2" / "r8" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text('{"status": {"state": "complete"}, "meta": {"seed": ' + "7" * 5000 + "}}")
    deep = tmp_path / "results" / "tiny2" / "r8" / "seed1"
    deep.mkdir(parents=True)
    (deep / "record.json").write_text('{"status": {"state": "complete"}, "meta": ' + "[" * 5000 + "]" * 5000 + "}")
    study = Path(__file__).parent / "data" / "tiny-2arm.yaml"
    p = subprocess.run(CLI + ["study", "status", str(study), "--results", str(tmp_path / "results")],
                       capture_output=True, text=True)  # on main: a ValueError / RecursionError traceback
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.count("corrupt") >= 2 and "4300 digits" in p.stdout and "nested deeper" in p.stdout
