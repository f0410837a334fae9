import json
import subprocess
import sys

from typer.testing import CliRunner

from ada_slm.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output
    result = runner.invoke(app, ["data", "--help"])
    for cmd in ("build", "validate", "show"):
        assert cmd in result.output


def test_build_validate_show_roundtrip(tmp_path):
    out = tmp_path / "c.jsonl"
    result = runner.invoke(app, ["data", "build", "--size", "300", "--seed", "1", "--val-fraction", "0.1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "270 train + 30 held-out" in result.output
    assert "certainty/en" in result.output
    assert len(out.read_text().splitlines()) == 270
    assert len((tmp_path / "c.val.jsonl").read_text().splitlines()) == 30
    result = runner.invoke(app, ["data", "validate", str(out)])
    assert result.exit_code == 0 and "270 examples, all valid" in result.output
    result = runner.invoke(app, ["data", "show", str(out), "-n", "2", "--category", "tool"])
    assert result.exit_code == 0 and result.output.count("· tool ·") == 2


def _run_cli(*args):
    """Run the real console entry point, as a user would, to see exactly what reaches the terminal."""
    return subprocess.run([sys.executable, "-c", "from ada_slm.cli import main; main()", *args],
                          capture_output=True, text=True)


def test_validate_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good_row = {"id": "a", "category": "tool", "lang": "en",
                "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "●x"}]}
    bad_agl = dict(good_row, id="b", messages=[good_row["messages"][0], {"role": "assistant", "content": "●x ∧"}])
    bad.write_text(json.dumps(good_row) + "\n" + "{not json\n")
    p = _run_cli("data", "validate", str(bad))
    assert p.returncode == 1
    assert f"{bad}:2: invalid JSON" in p.stderr
    assert "Traceback" not in p.stderr
    bad.write_text(json.dumps(good_row) + "\n" + json.dumps(bad_agl, ensure_ascii=False) + "\n" + json.dumps(good_row) + "\n")
    p = _run_cli("data", "validate", str(bad))
    assert p.returncode == 1
    assert f"{bad}:2: assistant message is not valid AGL" in p.stderr
    assert f"{bad}:3: duplicate id 'a'" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_build_inputs_are_one_line_errors(tmp_path):
    cases = [
        (["--size", "0"], "--size must be a positive integer"),
        (["--size", "-5"], "--size must be a positive integer"),
        (["--mix", "nonsense"], "unknown mix 'nonsense'"),
        (["--out", "/proc/forbidden/x.jsonl"], "cannot write"),
        (["--out", str(tmp_path / "x.txt")], "name it *.jsonl"),
    ]
    for args, message in cases:
        p = _run_cli("data", "build", "--size", "10", "--out", str(tmp_path / "ok.jsonl"), *args)
        assert p.returncode != 0, args
        assert message in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
        assert len([l for l in p.stderr.splitlines() if l.strip()]) == 1, p.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    p = _run_cli("data", "show", str(tmp_path / "nope.jsonl"))
    assert p.returncode == 1 and "nope.jsonl: no such file" in p.stderr and "Traceback" not in p.stderr
