"""Experiment tracking: MLflow (nested runs study → arm → seed), TensorBoard (scalars per step) or Weights &
Biases (a run per seed, grouped by study, job type = arm).

The run record (record.json) stays the source of truth; a tracker mirrors it live for people who watch their
experiments in MLflow, TensorBoard or W&B. Each training process opens its own tracker from a `Tracking` spec,
so the same code serves `ada-slm train`, the local study executor and Ray workers.

MLflow: a SQLite file store (`sqlite:///<results>/mlflow.db`, artifacts beside it) unless `--tracking-uri`
names a server or another store. MLflow 3 refuses its old `./mlruns` directory store, hence SQLite. The
study is one MLflow run, each arm a child of it, each seed a child of its arm; reruns of a study find their
runs again by tags instead of making new ones.

W&B: wandb's own settings decide where a run goes (`wandb login`, WANDB_MODE, WANDB_ENTITY, WANDB_PROJECT);
with WANDB_MODE=offline nothing leaves the machine: the run is written under <run_dir>/wandb/offline-run-*
for `wandb sync` later. A resumed run continues its W&B run (same id).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from ada_slm.errors import UserError
from ada_slm.schema import Strict

EXPERIMENT_PREFIX = "ada-slm"
TAG_LEVEL, TAG_STUDY, TAG_SCALE, TAG_ARM, TAG_KEY = (
    "ada_slm.level",
    "ada_slm.study",
    "ada_slm.scale",
    "ada_slm.arm",
    "ada_slm.run_key",
)


class Tracking(Strict):
    """Where one run reports to (stored in a study run's spec.json)."""

    kind: Literal["mlflow", "tensorboard", "wandb"]
    uri: str | None = Field(None, description="MLflow tracking URI (default: SQLite file under results/).")
    experiment: str | None = Field(None, description="MLflow experiment name.")
    parent_run_id: str | None = Field(None, description="MLflow run this run is a child of (its arm).")
    run_name: str | None = Field(None, description="Display name of the run.")
    group: str | None = Field(None, description="W&B run group (a study's name).")
    tags: dict[str, str] = Field(default_factory=dict)


def default_uri(results_root: str | Path) -> str:
    return f"sqlite:///{(Path(results_root) / 'mlflow.db').resolve()}"


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested config → {'lora.r': '32', …} (MLflow params are flat strings)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out


# ------------------------------------------------------------------------------------------------ mlflow
def mlflow_client(uri: str):
    try:  # an optional extra, and heavy: imported only with --track mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("--track mlflow needs MLflow: pip install mlflow") from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its SQLite migrations log at INFO on first use
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, uri: str) -> str:
    """The experiment `name`, created on first use with its artifacts next to a SQLite store."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = str(Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / name.replace("/", "_"))
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created by a concurrent process in the meantime
        return client.get_experiment_by_name(name).experiment_id


def find_or_create_run(client, exp_id: str, tags: dict[str, str], run_name: str) -> str:
    """The run carrying exactly these ada_slm tags (reopened), or a new one."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items() if k.startswith("ada_slm."))
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id


class MlflowTracker:
    """One seed run (or a single `ada-slm train` run) in MLflow."""

    def __init__(self, spec: Tracking, run_dir: Path):
        if spec.uri is None:  # the commands always fill it in (default_uri); a hand-written spec.json may not
            raise UserError(f"{run_dir}: tracking.uri: an MLflow run needs its tracking URI")
        self.client = mlflow_client(spec.uri)
        exp = experiment_id(self.client, spec.experiment or EXPERIMENT_PREFIX, spec.uri)
        tags = dict(spec.tags)
        if spec.parent_run_id:
            tags["mlflow.parentRunId"] = spec.parent_run_id
        id_file = run_dir / "mlflow_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        if run_id:  # a resumed run continues its MLflow run
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self.client.create_run(exp, run_name=spec.run_name or run_dir.name, tags=tags).info.run_id
            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id + "\n")
        self.run_id = run_id

    def params(self, params: dict) -> None:
        from mlflow.entities import Param  # optional extra: see mlflow_client

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in flatten(params).items() if k not in existing]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric  # optional extra: see mlflow_client

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def artifacts(self, directory: Path, name: str) -> None:
        self.client.log_artifacts(self.run_id, str(directory), name)

    def end(self, state: str) -> None:
        status = {"complete": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(self.run_id, status)


# ------------------------------------------------------------------------------------------- tensorboard
class TensorboardTracker:
    """Scalars per step in <run_dir>/tensorboard (`tensorboard --logdir results/<study>` shows every run)."""

    def __init__(self, spec: Tracking, run_dir: Path):
        try:  # needs the tensorboard extra, and torch: imported only with --track tensorboard
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--track tensorboard needs TensorBoard: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def params(self, params: dict) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in flatten(params).items())
        self.writer.add_text("config", text)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            if value is not None:
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def artifacts(self, directory: Path, name: str) -> None:
        pass  # the adapter already lies in the run's own directory tree

    def end(self, state: str) -> None:
        self.writer.close()


# ------------------------------------------------------------------------------------- weights & biases
def import_wandb():
    try:  # an optional extra, and heavy: imported only with --track wandb
        import wandb
    except ImportError:
        raise UserError("--track wandb needs Weights & Biases: pip install 'ada-slm[wandb]'") from None
    return wandb


class WandbTracker:
    """One seed run (or a single `ada-slm train` run) in W&B; its local files under <run_dir>/wandb."""

    def __init__(self, spec: Tracking, run_dir: Path):
        wandb = import_wandb()
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            # console="off": the CLI's own progress output stays as it is; the record holds what it shows
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or EXPERIMENT_PREFIX,
                group=spec.group,
                job_type=spec.tags.get(TAG_ARM),
                name=spec.run_name or run_dir.name,
                dir=str(run_dir),
                id=run_id,
                resume="allow" if run_id else None,
                settings=wandb.Settings(console="off"),
            )
        except wandb.Error as e:
            raise UserError(
                f"--track wandb: {str(e).splitlines()[0]} (run `wandb login`, or set "
                f"WANDB_MODE=offline to write the run under {run_dir / 'wandb'})"
            ) from None
        if run_id is None:
            id_file.write_text(self.run.id + "\n")
        # a resumed run logs its steps after the checkpoint again: plot against our step, not wandb's counter
        self.run.define_metric("*", step_metric="step")

    def params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        values = {k: float(v) for k, v in values.items() if v is not None}
        if values:
            self.run.log({"step": step, **values})

    def artifacts(self, directory: Path, name: str) -> None:
        self.run.summary[f"{name}_dir"] = str(directory)  # the files stay in the run's directory tree

    def end(self, state: str) -> None:
        self.run.finish(exit_code=0 if state == "complete" else 1)


def open_tracker(spec: Tracking | None, run_dir: Path):
    """A tracker for one run, or None when not tracking."""
    if spec is None:
        return None
    kinds = {"mlflow": MlflowTracker, "tensorboard": TensorboardTracker, "wandb": WandbTracker}
    return kinds[spec.kind](spec, run_dir)


def eval_metrics(summary: dict) -> dict[str, float]:
    """Final evaluation numbers of an eval summary as flat metrics: eval/<metric> (suite means)."""
    out = {}
    for name, stats in (summary.get("metrics") or {}).items():
        if isinstance(stats, dict) and stats.get("mean") is not None:
            out[f"eval/{name}"] = stats["mean"]
    if summary.get("perplexity") is not None:
        out["eval/perplexity"] = summary["perplexity"]
    return out


# ------------------------------------------------------------------------------------ study parent runs
class StudyRuns:
    """The study's MLflow run and one child run per arm, created (or found again) by the study driver."""

    def __init__(self, uri: str, study: str, scale: str, arms: list[str], params: dict):
        self.uri, self.client = uri, mlflow_client(uri)
        self.experiment = f"{EXPERIMENT_PREFIX}/{study}"
        exp = experiment_id(self.client, self.experiment, uri)
        base = {TAG_STUDY: study, TAG_SCALE: scale}
        self.study_run = find_or_create_run(self.client, exp, {**base, TAG_LEVEL: "study"}, f"{study} ({scale})")
        existing = self.client.get_run(self.study_run).data.params
        for k, v in flatten(params).items():
            if k not in existing:
                self.client.log_param(self.study_run, k, v)
        self.arm_runs = {
            arm: find_or_create_run(
                self.client, exp, {**base, TAG_LEVEL: "arm", TAG_ARM: arm, "mlflow.parentRunId": self.study_run}, arm
            )
            for arm in arms
        }

    def spec_for(self, arm: str, seed: int, key: str) -> Tracking:
        return Tracking(
            kind="mlflow",
            uri=self.uri,
            experiment=self.experiment,
            parent_run_id=self.arm_runs[arm],
            run_name=f"{arm}/seed{seed}",
            tags={TAG_LEVEL: "seed", TAG_ARM: arm, TAG_KEY: key},
        )

    def log_report(self, paths: list[Path]) -> None:
        for p in paths:
            self.client.log_artifact(self.study_run, str(p), "report")

    def end(self, failed: bool) -> None:
        status = "FAILED" if failed else "FINISHED"
        for run_id in self.arm_runs.values():
            self.client.set_terminated(run_id, status)
        self.client.set_terminated(self.study_run, status)
