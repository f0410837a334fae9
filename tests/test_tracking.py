import json
import subprocess
import sys
from pathlib import Path

import pytest

from ada_slm.tracking import flatten

DATA = Path(__file__).parent / "data"
CLI = [sys.executable, "-m", "ada_slm.cli"]


def test_flatten_makes_dotted_string_params():
    assert flatten({"lora": {"r": 8, "targets": ["q", "v"]}, "seed": 0, "data": {}}) == {
        "lora.r": "8", "lora.targets": "['q', 'v']", "seed": "0", "data": "{}"}


def test_study_tracked_in_mlflow_as_nested_runs(tmp_path):
    """study → arm → seed runs with the resolved config, per-step and final metrics, the adapter and the report;
    running the study again reuses its MLflow runs instead of adding new ones."""
    import mlflow
    results = tmp_path / "results"
    args = CLI + ["study", "run", str(DATA / "tiny-2arm.yaml"), "--only", "r8,r16-b1", "--seeds", "0",
                  "--track", "mlflow", "--results", str(results), "--exports", str(tmp_path / "exports")]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["ada-slm/tiny2"])
    assert len(runs) == 1 + 2 + 2
    level = runs["tags.ada_slm.level"]
    study_id = runs[level == "study"]["run_id"].item()
    arms = runs[level == "arm"].set_index("tags.ada_slm.arm")
    assert sorted(arms.index) == ["r16-b1", "r8"]
    assert set(arms["tags.mlflow.parentRunId"]) == {study_id}
    seeds = runs[level == "seed"].set_index("tags.ada_slm.run_key")
    assert sorted(seeds.index) == ["r16-b1/seed0", "r8/seed0"]
    for key, row in seeds.iterrows():
        arm = key.split("/")[0]
        assert row["tags.mlflow.parentRunId"] == arms.loc[arm, "run_id"]
        assert row["status"] == "FINISHED"
        record = json.loads((results / "tiny2" / key / "record.json").read_text())
        assert row["params.lora.r"] == str(record["config"]["lora"]["r"])
        assert row["params.batch.micro"] == str(record["config"]["batch"]["micro"])
        assert row["metrics.eval/agl_awareness"] == pytest.approx(record["eval"]["metrics"]["agl_awareness"]["mean"])
        client = mlflow.tracking.MlflowClient(uri)
        history = client.get_metric_history(row["run_id"], "train/loss")
        assert [m.step for m in history] == [s["step"] for s in record["train"]["steps"]]
        assert [m.value for m in history] == pytest.approx([s["loss"] for s in record["train"]["steps"]])
        assert [m.value for m in client.get_metric_history(row["run_id"], "val/loss")] == pytest.approx(
            [v["loss"] for v in record["train"]["val"]])
        adapter_files = {a.path for a in client.list_artifacts(row["run_id"], "adapter")}
        assert "adapter/adapter_model.safetensors" in adapter_files
    report_files = {a.path for a in mlflow.tracking.MlflowClient(uri).list_artifacts(study_id, "report")}
    assert {"report/report.md", "report/report.html"} <= report_files
    assert runs[level == "study"]["status"].item() == "FINISHED"

    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(mlflow.search_runs(experiment_names=["ada-slm/tiny2"])) == 5


def test_train_tracked_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    p = subprocess.run(CLI + ["train", "base=tiny-lfm2", "data.size=40", "max_steps=3", "batch.micro=2",
                              "batch.accum=2", "max_length=160", "val_every=2", f"out_dir={out}", "--quiet",
                              "--track", "tensorboard"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((out / "record.json").read_text())
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [s["step"] for s in record["train"]["steps"]]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([s["loss"] for s in record["train"]["steps"]])
    assert [e.step for e in acc.Scalars("val/loss")] == [2, 3]
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(acc.Tags()["scalars"])
