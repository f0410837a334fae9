import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ada_slm.run.lm_eval_export import export
from ada_slm.run.metrics import METRICS, score
from ada_slm.run.suites import load_suite
from tests.shared import CLI


def read_results(output_path: Path, task: str) -> dict:
    """Metric means from an lm_eval --output_path folder (the newest results_*.json in it)."""
    files = sorted(Path(output_path).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    assert files, f"{output_path}: no lm-eval results_*.json"
    results = json.loads(files[-1].read_text())["results"][task]
    return {k.split(",")[0]: v for k, v in results.items() if k.endswith(",none") and "_stderr" not in k}


def test_export_writes_a_task_folder(tmp_path):
    p = subprocess.run(CLI + ["eval", "export-lm-eval", str(tmp_path / "tasks")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "--tasks agl_multilang" in p.stdout
    text = (tmp_path / "tasks" / "agl_multilang.yaml").read_text()
    assert "!function" in text and "utils.process_results" in text
    config = yaml.load(text.replace("!function", ""), Loader=yaml.SafeLoader)  # the tag is lm-eval's
    assert config["task"] == "agl_multilang" and config["output_type"] == "generate_until"
    assert [m["metric"] for m in config["metric_list"]] == list(METRICS)
    assert config["generation_kwargs"] == {"until": [], "do_sample": False, "max_gen_toks": 48}
    suite, _ = load_suite("multilang")
    rows = [json.loads(line) for line in (tmp_path / "tasks" / "agl_multilang.jsonl").open()]
    assert [r["id"] for r in rows] == [i.id for i in suite.items]


def test_bad_export_arguments(tmp_path):
    p = subprocess.run(
        CLI + ["eval", "export-lm-eval", str(tmp_path), "--suite", "nope"], capture_output=True, text=True
    )
    assert p.returncode == 1 and "unknown suite 'nope'" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_lm_eval_scores_like_ada_slm_eval(tmp_path):
    """lm_eval (hf model + PEFT adapter, chat template, --limit 6) on the exported task reports the metrics that
    `ada-slm eval` reports for the same six prompts — and both equal our metrics on lm-eval's own outputs."""
    from ada_slm.run import models

    run_dir = tmp_path / "run"
    train = subprocess.run(
        CLI
        + [
            "train",
            "base=tiny-lfm2",
            "data.size=40",
            "max_steps=2",
            "batch.micro=2",
            "batch.accum=2",
            "max_length=160",
            f"out_dir={run_dir}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    base_dir = models.resolve("tiny-lfm2")
    tasks = tmp_path / "tasks"
    export(tasks, "multilang", max_new_tokens=12)
    out = tmp_path / "lm_eval_out"
    lm = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={base_dir},peft={run_dir / 'adapter'},dtype=float32",
            "--device",
            "cpu",
            "--include_path",
            str(tasks),
            "--tasks",
            "agl_multilang",
            "--limit",
            "6",
            "--apply_chat_template",
            "--batch_size",
            "1",
            "--log_samples",
            "--output_path",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert lm.returncode == 0, lm.stderr[-3000:]
    reported = read_results(out, "agl_multilang")
    samples = [json.loads(line) for f in out.rglob("samples_agl_multilang_*.jsonl") for line in f.open()]
    assert len(samples) == 6
    for metric in ("agl_awareness", "reasoning_depth", "well_formed", "tonight_protocol"):
        ours = [score(s["resps"][0][0].strip(), s["doc"])[metric] for s in samples]
        ours = [v for v in ours if v is not None]
        assert reported[metric] == pytest.approx(sum(ours) / len(ours)), metric

    # ada-slm eval on a suite of the same six prompts
    suite, _ = load_suite("multilang")
    six = tmp_path / "six.yaml"
    six.write_text(
        yaml.safe_dump(
            {"name": "six", "items": [i.model_dump(exclude_none=True) for i in suite.items[:6]]}, allow_unicode=True
        )
    )
    ev = subprocess.run(
        CLI
        + [
            "eval",
            str(run_dir),
            "--suite",
            str(six),
            "--max-new-tokens",
            "12",
            "--batch-size",
            "1",
            "--out",
            str(tmp_path / "ours"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "ours" / "eval.jsonl").open()]
    by_id = {s["doc"]["id"]: s["resps"][0][0].strip() for s in samples}
    assert [r["output"] for r in rows] == [by_id[r["id"]] for r in rows]
    summary = json.loads((tmp_path / "ours" / "eval_summary.json").read_text())
    for metric, value in reported.items():
        if metric in METRICS:
            assert summary["metrics"][metric]["mean"] == pytest.approx(value), metric


@pytest.mark.parametrize("task", ["../escape", "/tmp/abs", ".."])
def test_task_name_that_is_not_one_file_name_is_refused(tmp_path, task):
    from ada_slm.errors import UserError

    with pytest.raises(UserError, match="--task .*names a folder"):
        export(tmp_path / "tasks", task=task)
    assert not (tmp_path / "escape.yaml").exists() and not (tmp_path / "tasks").exists()
