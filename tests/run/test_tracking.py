import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from ada_slm.run.tracking import flatten
from tests.shared import CLI, DATA


def test_flatten_makes_dotted_string_params():
    assert flatten({"lora": {"r": 8, "targets": ["q", "v"]}, "seed": 0, "data": {}}) == {
        "lora.r": "8",
        "lora.targets": "['q', 'v']",
        "seed": "0",
        "data": "{}",
    }


@pytest.mark.slow
def test_study_tracked_in_mlflow_as_nested_runs(tmp_path):
    """study → arm → seed runs with the resolved config, per-step and final metrics, the adapter and the report;
    running the study again reuses its MLflow runs instead of adding new ones."""
    import mlflow

    results = tmp_path / "results"
    args = CLI + [
        "study",
        "run",
        str(DATA / "tiny-2arm.yaml"),
        "--only",
        "r8,r16-b1",
        "--seeds",
        "0",
        "--track",
        "mlflow",
        "--results",
        str(results),
        "--exports",
        str(tmp_path / "exports"),
    ]
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
            [v["loss"] for v in record["train"]["val"]]
        )
        adapter_files = {a.path for a in client.list_artifacts(row["run_id"], "adapter")}
        assert "adapter/adapter_model.safetensors" in adapter_files
    report_files = {a.path for a in mlflow.tracking.MlflowClient(uri).list_artifacts(study_id, "report")}
    assert {"report/report.md", "report/report.html"} <= report_files
    assert runs[level == "study"]["status"].item() == "FINISHED"

    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(mlflow.search_runs(experiment_names=["ada-slm/tiny2"])) == 5


@pytest.mark.slow
def test_train_tracked_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    p = subprocess.run(
        CLI
        + [
            "train",
            "base=tiny-lfm2",
            "data.size=40",
            "max_steps=3",
            "batch.micro=2",
            "batch.accum=2",
            "max_length=160",
            "val_every=2",
            f"out_dir={out}",
            "--quiet",
            "--track",
            "tensorboard",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((out / "record.json").read_text())
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [s["step"] for s in record["train"]["steps"]]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([s["loss"] for s in record["train"]["steps"]])
    assert [e.step for e in acc.Scalars("val/loss")] == [2, 3]
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(acc.Tags()["scalars"])


# ------------------------------------------------------------------------------------------------ W&B
def offline_wandb_env(tmp_path) -> dict:
    """wandb writes local files only, and keeps its own cache/settings inside the test's folder."""
    return dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_CONFIG_DIR=str(tmp_path / "wb-config"),
        WANDB_CACHE_DIR=str(tmp_path / "wb-cache"),
        WANDB_DATA_DIR=str(tmp_path / "wb-data"),
    )


def wandb_records(path: Path):
    """The protobuf records of an offline run's .wandb file: a LevelDB-style log (7-byte file header `:W&B`,
    0xBEE1, version; 32 KiB blocks of chunks with a 7-byte header: crc32c, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunk = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def offline_run(run_dir: Path) -> dict:
    """What one offline W&B run logged: the run (id, group, …), its config and history rows."""
    (path,) = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    out = {"run": None, "config": {}, "history": []}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            out["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return out


@pytest.mark.slow
def test_train_tracked_in_wandb_offline(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run(
        CLI
        + [
            "train",
            "base=tiny-lfm2",
            "data.size=40",
            "max_steps=3",
            "batch.micro=2",
            "batch.accum=2",
            "max_length=160",
            "val_every=2",
            "lora.r=4",
            f"out_dir={out}",
            "--quiet",
            "--track",
            "wandb",
        ],
        capture_output=True,
        text=True,
        env=offline_wandb_env(tmp_path),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((out / "record.json").read_text())
    logged = offline_run(out)
    assert logged["run"].display_name == "run" and logged["run"].run_id == (out / "wandb_run_id").read_text().strip()
    assert logged["config"]["lora"]["r"] == 4 and logged["config"]["batch"] == record["config"]["batch"]
    train_rows = [row for row in logged["history"] if "train/loss" in row]
    assert [row["step"] for row in train_rows] == [s["step"] for s in record["train"]["steps"]]
    assert [row["train/loss"] for row in train_rows] == pytest.approx([s["loss"] for s in record["train"]["steps"]])
    val_rows = [row for row in logged["history"] if "val/loss" in row]
    assert [row["step"] for row in val_rows] == [2, 3]
    assert [row["val/loss"] for row in val_rows] == pytest.approx([v["loss"] for v in record["train"]["val"]])
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "train/wall_s"} <= set().union(*logged["history"])


@pytest.mark.slow
def test_resumed_wandb_run_continues_its_run_id(tmp_path, monkeypatch):
    from ada_slm.run.tracking import Tracking, open_tracker

    for key, value in offline_wandb_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    spec = Tracking(kind="wandb", run_name="r8/seed0", group="tiny2", tags={"ada_slm.arm": "r8"})
    ids = []
    for _ in range(2):  # the first process, then its --resume
        tracker = open_tracker(spec, tmp_path / "run")
        tracker.metrics(1, {"train/loss": 0.5})
        ids.append(tracker.run.id)
        tracker.end("interrupted")
    assert ids[0] == ids[1]
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(ids[0]) for r in runs)
    first = next(
        rec.run for rec in wandb_records(next(runs[0].glob("*.wandb"))) if rec.WhichOneof("record_type") == "run"
    )
    assert (first.run_group, first.job_type, first.display_name) == ("tiny2", "r8", "r8/seed0")
