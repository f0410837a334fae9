import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from safetensors.torch import load_file

from ada_slm.errors import UserError
from ada_slm.run import hardware
from ada_slm.study.spec import expand, load_study, validate_models
from tests.shared import CLI, DATA, STUDIES


def test_phase14d_expands_as_designed():
    study = load_study(STUDIES / "phase14d.yaml")
    specs = expand(study, "phase14d.yaml")
    arms = {s.arm: s for s in specs if s.seed == 0}
    assert list(arms) == ["base", "v9B", "v9C", "v9D", "v9E", "v9B-5k", "v9C-ran"]
    assert len(specs) == 7 * 3
    for name in ("v9B", "v9C", "v9D", "v9E", "v9B-5k"):
        t = arms[name].train
        assert t.effective_batch == 16  # the seed's intended effective batch, every arm but the as-ran one
        assert t.base == "LiquidAI/LFM2-350M" and t.epochs == 3 and t.loss.normalisation == "micro_batch"
    assert arms["v9C-ran"].train.effective_batch == 64  # v9C as the seed actually ran it
    assert (arms["v9C"].train.batch.micro, arms["v9C"].train.batch.accum) == (1, 16)
    assert arms["v9E"].train.lora.r == 48 and arms["v9B-5k"].train.data.size == 5000
    assert arms["base"].train is None
    assert Path(arms["v9D"].run_dir) == Path("results/phase14d/v9D/seed0")
    assert Path(arms["v9D"].export_dir) == Path("exports/phase14d/v9D/seed0")


def test_quick_preset_keeps_each_arms_difference():
    study = load_study(STUDIES / "phase14d.yaml")
    specs = expand(study, "phase14d.yaml", scale="quick")
    arms = {s.arm: s.train for s in specs if s.seed == 0}
    assert {s.seed for s in specs} == {0, 1}
    assert all(t is None or t.base == "smollm2-135m" for t in arms.values())
    assert arms["v9B"].data.size == 120 and arms["v9B-5k"].data.size == 300
    assert arms["v9C"].lora.r == 32 and arms["v9C"].batch.accum == 16
    specs = expand(study, "phase14d.yaml", scale="quick", only=["v9B", "base"], seeds=[5])
    assert [(s.arm, s.seed) for s in specs] == [("base", 5), ("v9B", 5)]


def test_shipped_studies_load():
    for path in STUDIES.glob("phase14*.yaml"):
        if "reported" in path.name:
            continue
        study = load_study(path)
        for scale in [None] + list(study.scale):
            assert expand(study, str(path), scale=scale)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: s\nbaseline: a\narms:\n  a: {lora: {rnak: 3}}\n", "arms.a: unknown key 'lora.rnak'"),
        ("name: s\nbaseline: a\narms: {}\n", "a study needs at least one arm"),
        ("name: s\nbaseline: z\narms:\n  a: {}\n", "baseline: 'z' is not an arm"),
        ("name: s\nbaseline: a\narms:\n  a: {}\ncolour: red\n", "unknown key 'colour'"),
        ("name: s\nbaseline: a\narms:\n  base: {}\n  a: {}\n", "'base' is reserved"),
        (
            "name: s\nbaseline: a\narms:\n  a: {}\ndecision:\n  questions: {q: {compare: x, against: a}}\n"
            "  rules: [{recommend: r}]\n",
            "unknown arm 'x'",
        ),
        ("name: [\n", "invalid YAML"),
        # the same arm twice: on main the second silently replaced the first
        (
            "name: s\nbaseline: a\narms:\n  a: {lora: {r: 8}}\n  b: {}\n  a: {lora: {r: 16}}\n",
            ":6: key 'a' given twice (first at line 4)",
        ),
        (
            "name: s\nbaseline: a\narms:\n  a:\n    lr: 1.0e-4\n    lr: 2.0e-4\n",
            ":6: key 'lr' given twice (first at line 5)",
        ),
        ("name: s\nbaseline: a\narms:\n  a: {}\nseeds: [" + "[" * 2000 + "]" * 2000 + "]\n", "nested too deeply"),
        ("name: s\nbaseline: a\narms:\n  a: {}\nseeds: [" + "7" * 5000 + "]\n", "4300 digits"),
    ],
)
def test_bad_study_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        expand(load_study(path), str(path))
    assert message in str(info.value) and str(path) in str(info.value)


def test_unknown_base_fails_before_anything_runs(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbaseline: a\ndefaults: {base: no-such-model}\narms:\n  a: {}\n")
    specs = expand(load_study(path), str(path))
    with pytest.raises(UserError, match="no-such-model"):
        validate_models(specs)
    p = subprocess.run(
        CLI + ["study", "run", str(path), "--results", str(tmp_path / "r")], capture_output=True, text=True
    )
    assert p.returncode == 1 and "no-such-model" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def _records(root):
    return {p.parent.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.rglob("record.json")}


@pytest.mark.slow
def test_interrupted_study_resumes_without_redoing_finished_runs(finished_study):
    root, exports, first, second = finished_study
    assert len(first) >= 2
    for key, mtime in first.items():
        assert (root / key / "record.json").stat().st_mtime_ns == mtime, f"{key} was redone"
    records = _records(root)
    assert second.returncode == 2  # one arm fails by design
    complete = sorted(k for k, r in records.items() if r["status"]["state"] == "complete")
    assert complete == ["base/seed0", "base/seed1", "r16-b1/seed0", "r16-b1/seed1", "r8/seed0", "r8/seed1"]
    for seed in (0, 1):
        assert "init_adapter" in records[f"broken/seed{seed}"]["status"]["reason"]
    for key in ("r8/seed0", "r16-b1/seed1"):
        assert (exports / "tiny2" / key / "adapter_model.safetensors").is_file()
        assert (root / key / "eval.jsonl").is_file()
        assert records[key]["eval"]["n_items"] == 12
    assert records["base/seed0"]["eval"]["arm"] == "base"


@pytest.mark.slow
def test_report_is_written_with_the_honest_tables(finished_study):
    root, _, _, _ = finished_study
    md = (root / "report.md").read_text()
    for section in (
        "## Full series summary",
        "## Per-metric comparison against r8",
        "### r16-b1 vs r8",
        "## Decision",
        "## Our metrics | seed-compatible scoring",
        "## Plots",
        "## Rank: is there a Goldilocks zone?",
    ):
        assert section in md, section
    assert "Differs in rank: 8 → 16, batch split: 2×2 → 1×4." in md
    assert "train the same objective" in md
    assert "n/a (baseline ≈ 0)" in md
    assert "Recommended next run: add seeds" in md
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "<table>" in html
    assert (root / "loss_curves.png").is_file() and (root / "metrics.png").is_file()
    comps = json.loads((root / "comparisons.json").read_text())
    assert set(comps) == {"base", "r16-b1"}


@pytest.mark.slow
def test_study_next_writes_a_followup_that_plan_accepts(finished_study, tmp_path):
    """`study next` on the finished tiny study: the fallback rule of a copy of tiny-2arm changes the corpus size,
    so the follow-up has the best arm as baseline, `next` = baseline r8 with that change, and loads as a study."""
    import yaml

    root, exports, _, _ = finished_study
    raw = yaml.safe_load((DATA / "tiny-2arm.yaml").read_text())
    raw["decision"]["rules"][-1]["config"] = {"data": {"size": 80}}
    variant = tmp_path / "tiny2-variant.yaml"
    variant.write_text(yaml.safe_dump(raw, allow_unicode=True))
    out = tmp_path / "next.yaml"
    p = subprocess.run(
        CLI
        + ["study", "next", str(variant), "--results", str(root.parent), "--exports", str(exports), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "recommended: add seeds" in p.stdout and f"wrote {out}" in p.stdout
    text = out.read_text()
    assert text.startswith("# Written by `ada-slm study next tiny2`") and "# Seeds: " in text
    followup = load_study(out)
    records = _records(root)
    means = {
        arm: sum(records[f"{arm}/seed{k}"]["eval"]["metrics"]["agl_awareness"]["mean"] for k in (0, 1))
        for arm in ("r8", "r16-b1")
    }
    best = max(means, key=lambda arm: (means[arm], arm))  # the best mean; a tie goes to the later name
    assert followup.baseline == best and followup.followup_of == "tiny2"
    assert set(followup.arms) == {best, "next"} and followup.arms[best] == {}
    assert followup.arms["next"]["data"]["size"] == 80
    if best == "r16-b1":  # next is r8's config (the study baseline) + the change, shown against r16-b1
        assert followup.arms["next"]["lora"]["r"] == 8 and followup.arms["next"]["batch"]["micro"] == 2
    assert 3 <= len(followup.seeds) <= 20
    assert followup.eval.limit == 12 and followup.eval.max_new_tokens == 6  # the same eval settings
    plan = subprocess.run(CLI + ["study", "plan", str(out)], capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    # the shipped rules of tiny-2arm recommend only more seeds: nothing to write, said so
    p = subprocess.run(
        CLI
        + [
            "study",
            "next",
            str(DATA / "tiny-2arm.yaml"),
            "--results",
            str(root.parent),
            "--exports",
            str(exports),
            "--out",
            str(tmp_path / "none.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and "nothing to write" in p.stdout and not (tmp_path / "none.yaml").exists()


def test_a_results_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("a file where the results folder should be")
    p = subprocess.run(
        CLI
        + [
            "study",
            "run",
            str(DATA / "tiny-2arm.yaml"),
            "--results",
            str(tmp_path / "taken"),
            "--exports",
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"{tmp_path / 'taken' / 'tiny2'}: cannot write the study's results there" in p.stderr
    assert (tmp_path / "taken").read_text() == "a file where the results folder should be"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_results_folder_is_one_line(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    p = subprocess.run(
        CLI
        + [
            "study",
            "run",
            str(DATA / "tiny-2arm.yaml"),
            "--results",
            str(tmp_path / "ro"),
            "--exports",
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "cannot write the study's results there (Permission denied)" in p.stderr


@pytest.mark.slow
def test_second_runner_is_locked_out(tmp_path):
    root = tmp_path / "results" / "tiny2"
    root.mkdir(parents=True)
    with FileLock(str(root / ".lock")):
        p = subprocess.run(
            CLI
            + [
                "study",
                "run",
                str(DATA / "tiny-2arm.yaml"),
                "--results",
                str(tmp_path / "results"),
                "--exports",
                str(tmp_path / "exports"),
            ],
            capture_output=True,
            text=True,
        )
    assert p.returncode == 1 and "another `ada-slm study run`" in p.stderr


@pytest.mark.slow
def test_ray_executor_gives_the_records_of_the_local_executor(finished_study, tmp_path):
    """tiny-2arm's r8 and r16-b1 arms (two configs: rank and batch split differ) at seed 0 as Ray tasks on a
    local Ray instance (with TensorBoard tracking on): the same losses, outputs and metrics as the local
    executor's runs. (Seed 1 would be two more runs of the same code path, each a fresh process to start.)"""
    local_root, _, _, _ = finished_study
    results = tmp_path / "results"
    p = subprocess.run(
        CLI
        + [
            "study",
            "run",
            str(DATA / "tiny-2arm.yaml"),
            "--only",
            "r8,r16-b1",
            "--seeds",
            "0",
            "--executor",
            "ray",
            "--track",
            "tensorboard",
            "--no-report",
            "--results",
            str(results),
            "--exports",
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    ray_records = _records(results / "tiny2")
    local_records = _records(local_root)
    assert sorted(ray_records) == ["r16-b1/seed0", "r8/seed0"]
    expected_precision = hardware.resolve_precision("auto", torch.device("cpu"))[0]
    for key, rec in ray_records.items():
        ref = local_records[key]
        assert rec["status"]["state"] == "complete"
        # the bf16 CPU path is what runs wherever the CPU has AMX (a fixed rule, the same in every process)
        assert rec["meta"]["precision"] == ref["meta"]["precision"] == expected_precision, key
        assert rec["train"]["final_adapter_sha256"] == ref["train"]["final_adapter_sha256"], key
        assert [s["loss"] for s in rec["train"]["steps"]] == [s["loss"] for s in ref["train"]["steps"]]
        assert rec["eval"]["metrics"] == ref["eval"]["metrics"], key
        outputs = [json.loads(line)["output"] for line in (results / "tiny2" / key / "eval.jsonl").open()]
        assert outputs == [json.loads(line)["output"] for line in (local_root / key / "eval.jsonl").open()]
    # TensorBoard scalars were written by the Ray workers, one event per training step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(results / "tiny2" / "r8" / "seed0" / "tensorboard"))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses == pytest.approx([s["loss"] for s in ray_records["r8/seed0"]["train"]["steps"]], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/loss")] == [3]
    assert "eval/agl_awareness" in acc.Tags()["scalars"]
    # a second Ray run finds everything done and redoes nothing
    again = subprocess.run(p.args, capture_output=True, text=True)
    assert again.returncode == 0 and "done 2, failed 0, pending 0" in again.stdout


@pytest.mark.slow
def test_ray_and_tracking_options_are_checked(tmp_path):
    base = CLI + ["study", "run", str(DATA / "tiny-2arm.yaml"), "--results", str(tmp_path / "r")]
    for extra, message in (
        (["--executor", "slurm"], "--executor slurm: choose local or ray"),
        (["--address", "auto"], "need --executor ray"),
        (["--track", "comet"], "--track comet: choose mlflow, tensorboard or wandb"),
        (["--jobs", "0"], "--jobs 0: choose 1 to 64 runs at once"),
        (["--jobs", "2", "--executor", "ray"], "--jobs is for --executor local"),
    ):
        p = subprocess.run(base + extra, capture_output=True, text=True)
        assert p.returncode == 1 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


STUDY_YAML = "name: {name}\nbaseline: {baseline}\nseeds: {seeds}\ndefaults: {{base: tiny-lfm2}}\narms:\n  {arm}: {{}}\n"


@pytest.mark.parametrize("arm", ["../../escape", "/tmp/abs", "..", ".", "a/b", "a b", "é"])
def test_arm_names_that_are_not_one_folder_name_are_refused(tmp_path, arm):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY_YAML.format(name="s", baseline=json.dumps(arm), seeds="[0]", arm=json.dumps(arm)))
    with pytest.raises(UserError, match=r"arm .*names a folder") as info:
        load_study(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/abs"])
def test_study_names_dot_and_dotdot_are_refused(tmp_path, name):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY_YAML.format(name=json.dumps(name), baseline="a", seeds="[0]", arm="a"))
    with pytest.raises(UserError, match="study name .*names a folder"):
        load_study(f)


@pytest.mark.parametrize(
    "seeds, message", [("[-1]", "seed -1"), ("[4294967296]", "seed 4294967296"), ("[0, 0]", "seed 0 is listed twice")]
)
def test_seeds_that_would_share_or_break_a_run_folder_are_refused(tmp_path, seeds, message):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY_YAML.format(name="s", baseline="a", seeds=seeds, arm="a"))
    with pytest.raises(UserError, match=message):
        load_study(f)
    f.write_text(STUDY_YAML.format(name="s", baseline="a", seeds="[0]", arm="a"))
    with pytest.raises(UserError, match=message):  # --seeds on the command line
        expand(load_study(f), str(f), seeds=json.loads(seeds))


def test_run_and_export_folders_stay_under_their_roots(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY_YAML.format(name="s", baseline="a", seeds="[0]", arm="a"))
    study = load_study(f)
    results, exports = tmp_path / "results", tmp_path / "exports"
    specs = expand(study, str(f), results_root=results, exports_root=exports)
    assert [s.run_dir for s in specs] == [results / "s" / "base" / "seed0", results / "s" / "a" / "seed0"]
    assert specs[1].export_dir == exports / "s" / "a" / "seed0"
    (results / "s").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (results / "s" / "a").symlink_to(tmp_path / "elsewhere")  # a link out of the results folder
    with pytest.raises(UserError, match="outside"):
        expand(study, str(f), results_root=results, exports_root=exports)


@pytest.mark.slow
def test_study_exec_on_a_damaged_or_fifo_spec_is_one_line_and_a_failed_record(tmp_path):
    import os

    for name, make in (
        ("garbage", lambda p: p.write_text("{not json")),
        ("fifo", os.mkfifo),
        ("shape", lambda p: p.write_text('{"train": null}')),
    ):
        run_dir = tmp_path / name
        run_dir.mkdir()
        make(run_dir / "spec.json")
        p = subprocess.run(CLI + ["study", "exec", str(run_dir)], capture_output=True, text=True, timeout=300)
        assert p.returncode == 1 and "spec.json" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert json.loads((run_dir / "record.json").read_text())["status"]["state"] == "failed"


NESTED = """
name: same
baseline: a
seeds: [0, 1]
defaults:
  base: tiny-lfm2
  data: {size: 60, mix: {certainty: 1, tool: 1}}
  lora: {r: 8, alpha: 16}
arms:
  a: {}
  b: {lora: {r: 32}, data: {mix: {tool: 1}}}
  c: {batch: {micro: 1, accum: 4}}
scale:
  quick:
    overrides: {max_steps: 2, data: {size: 40}}
    arms: {b: {lora: {alpha: 64}}}
decision:
  questions: {q: {compare: b, against: a}}
  rules: [{recommend: more rank, config: {lora: {r: 32}, data: {mix: {tool: 1}}}}]
"""
DOTTED = """
name: same
baseline: a
seeds: [0, 1]
defaults:
  base: tiny-lfm2
  data.size: 60
  data.mix: {certainty: 1, tool: 1}
  lora.r: 8
  lora: {alpha: 16}
arms:
  a: {}
  b: {lora.r: 32, data.mix: {tool: 1}}
  c: {batch.micro: 1, batch.accum: 4}
scale:
  quick:
    overrides: {max_steps: 2, data.size: 40}
    arms: {b: {lora.alpha: 64}}
decision:
  questions: {q: {compare: b, against: a}}
  rules: [{recommend: more rank, config: {lora.r: 32, data.mix: {tool: 1}}}]
"""


def test_dotted_and_nested_study_files_expand_to_the_same_train_configs(tmp_path):
    """`lora.r: 32` is expanded once, when the study loads; defaults ← scale ← arm ← per-arm tweak are one merge,
    and a data mix given by an arm replaces the default mix whole."""
    runs = {}
    for name, text in (("nested", NESTED), ("dotted", DOTTED)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        study = load_study(path)
        assert study.arms["b"] == {"lora": {"r": 32}, "data": {"mix": {"tool": 1}}}
        assert study.decision.rules[0].config == {"lora": {"r": 32}, "data": {"mix": {"tool": 1}}}
        runs[name] = {
            scale: [(s.key, s.train) for s in expand(study, str(path), scale, results_root=tmp_path)]
            for scale in (None, "quick")
        }
    assert runs["dotted"] == runs["nested"]
    b = dict(runs["dotted"]["quick"])["b/seed1"]
    assert (b.lora.r, b.lora.alpha, b.data.size, b.data.mix, b.max_steps, b.seed) == (32, 64, 40, {"tool": 1}, 2, 1)
    assert dict(runs["dotted"][None])["a/seed0"].data.mix == {"certainty": 1, "tool": 1}
    assert dict(runs["dotted"][None])["c/seed0"].effective_batch == 4


def test_spec_json_round_trips_the_typed_run_spec(tmp_path):
    from ada_slm.run.tracking import Tracking
    from ada_slm.study.spec import SPEC_LIMIT, read_spec_file, write_spec_file

    path = tmp_path / "s.yaml"
    path.write_text(DOTTED)
    specs = expand(load_study(path), str(path), "quick", results_root=tmp_path / "results")
    track = Tracking(kind="tensorboard")
    for spec in specs:
        write_spec_file(spec, track if spec.arm == "b" else None)
        back = read_spec_file(spec.run_dir)
        assert (back.arm, back.seed, back.base, back.train) == (spec.arm, spec.seed, spec.base, spec.train)
        assert back.eval.model_dump() == spec.eval and back.tracking == (track if spec.arm == "b" else None)
    assert specs[0].train is None and read_spec_file(specs[0].run_dir).train is None
    b = next(s for s in specs if s.arm == "b")
    spec_json = b.run_dir / "spec.json"
    for content, message in (
        (b'{"arm": "b"}', "seed: Field required"),
        (spec_json.read_bytes().replace(b'"r": 32', b'"r": "many"'), "train.lora.r: Input should"),
        (b" " * (SPEC_LIMIT + 1), "too large"),
    ):
        spec_json.write_bytes(content)
        with pytest.raises(UserError) as info:
            read_spec_file(b.run_dir)
        assert str(spec_json) in str(info.value) and message in str(info.value) and "\n" not in str(info.value)


TWINS = """
name: twins
baseline: b22
include_base: false
seeds: [0]
defaults:
  base: tiny-lfm2
  data: {size: 40, val_fraction: 0.1}
  lora: {r: 4, alpha: 8, dropout: 0.1}
  batch: {micro: 2, accum: 2}
  max_steps: 2
  max_length: 200
  val_every: 2
eval: {suite: multilang, batch_size: 4, max_new_tokens: 4, limit: 4}
arms:
  b22: {}
  b14: {batch: {micro: 1, accum: 4}}                                   # the same steps: reused
  b14-configured: {batch: {micro: 1, accum: 4}, execution: {grouping: configured}}   # its own steps: trained
"""


@pytest.mark.slow
def test_a_run_whose_steps_another_run_computed_is_not_trained_again(tmp_path):
    """b14 differs from b22 only in micro × accum and both run grouped by length: b14's steps are b22's, so its
    adapter and training record are b22's (meta.computed_by says so), with its own config; the evaluation is its
    own (an eval-cache hit). An arm executed as configured is trained. With --jobs 2 the runner holds b14 back
    until b22 has finished, instead of starting the same steps beside it."""
    study = tmp_path / "twins.yaml"
    study.write_text(TWINS)
    p = subprocess.run(
        CLI
        + [
            "study",
            "run",
            str(study),
            "--no-report",
            "--jobs",
            "2",
            "--results",
            str(tmp_path / "results"),
            "--exports",
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    recs = _records(tmp_path / "results" / "twins")
    b22, b14, own = recs["b22/seed0"], recs["b14/seed0"], recs["b14-configured/seed0"]
    assert b14["meta"]["computed_by"].startswith("b22/seed0: the same optimizer steps")
    assert "computed_by" not in b22["meta"] and "computed_by" not in own["meta"]
    assert b14["config"]["batch"] == {"micro": 1, "accum": 4} and b14["config"]["batch_arithmetic"].startswith(
        "micro 1"
    )
    assert b14["train"]["final_adapter_sha256"] == b22["train"]["final_adapter_sha256"]
    assert [s["loss"] for s in b14["train"]["steps"]] == [s["loss"] for s in b22["train"]["steps"]]
    adapters = {
        k: load_file(tmp_path / "exports" / "twins" / k / "seed0" / "adapter_model.safetensors") for k in ("b22", "b14")
    }
    assert all(torch.equal(adapters["b22"][n], t) for n, t in adapters["b14"].items())
    assert b14["status"]["state"] == "complete" and b14["eval"]["metrics"] == b22["eval"]["metrics"]
    assert b14["train"]["adapter_dir"].endswith("b14/seed0")
    assert own["train"]["final_adapter_sha256"] != b22["train"]["final_adapter_sha256"]  # dropout masks differ
