import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ada_slm.app.cli import app

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
    result = runner.invoke(
        app, ["data", "build", "--size", "300", "--seed", "1", "--val-fraction", "0.1", "--out", str(out)]
    )
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
    return subprocess.run(
        [sys.executable, "-c", "from ada_slm.app.cli import main; main()", *args], capture_output=True, text=True
    )


def test_validate_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good_row = {
        "id": "a",
        "category": "tool",
        "lang": "en",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "●x"}],
    }
    bad_agl = dict(good_row, id="b", messages=[good_row["messages"][0], {"role": "assistant", "content": "●x ∧"}])
    bad.write_text(json.dumps(good_row) + "\n" + "{not json\n")
    p = _run_cli("data", "validate", str(bad))
    assert p.returncode == 1
    assert f"{bad}:2: invalid JSON" in p.stderr
    assert "Traceback" not in p.stderr
    bad.write_text(
        json.dumps(good_row) + "\n" + json.dumps(bad_agl, ensure_ascii=False) + "\n" + json.dumps(good_row) + "\n"
    )
    p = _run_cli("data", "validate", str(bad))
    assert p.returncode == 1
    assert f"{bad}:2: assistant message is not valid AGL" in p.stderr
    assert f"{bad}:3: duplicate id 'a'" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
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
        assert len([line for line in p.stderr.splitlines() if line.strip()]) == 1, p.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    p = _run_cli("data", "show", str(tmp_path / "nope.jsonl"))
    assert p.returncode == 1 and "nope.jsonl: no such file" in p.stderr and "Traceback" not in p.stderr


def test_study_power_takes_the_item_count_from_the_suite():
    # today's default was a hard-coded 133 whatever the suite: the quick scale scores 16 items, the generated
    # suite 1,000; the Holm family is the questions the scale asks (phase14d quick: rank and split — data is
    # capped, batch skipped; cpu: rank, split and batch — data skipped; full: all four)
    stated = ["study", "power", "phase14d", "--run-mean-sd", "0.0136", "--interaction-sd", "0.175"]
    quick = runner.invoke(app, [*stated, "--scale", "quick"])
    assert quick.exit_code == 0, quick.output
    assert "16 items), α 0.025" in quick.output
    wide = runner.invoke(app, [*stated, "--scale", "cpu", "--suite", "agl-heldout"])
    assert wide.exit_code == 0 and "1000 items), α 0.0167" in wide.output
    assert "133 items), α 0.0125" in runner.invoke(app, [*stated, "--scale", "full"]).output  # all four
    multilang = runner.invoke(app, [*stated, "--scale", "cpu"])
    assert "133 items), α 0.0167" in multilang.output
    detectable = [
        float(line.rsplit(" ", 3)[-3] if "(now)" in line else line.rsplit(" ", 1)[-1])
        for out in (multilang.output, wide.output)
        for line in out.splitlines()
        if "runs per arm" in line
    ]
    assert detectable[0] > detectable[5]  # 3 runs per arm: 1,000 items detect a smaller Δ than 133


def test_study_power_projects_a_finished_studys_components_onto_the_suites_items(tmp_path):
    import numpy as np

    from ada_slm.study.spec import expand, load_study

    (tmp_path / "s.yaml").write_text(
        "name: s\nbaseline: a\ninclude_base: false\ndefaults: {base: tiny-lfm2, max_steps: 2}\n"
        "arms: {a: {}, b: {lora: {r: 32}}}\neval: {suite: multilang, limit: 40}\n"
    )
    study = load_study(tmp_path / "s.yaml")
    rng = np.random.default_rng(0)
    item = rng.normal(0, 0.1, 40)
    for spec in expand(study, "s.yaml", results_root=tmp_path / "results"):
        spec.run_dir.mkdir(parents=True)
        rows = [
            {"id": f"i{j}", "output": "x", "metrics": {"agl_awareness": float(0.3 + v + rng.normal(0, 0.05))}}
            for j, v in enumerate(item)
        ]
        (spec.run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (spec.run_dir / "record.json").write_text(json.dumps({"status": {"state": "complete"}, "train": {}}))
    args = ["study", "power", str(tmp_path / "s.yaml"), "--results", str(tmp_path / "results")]
    same = runner.invoke(app, args)
    assert same.exit_code == 0, same.output
    assert "40 items)" in same.output and "at the" not in same.output  # the runs scored the suite's 40 items
    wide = runner.invoke(app, [*args, "--suite", "agl-heldout"])
    assert wide.exit_code == 0, wide.output
    assert "at the 1000 items of suite agl-heldout" in wide.output


def test_study_plan_and_run_share_one_option_set():
    """The options `study plan` and `study run` both take are defined once (cli/study_options.py): the same
    option objects, so their flags, defaults and --help text cannot drift apart."""
    import inspect

    from ada_slm.app.cli.study_run import study_plan, study_run

    plan, run = inspect.signature(study_plan).parameters, inspect.signature(study_run).parameters
    shared = ["file", "scale", "only", "seeds", "results", "exports", "max_seeds", "jobs"]
    assert set(plan) & set(run) == {*shared, "until_decided", "budget_hours"}  # each says what it does with them
    for name in shared:
        assert plan[name].default is run[name].default, name
    import typer

    study = typer.main.get_command(app).commands["study"].commands
    as_shown = {c: {p.name: (p.opts, p.help, p.default) for p in study[c].params} for c in ("plan", "run")}
    for name in shared:  # what --help prints for each: flags, text, default
        assert as_shown["plan"][name] == as_shown["run"][name], name


def test_starting_the_cli_loads_no_heavy_library():
    """Package modules that load torch or scipy are imported by the commands that use them (the only imports
    left inside functions in app/cli): `ada-slm --help` and the light commands start without them."""
    heavy = ("torch", "transformers", "peft", "scipy", "matplotlib", "datasets", "mlflow", "ray", "wandb")
    code = f"import sys; import ada_slm.app.cli; print([m for m in {heavy!r} if m in sys.modules])"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
