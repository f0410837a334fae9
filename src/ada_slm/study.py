"""Studies: a YAML file -> expanded runs (arms × seeds) -> one subprocess per run -> results on disk.

    results/<study>/<arm>/seed<k>/spec.json      what the run is (resolved train config + eval settings)
    results/<study>/<arm>/seed<k>/record.json    run record (train + eval), status complete/failed
    results/<study>/<arm>/seed<k>/eval.jsonl     per-item outputs and metrics
    exports/<study>/<arm>/seed<k>/               the PEFT adapter

A run whose record is complete is never redone, so a killed or interrupted study continues where it stopped.
The `base` arm (no adapter) is evaluated like every other arm, to show the untrained floor.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ada_slm import models
from ada_slm.config import build_config, format_validation_error, load_yaml
from ada_slm.errors import UserError
from ada_slm.files import write_json

BASE_ARM = "base"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalSettings(Strict):
    """Identical for every arm of the study."""

    suite: str = Field("multilang", description="Suite name or file.")
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch (outputs identical at any size).")
    max_new_tokens: int = Field(48, gt=0, description="Generation budget per answer.")
    limit: Optional[int] = Field(None, gt=0, description="Only N suite items, spread evenly over the suite.")


class ScalePreset(Strict):
    """A named size of the study: `quick` for CPU demos, `full` for the seed's sizes."""

    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict, description="key.sub: value applied to the "
                                      "defaults, before each arm's own overrides (e.g. base, data.size, max_steps).")
    arms: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-arm overrides applied last, "
                                            "to keep an arm's difference at this scale (e.g. a smaller data arm).")
    eval: dict[str, Any] = Field(default_factory=dict, description="Overrides of the eval settings.")
    seeds: Optional[list[int]] = Field(None, description="Seeds for this preset (default: the study's).")


class Question(Strict):
    """'Does arm `compare` beat arm `against` on the decision metric?' — true when the paired difference's
    95 % CI lies above zero."""

    compare: str
    against: str


class Rule(Strict):
    when: dict[str, bool] = Field(default_factory=dict, description="Answers required; {} matches anything.")
    recommend: str = Field(..., description="What to run next, in words.")
    config: dict[str, Any] = Field(default_factory=dict, description="Overrides of the baseline's config.")


class Decision(Strict):
    metric: str = Field("agl_awareness", description="The metric the questions are asked on: a per-item metric "
                        "(metrics.METRICS) or a run-level one (heldout_loss, train_loss: lower is better; "
                        "tokens_per_s).")
    questions: dict[str, Question]
    rules: list[Rule] = Field(..., min_length=1, description="First matching rule wins.")
    min_effect: Optional[float] = Field(None, gt=0, description="Smallest difference on `metric` worth acting on: "
                                        "the report says how many seeds per arm detect it with 80 % power.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return _check_metric(v)


def _check_metric(name: str) -> str:
    from ada_slm.metrics import METRICS, RUN_METRICS

    if name not in METRICS and name not in RUN_METRICS:
        raise ValueError(f"unknown metric {name!r} (one of: {', '.join((*METRICS, *RUN_METRICS))})")
    return name


class Study(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict, description="A run config shared by every arm.")
    arms: dict[str, dict[str, Any]] = Field(..., description="Arm name -> overrides of defaults (nested or "
                                            "key.sub keys).")
    baseline: str = Field(..., description="The arm every comparison is made against.")
    include_base: bool = Field(True, description="Also evaluate the base model without an adapter ('base').")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    scale: dict[str, ScalePreset] = Field(default_factory=dict)
    decision: Optional[Decision] = None
    followup_of: Optional[str] = Field(None, description="Study whose best arm `champion:` references use.")
    equivalence_margins: dict[str, float] = Field(default_factory=dict, description="Metric -> margin of the "
                                                  "equivalence test (TOST) for arms that differ only in batch split "
                                                  "(default: 10 % of the baseline's mean).")

    @field_validator("equivalence_margins")
    @classmethod
    def _known_margins(cls, v: dict[str, float]) -> dict[str, float]:
        for name, margin in v.items():
            _check_metric(name)
            if not margin > 0:
                raise ValueError(f"margin of {name} must be > 0")
        return v

    @model_validator(mode="after")
    def _check(self):
        if not self.arms:
            raise ValueError("arms: a study needs at least one arm")
        if BASE_ARM in self.arms:
            raise ValueError(f"arms: '{BASE_ARM}' is reserved for the untrained base model")
        if self.baseline not in self.arms:
            raise ValueError(f"baseline: {self.baseline!r} is not an arm ({', '.join(self.arms)})")
        for name, preset in self.scale.items():
            for arm in preset.arms:
                if arm not in self.arms:
                    raise ValueError(f"scale.{name}.arms: unknown arm {arm!r}")
        if self.decision:
            for q, spec in self.decision.questions.items():
                for arm in (spec.compare, spec.against):
                    if arm not in self.arms and arm != BASE_ARM:
                        raise ValueError(f"decision.questions.{q}: unknown arm {arm!r}")
            for i, rule in enumerate(self.decision.rules):
                for q in rule.when:
                    if q not in self.decision.questions:
                        raise ValueError(f"decision.rules.{i}.when: unknown question {q!r}")
        return self


@dataclass
class RunSpec:
    arm: str
    seed: int
    run_dir: Path
    export_dir: Path
    train: Optional[dict]  # resolved TrainConfig as a dict; None for the base arm
    base: str
    eval: dict

    @property
    def key(self) -> str:
        return f"{self.arm}/seed{self.seed}"


def load_study(path: str | Path) -> Study:
    raw = load_yaml(path)
    try:
        return Study.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(path))) from None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.endswith("data.mix"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _as_overrides(d: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in _flatten(d).items()]


def expand(study: Study, source: str, scale: str | None = None, only: list[str] | None = None,
           seeds: list[int] | None = None, results_root: str | Path = "results",
           exports_root: str | Path = "exports") -> list[RunSpec]:
    """Every (arm, seed) run of the study, with its resolved config, in a stable order (base first)."""
    preset = ScalePreset()
    if scale is not None:
        if scale not in study.scale:
            raise UserError(f"{source}: no scale preset {scale!r} (defined: {', '.join(study.scale) or 'none'})")
        preset = study.scale[scale]
    seeds = seeds or preset.seeds or study.seeds
    eval_settings = study.eval.model_copy(update=preset.eval)
    try:
        eval_settings = EvalSettings.model_validate(eval_settings.model_dump())
    except ValidationError as e:
        raise UserError(format_validation_error(e, f"{source} (scale {scale}.eval)")) from None
    arm_names = ([BASE_ARM] if study.include_base else []) + list(study.arms)
    if only:
        unknown = [a for a in only if a not in arm_names]
        if unknown:
            raise UserError(f"--only {unknown[0]!r}: not an arm of {study.name} ({', '.join(arm_names)})")
        arm_names = [a for a in arm_names if a in only]
    specs = []
    for arm in arm_names:
        # defaults ← preset ← arm ← preset's per-arm tweak: an arm keeps what makes it different
        overrides = _as_overrides(preset.overrides)
        if arm != BASE_ARM:
            overrides += _as_overrides(study.arms[arm]) + _as_overrides(preset.arms.get(arm, {}))
        cfg = build_config(study.defaults, overrides, source=f"{source} (arm {arm})")
        for seed in seeds:
            run_dir = Path(results_root) / study.name / arm / f"seed{seed}"
            export_dir = Path(exports_root) / study.name / arm / f"seed{seed}"
            train = None
            if arm != BASE_ARM:
                seeded = cfg.model_copy(update={"seed": seed, "out_dir": str(run_dir),
                                                "export_dir": str(export_dir)})
                train = seeded.model_dump()
            specs.append(RunSpec(arm, seed, run_dir, export_dir, train, cfg.base, eval_settings.model_dump()))
    return specs


def validate_models(specs: list[RunSpec]) -> None:
    """Fail before anything runs if a base model can't be found (never mid-study)."""
    for base in sorted({s.base for s in specs}):
        models.resolve(base)


def record_of(spec: RunSpec) -> dict | None:
    path = spec.run_dir / "record.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_complete(spec: RunSpec) -> bool:
    rec = record_of(spec)
    return bool(rec and rec.get("status", {}).get("state") == "complete" and rec.get("eval"))


def state_of(spec: RunSpec) -> str:
    rec = record_of(spec)
    if rec is None:
        return "pending"
    if is_complete(spec):
        return "done"
    state = rec.get("status", {}).get("state")
    return "failed" if state == "failed" else "pending"


# ------------------------------------------------------------------------------------------ one run
def execute_run(run_dir: Path) -> int:
    """Train (unless base) and evaluate one run described by <run_dir>/spec.json. Runs in its own process."""
    from ada_slm import tracking
    from ada_slm.config import TrainConfig
    from ada_slm.evaluate import GenerationSettings, evaluate
    from ada_slm.train import run as train_run

    spec = json.loads((run_dir / "spec.json").read_text())
    settings = GenerationSettings(batch_size=spec["eval"]["batch_size"], max_new_tokens=spec["eval"]["max_new_tokens"])
    record_path = run_dir / "record.json"
    track = tracking.Tracking.model_validate(spec["tracking"]) if spec.get("tracking") else None
    tracker = tracking.open_tracker(track, run_dir)
    record = {"status": {"state": "interrupted"}}
    try:
        if spec["train"] is None:
            record = {"config": {"base": spec["base"], "arm": BASE_ARM}, "status": {"state": "running"},
                      "train": None, "eval": None, "meta": {"seed": spec["seed"]}}
            adapter = None
            loaded = None
            if tracker:
                tracker.params({"base": spec["base"], "arm": BASE_ARM, "adapter": "none"})
        else:
            loaded = None
            cfg = TrainConfig.model_validate(spec["train"])
            existing = json.loads(record_path.read_text()) if record_path.is_file() else None
            if existing and existing.get("status", {}).get("state") == "complete":
                record = existing  # trained already; only the evaluation is missing
            else:
                if existing and existing.get("status", {}).get("state") == "failed":
                    record_path.unlink()  # a failed run starts over
                    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
                record, model, tokenizer = train_run(cfg, resume=(run_dir / "checkpoint.pt").is_file(), quiet=True,
                                                     return_model=True, tracker=tracker)
                if record["status"]["state"] != "complete":
                    return 2
                # evaluate the weights just trained (the same ones saved as the adapter) without reloading them
                loaded = (model.merge_and_unload(), tokenizer)
            adapter = record["train"]["adapter_dir"]
        summary = evaluate(spec["base"], adapter, spec["eval"]["suite"], settings, run_dir,
                           limit=spec["eval"]["limit"], model_and_tokenizer=loaded)
        record["eval"] = summary
        record["status"] = {"state": "complete", "reason": None}
        record.setdefault("meta", {})["arm"] = spec["arm"]
        write_json(record_path, record)
        if tracker:
            last_step = len(record["train"]["steps"]) if record.get("train") else 0
            tracker.metrics(last_step, tracking.eval_metrics(summary))
        return 0
    finally:
        if tracker:
            tracker.end(record.get("status", {}).get("state", "failed"))


# ------------------------------------------------------------------------------------------ executors
def run_in_subprocess(run_dir: str, cwd: str | None = None) -> tuple[int, str, float]:
    """(exit code, stderr tail, seconds) of `ada-slm study exec RUN_DIR` in a fresh process. This is the body
    of a Ray task too: the run's own process keeps its memory and threads apart from the worker's."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "ada_slm.cli", "study", "exec", run_dir], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=cwd if cwd and Path(cwd).is_dir() else None)
    return proc.returncode, proc.stderr[-4000:], time.perf_counter() - start


def exec_run(run_dir: Path) -> int:
    """`ada-slm study exec RUN_DIR`: execute_run, with a user error recorded as the run's failure reason."""
    try:
        return execute_run(run_dir)
    except UserError as e:
        path = run_dir / "record.json"
        rec = json.loads(path.read_text()) if path.is_file() else {}
        write_json(path, {**rec, "status": {"state": "failed", "reason": str(e)}})
        print(f"error: {e}", file=sys.stderr)
        return 1


# What every run imports (torch, transformers, peft: ≈ 8 s per process on 2 cores). The fork server imports it
# once; each run is then a fresh process forked from it, isolated as before but without paying the imports again.
PRELOAD = ["torch", "transformers", "transformers.modeling_utils", "transformers.generation", "peft",
           "ada_slm.train", "ada_slm.evaluate", "ada_slm.study"]


def _forked_run(run_dir: str, log_path: str) -> None:
    """Body of a run forked from the fork server: stdout discarded, stderr to <run_dir>/run.log."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    sys.exit(exec_run(Path(run_dir)))


class LocalExecutor:
    """One run at a time on this machine, each in its own process (Ctrl-C interrupts the running one). Runs are
    forked from a fork server that has imported torch/transformers/peft once (measured: ≈ 8 s saved per run);
    where the platform has no fork server, each run is a fresh `ada-slm study exec` subprocess."""

    def run(self, specs: list[RunSpec], started, finished) -> None:
        import multiprocessing

        forkserver = "forkserver" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver") if forkserver else None
        if ctx:
            ctx.set_forkserver_preload(PRELOAD)
        for s in specs:
            started(s)
            start = time.perf_counter()
            if ctx:
                log = s.run_dir / "run.log"
                proc = ctx.Process(target=_forked_run, args=(str(s.run_dir), str(log)), name=f"ada-slm {s.key}")
                proc.start()
                try:
                    proc.join()
                except KeyboardInterrupt:
                    os.kill(proc.pid, signal.SIGINT)
                    proc.join(timeout=30)
                    if proc.exitcode is None:
                        proc.kill()
                    raise
                err = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
                code = proc.exitcode
            else:
                code, err, _ = run_in_subprocess(str(s.run_dir))
            finished(s, code, err, time.perf_counter() - start)


class RayExecutor:
    """Every run is a Ray task (the same `study exec` process, started on whichever node Ray picks). Results
    go to the same results directory, so the cluster's nodes must share that storage and have ada-slm
    installed. Without an address a local Ray instance is started (and stopped at the end)."""

    def __init__(self, address: str | None = None, cpus_per_run: float | None = None,
                 gpus_per_run: float | None = None):
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run

    def run(self, specs: list[RunSpec], started, finished) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'ray>=2.9'") from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"--address {self.address}: cannot connect to Ray ({str(e).splitlines()[0]})") \
                    from None
        try:
            total = ray.cluster_resources()
            # A run trains on CUDA whenever it sees a GPU: ask for one where the cluster has them, with a GPU's
            # share of its node's CPUs; else for a whole node's CPUs (Ray sets OMP_NUM_THREADS to num_cpus, so
            # torch uses exactly those cores and concurrent CPU runs don't fight over them).
            gpus = self.gpus_per_run if self.gpus_per_run is not None else (1 if total.get("GPU", 0) >= 1 else 0)
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")] or [{"CPU": 1}]
            node = max(nodes, key=lambda r: r.get("CPU", 1))
            share = max(1.0, node.get("GPU", 0)) if gpus else 1.0
            cpus = self.cpus_per_run or max(1, int(node.get("CPU", 1) // share))
            task = ray.remote(run_in_subprocess).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
            cwd = str(Path.cwd())
            pending = {}
            for s in specs:
                started(s)
                pending[task.remote(str(s.run_dir.resolve()), cwd)] = s
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    s = pending.pop(ready[0])
                    try:
                        code, err, seconds = ray.get(ready[0])
                    except ray.exceptions.RayError as e:  # the worker or its node died
                        code, err, seconds = 1, f"Ray task failed: {str(e).splitlines()[0]}", 0.0
                    finished(s, code, err, seconds)
            except KeyboardInterrupt:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
        finally:
            if started_here:
                ray.shutdown()


# ------------------------------------------------------------------------------------------ the runner
def run_study(study: Study, specs: list[RunSpec], console, results_root: str | Path = "results",
              executor=None, tracking_for=None) -> dict:
    """Run every incomplete spec in its own process (locally, or as Ray tasks); returns counts.
    `tracking_for(spec)` gives each run its `tracking.Tracking` (or None). Holds results/<study>/.lock."""
    from filelock import FileLock, Timeout
    from rich.live import Live
    from rich.table import Table

    executor = executor or LocalExecutor()
    root = Path(results_root) / study.name
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{root}/.lock: another `ada-slm study run` is running this study") from None
    states = {s.key: state_of(s) for s in specs}
    durations: list[float] = []
    failures: dict[str, str] = {}

    def table() -> Table:
        t = Table(title=f"study {study.name}")
        for col in ("run", "state"):
            t.add_column(col)
        for s in specs:
            colour = {"done": "green", "running": "yellow", "failed": "red"}.get(states[s.key], "white")
            t.add_row(s.key, f"[{colour}]{states[s.key]}[/]" + (f" ({failures[s.key]})" if s.key in failures else ""))
        todo = sum(1 for v in states.values() if v in ("pending", "running"))
        eta = f"{todo * (sum(durations) / len(durations)) / 60:.1f} min" if durations and todo else "—"
        counts = {k: sum(1 for v in states.values() if v == k) for k in ("done", "running", "failed", "pending")}
        t.caption = " · ".join(f"{k} {v}" for k, v in counts.items()) + f" · ETA {eta}"
        return t

    class _Lines:
        """Without a terminal (CI logs, pipes) a live table would print nothing until the end: one line per run."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, _table):
            pass

    done_count = [0]
    todo = [s for s in specs if states[s.key] != "done"]
    live_display = Live(table(), console=console, refresh_per_second=2, transient=False) if console.is_terminal \
        else _Lines()
    try:
        with live_display as live:
            def started(s: RunSpec) -> None:
                states[s.key] = "running"
                live.update(table())
                s.run_dir.mkdir(parents=True, exist_ok=True)
                track = tracking_for(s) if tracking_for else None
                spec_tracking = track.model_dump() if track else None
                write_json(s.run_dir / "spec.json", {"arm": s.arm, "seed": s.seed, "base": s.base,
                                                     "train": s.train, "eval": s.eval, "tracking": spec_tracking})

            def finished(s: RunSpec, code: int, err: str, seconds: float) -> None:
                durations.append(seconds)
                if code == 0:
                    states[s.key] = "done"
                else:
                    states[s.key] = "failed"
                    rec = record_of(s) or {}
                    reason = (rec.get("status") or {}).get("reason") or (err.strip().splitlines() or ["?"])[-1]
                    failures[s.key] = reason[:120]
                    if not rec or rec.get("status", {}).get("state") != "failed":
                        write_json(s.run_dir / "record.json", {**rec, "status": {"state": "failed",
                                                                              "reason": reason}})
                live.update(table())
                if not console.is_terminal:
                    done_count[0] += 1
                    why = f": {failures[s.key]}" if s.key in failures else ""
                    console.print(f"[{done_count[0]}/{len(todo)}] {s.key} {states[s.key]} in {seconds:.0f}s{why}",
                                  highlight=False, markup=False)

            executor.run(todo, started, finished)
    finally:
        lock.release()
    return {k: sum(1 for v in states.values() if v == k) for k in ("done", "failed", "pending")}


def estimate_seconds(spec: RunSpec, tokens_per_s: float | None, mean_tokens: float | None) -> float | None:
    """Training time from measured throughput: tokens per example × examples × epochs ÷ tokens/s."""
    if spec.train is None or not tokens_per_s or not mean_tokens:
        return None
    t = spec.train
    n_train = t["data"]["size"] * (1 - t["data"]["val_fraction"])
    effective = t["batch"]["micro"] * t["batch"]["accum"]
    sequences = (t["max_steps"] * effective) if t["max_steps"] else n_train * t["epochs"]
    return sequences * mean_tokens / tokens_per_s


def measured_throughput(specs: list[RunSpec]) -> tuple[float | None, float | None]:
    """(tokens/s, tokens per sequence) from finished runs of these specs, if any."""
    rates, per_seq = [], []
    for s in specs:
        rec = record_of(s)
        if rec and rec.get("train") and rec["train"].get("tokens_per_s"):
            rates.append(rec["train"]["tokens_per_s"])
            steps = rec["train"]["steps"]
            per_seq.append(sum(x["tokens"] for x in steps) / max(1, sum(x["sequences"] for x in steps)))
    if not rates:
        return None, None
    return sum(rates) / len(rates), sum(per_seq) / len(per_seq)


def differences(a: dict | None, b: dict | None) -> dict[str, tuple]:
    """Config fields that differ between two resolved train configs (None = base model)."""
    if a is None or b is None:
        return {"adapter": ("none" if a is None else "LoRA", "none" if b is None else "LoRA")}
    ignore = {"seed", "out_dir", "export_dir"}
    fa, fb = _flatten(a), _flatten(b)
    out = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
           if k not in ignore and fa.get(k) != fb.get(k)}
    if "batch.micro" in out or "batch.accum" in out:  # a split is named by both numbers
        for k in ("batch.micro", "batch.accum"):
            out[k] = (fa[k], fb[k])
    ea, eb = a["batch"]["micro"] * a["batch"]["accum"], b["batch"]["micro"] * b["batch"]["accum"]
    if ea != eb:
        out["batch.effective"] = (ea, eb)
    sa, sb = optimizer_steps(a), optimizer_steps(b)
    if sa != sb:
        out["optimizer steps"] = (sa, sb)
    return out


def optimizer_steps(cfg: dict) -> int:
    """Optimizer steps of a run as train.py counts them: max_steps, or ⌈epochs × ⌈train examples / effective
    batch⌉⌉ (train examples ≈ size × (1 - val_fraction): the builder splits by template)."""
    if cfg.get("max_steps"):
        return int(cfg["max_steps"])
    n_train = int(cfg["data"]["size"] * (1 - cfg["data"]["val_fraction"]))
    effective = cfg["batch"]["micro"] * cfg["batch"]["accum"]
    return max(1, math.ceil(cfg["epochs"] * math.ceil(n_train / effective)))
