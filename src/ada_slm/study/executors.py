"""Running a study's runs: the one-run pipeline (train, then evaluate), the executors that start runs (local
processes or Ray tasks) and the runner that skips finished runs and records failures.

Every run is its own process — `ada-slm study exec RUN_DIR`, or a fork of a fork server that imported torch
once — reading <run_dir>/spec.json and writing <run_dir>/record.json (records.py), so the local and the Ray
executor produce the same files, and a killed study continues where it stopped. A run holds its folder's lock
(runlock.py) from start to end, and every process of a local study dies with the runner (lifeline.py), so a
`kill -9` of the runner leaves nothing training and a restarted runner never shares a run folder. The runner
reports progress through callbacks (`RunnerEvents`); drawing it is the caller's business (the CLI's live table
or log lines).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from ada_slm.errors import UserError
from ada_slm.run import lifeline, records, runlock, tracking
from ada_slm.study.spec import BASE_ARM, RunSpec, Study, read_spec_file, state_of, write_spec_file
from ada_slm.study.twins import find_twin, reuse_twin


# ------------------------------------------------------------------------------------------ one run
def execute_run(run_dir: Path) -> int:
    """Train (unless base) and evaluate one run described by <run_dir>/spec.json, holding the run folder's lock
    throughout (RunFolderBusy if another process holds it). Runs in its own process."""
    with runlock.hold(run_dir):
        return _execute_locked(run_dir)


def _execute_locked(run_dir: Path) -> int:
    # evaluate and train import torch and transformers (seconds): only a run's own process needs them
    from ada_slm.run.eval_cache import STUDY_CACHE_DIR, EvalCache
    from ada_slm.run.evaluate import GenerationSettings, evaluate

    started_at = time.perf_counter()
    spec = read_spec_file(run_dir)  # a FIFO, a damaged or a missing spec: one line, the run marked failed
    settings = GenerationSettings(batch_size=spec.eval.batch_size, max_new_tokens=spec.eval.max_new_tokens)
    tracker = tracking.open_tracker(spec.tracking, run_dir)
    record = records.RunRecord(status=records.Status(state=records.INTERRUPTED))
    try:
        if spec.train is None:  # the base arm: an eval-only record, its config only the base model
            record = records.RunRecord(
                facts=records.RunFacts(base=spec.base, arm=BASE_ARM),
                config=None,
                status=records.Status(state=records.RUNNING),
                train=None,
                eval=None,
                meta={"seed": spec.seed},
            )
            adapter = None
            loaded = None
            if tracker:
                tracker.params({"base": spec.base, "arm": BASE_ARM, "adapter": "none"})
        else:
            record, loaded = _trained(spec, run_dir, tracker)
            if not records.is_trained(record):
                return 2
            adapter = records.adapter_dir(record)
        # the study's runs share one eval cache: the base arm's seeds generate once, a re-run after a crash not again
        cache = EvalCache(run_dir.parent.parent / STUDY_CACHE_DIR)  # results/<study>/.eval-cache
        summary = evaluate(
            spec.base,
            adapter,
            spec.eval.suite,
            settings,
            run_dir,
            limit=spec.eval.limit,
            model_and_tokenizer=loaded,
            cache=cache,
        )
        record.eval = records.EvalSection.model_validate(summary)
        record.status = records.Status(state=records.COMPLETE, reason=None)
        if record.meta is None:
            record.meta = {}
        record.meta["arm"] = spec.arm
        # the whole run in its process (model and data set-up, training, held-out, export, evaluation): what
        # `study plan` estimates from (analysis/plan.py)
        record.meta["run_wall_s"] = time.perf_counter() - started_at
        runlock.check(run_dir)
        records.write_record(run_dir, record)
        if tracker:
            last_step = len(record.train.steps) if record.train is not None else 0
            tracker.metrics(last_step, tracking.eval_metrics(summary))
        return 0
    finally:
        if tracker:
            tracker.end(record.status.state or "failed")


def _trained(spec, run_dir: Path, tracker) -> tuple[records.RunRecord, tuple | None]:
    """(the run's trained record, the model and tokenizer to evaluate if they are in memory): the record of an
    earlier process that trained it, a twin's (twins.py), or a training run now (resumed from its checkpoint)."""
    from ada_slm.run.train import train  # imports torch and transformers: only a run's own process gets here

    record_path = run_dir / "record.json"
    existing = records.read_record_or_none(run_dir)
    if records.is_trained(existing):
        return existing, None  # trained already; only the evaluation is missing
    if record_path.is_file() and records.state(existing) in (records.FAILED, None):
        record_path.unlink()  # a failed (or corrupt) run starts over
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    resume = (run_dir / "checkpoint.pt").is_file()
    twin = None if resume else find_twin(spec, run_dir)
    if twin is not None:  # these very steps were computed by another run of the study: not again
        return reuse_twin(spec.train, *twin), None
    trained = train(spec.train, resume=resume, quiet=True, tracker=tracker)
    if not records.is_trained(trained.record):
        return trained.record, None
    # evaluate the weights just trained (the same ones saved as the adapter) without reloading them
    return trained.record, (trained.model.merge_and_unload(), trained.tokenizer)


# ------------------------------------------------------------------------------------------ executors
def run_in_subprocess(run_dir: str, cwd: str | None = None) -> tuple[int, str, float]:
    """(exit code, stderr tail, seconds) of `ada-slm study exec RUN_DIR` in a fresh process. This is the body
    of a Ray task too: the run's own process keeps its memory and threads apart from the worker's."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[lifeline.PARENT_ENV] = str(os.getpid())  # the run dies with this process (the runner or a Ray worker)
    proc = subprocess.run(
        [sys.executable, "-m", "ada_slm.app.cli", "study", "exec", run_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd if cwd and Path(cwd).is_dir() else None,
    )
    return proc.returncode, proc.stderr[-4000:], time.perf_counter() - start


def exec_run(run_dir: Path) -> int:
    """`ada-slm study exec RUN_DIR`: execute_run, with a user error recorded as the run's failure reason. A run
    folder held by another process is left as it is: one line, exit status runlock.BUSY_EXIT."""
    try:
        with runlock.hold(run_dir):
            try:
                return execute_run(run_dir)
            except UserError as e:
                runlock.check(run_dir)  # a lost lock (RunLockLost) records nothing
                records.mark_failed(run_dir, str(e))
                print(f"error: {e}", file=sys.stderr)
                return 1
    except runlock.RunFolderBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return runlock.BUSY_EXIT
    except UserError as e:  # the lock was lost, or the folder cannot be created: nothing of ours to record in
        print(f"error: {e}", file=sys.stderr)
        return 1


# What every run imports (torch, transformers, peft: ≈ 8 s per process on 2 cores). The fork server imports it
# once; each run is then a fresh process forked from it, isolated as before but without paying the imports again.
# lifeline comes first: importing it binds the fork server's life to the runner's.
PRELOAD = [
    "ada_slm.run.lifeline",
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.generation",
    "peft",
    "ada_slm.run.train",
    "ada_slm.run.evaluate",
    "ada_slm.study.executors",
]


def _forked_run(run_dir: str, log_path: str, threads: int) -> None:
    """Body of a run forked from the fork server: dies with the fork server and with the runner; stdout
    discarded, stderr to <run_dir>/run.log; `threads` intra-op threads (its share of the machine's)."""
    lifeline.die_with_parent(lifeline.bound_pid)  # the fork server (its pid, where it was bound to the runner)
    lifeline.die_with_multiprocessing_parent()  # the runner
    os.environ["OMP_NUM_THREADS"] = str(threads)  # hardware.threads() reads it: the run's record says so too
    import torch  # imported by the fork server already (PRELOAD)

    torch.set_num_threads(threads)
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    sys.exit(exec_run(Path(run_dir)))


def start_fork_server() -> None:
    """Start multiprocessing's fork server (if it is not running) bound to this process: lifeline, its first
    import, reads our pid from the environment and asks the kernel to kill the server when we die. (The server
    is started from the calling thread: the kernel's parent-death signal follows the thread that forked.)"""

    os.environ[lifeline.PARENT_ENV] = str(os.getpid())
    try:
        forkserver.ensure_running()
    finally:
        os.environ.pop(lifeline.PARENT_ENV, None)


def _default_jobs() -> int:
    from ada_slm.run import hardware  # imports torch: only where runs start

    return hardware.default_jobs()


def threads_per_run(jobs: int, cpus: int | None = None) -> int:
    """Intra-op threads of each of `jobs` concurrent runs: the machine's threads (hardware.threads) split evenly,
    at least one each."""
    from ada_slm.run import hardware

    return max(1, (cpus or hardware.threads()) // jobs)


class LocalExecutor:
    """`jobs` runs at a time on this machine (the machine's threads split between them), each in its own
    process holding its run folder's lock; Ctrl-C interrupts the running ones. Runs are forked from a fork server
    that has imported torch/transformers/peft once (measured: ≈ 8 s saved per run); where the platform has no
    fork server, each run is a fresh `ada-slm study exec` subprocess, one at a time."""

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise UserError(f"--jobs {jobs}: must be at least 1")
        self.jobs = jobs

    def run(self, specs: list[RunSpec], started, finished) -> None:

        if "forkserver" not in multiprocessing.get_all_start_methods():
            for spec in specs:
                started(spec)
                code, err, seconds = run_in_subprocess(str(spec.run_dir))
                finished(spec, code, err, seconds)
            return
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        start_fork_server()
        threads = threads_per_run(self.jobs)
        queue = list(specs)
        running: dict[int, tuple[Any, RunSpec, float]] = {}  # process sentinel → (process, spec, start time)
        try:
            while queue or running:
                while len(running) < self.jobs and (s := _next_startable(queue, running)) is not None:
                    queue.remove(s)
                    started(s)
                    proc = ctx.Process(
                        target=_forked_run,
                        args=(str(s.run_dir), str(s.run_dir / "run.log"), threads),
                        name=f"ada-slm {s.key}",
                    )
                    proc.start()
                    running[proc.sentinel] = (proc, s, time.perf_counter())
                for sentinel in multiprocessing.connection.wait(list(running)):
                    assert isinstance(sentinel, int)  # wait returns the sentinels it was given
                    proc, s, start = running.pop(sentinel)
                    proc.join()
                    log = s.run_dir / "run.log"
                    err = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
                    finished(s, proc.exitcode, err, time.perf_counter() - start)
        except KeyboardInterrupt:
            _interrupt([proc for proc, _, _ in running.values()])
            raise


def _next_startable(queue: list[RunSpec], running: dict) -> RunSpec | None:
    """The first queued run that computes steps no running run computes (twins.py): a twin started beside the run
    it repeats would train the same steps again instead of waiting to reuse them."""
    busy = {s.train.steps_identity() for _, s, _ in running.values() if s.train is not None} - {None}
    return next((s for s in queue if s.train is None or s.train.steps_identity() not in busy), None)


def _interrupt(processes: list) -> None:
    """Ctrl-C: every running run is interrupted (it records `interrupted` and keeps its checkpoint), then waited
    for; one that does not stop within 30 s is killed (its last checkpoint is kept)."""
    for proc in processes:
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for proc in processes:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            proc.kill()
            proc.join()


class RayExecutor:
    """Every run is a Ray task (the same `study exec` process, started on whichever node Ray picks). Results
    go to the same results directory, so the cluster's nodes must share that storage and have ada-slm
    installed. Without an address a local Ray instance is started (and stopped at the end)."""

    def __init__(
        self, address: str | None = None, cpus_per_run: float | None = None, gpus_per_run: float | None = None
    ):
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run

    def run(self, specs: list[RunSpec], started, finished) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'ray>=2.9'") from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"--address {self.address}: cannot connect to Ray ({str(e).splitlines()[0]})") from None
        try:
            total = ray.cluster_resources()
            # A run trains on CUDA whenever it sees a GPU: ask for one where the cluster has them, with a GPU's
            # share of its node's CPUs; else for a node's CPUs split as the local executor splits this machine's
            # (--jobs' default, hardware.STUDY_JOBS: Ray sets OMP_NUM_THREADS to num_cpus, so torch uses exactly
            # those cores, concurrent CPU runs don't fight over them, and a run computes with the same threads
            # as under the local executor).
            gpus = self.gpus_per_run if self.gpus_per_run is not None else (1 if total.get("GPU", 0) >= 1 else 0)
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")] or [{"CPU": 1}]
            node = max(nodes, key=lambda r: r.get("CPU", 1))
            share = max(1.0, node.get("GPU", 0)) if gpus else 1.0
            split = 1 if gpus else _default_jobs()
            cpus = self.cpus_per_run or max(1, int(node.get("CPU", 1) // share) // split)
            task = ray.remote(run_in_subprocess).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
            cwd = str(Path.cwd())
            pending = {}
            for s in specs:
                started(s)
                # ray's .remote overloads take run_in_subprocess (cwd has a default) for a 1-argument function
                pending[task.remote(str(s.run_dir.resolve()), cwd)] = s  # type: ignore[call-arg]
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
def _in_running_order(specs: list[RunSpec]) -> list[RunSpec]:
    """The base arm's first seed first and its other seeds last: they evaluate the same model (an eval-cache hit
    once the first has generated), so started beside it they would only wait for its lock, holding a slot of
    `--jobs` (measured: 64 s of a 2-core study). Likewise a run whose steps an earlier run computes (the same
    TrainConfig.steps_identity) goes after the others, so that its twin has finished when it starts and it is
    not trained again (find_twin)."""
    base = [s for s in specs if s.train is None]
    seen: set[str | None] = set()
    first: list[RunSpec] = []
    repeats: list[RunSpec] = []
    for s, train in ((s, s.train) for s in specs if s.train is not None):
        identity = train.steps_identity()
        (repeats if identity is not None and identity in seen else first).append(s)
        seen.add(identity)
    return base[:1] + first + repeats + base[1:]


class RunnerEvents(Protocol):
    """What a runner tells its display: every state change of a run (pending/running/done/failed/corrupt)."""

    def changed(self, spec: RunSpec, state: str, detail: str, seconds: float | None) -> None: ...


def run_study(
    study: Study,
    specs: list[RunSpec],
    results_root: str | Path = "results",
    executor=None,
    tracking_for: Callable | None = None,
    events: RunnerEvents | None = None,
) -> dict:
    """Run every unfinished spec in its own process (locally, or as Ray tasks); returns counts of done, failed
    and pending runs. `tracking_for(spec)` gives each run its `tracking.Tracking` (or None); `events` hears of
    every state change. Holds results/<study>/.lock, so two runners never work on one study."""

    executor = executor or LocalExecutor()
    root = Path(results_root) / study.name
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{root}/.lock: another `ada-slm study run` is running this study") from None
    states = {s.key: state_of(s) for s in specs}

    def started(s: RunSpec) -> None:
        states[s.key] = "running"
        track = tracking_for(s) if tracking_for else None
        try:
            with runlock.hold(s.run_dir):
                write_spec_file(s, track)
        except runlock.RunFolderBusy:
            pass  # another process trains this run: its own process will be refused too, and said so
        if events:
            events.changed(s, "running", "", None)

    def finished(s: RunSpec, code: int, err: str, seconds: float) -> None:
        reason = ""
        if code == 0:
            states[s.key] = "done"
        elif code == runlock.BUSY_EXIT:  # refused: the folder belongs to another process, which records it
            states[s.key] = "failed"
            reason = (err.strip().splitlines() or ["?"])[-1].removeprefix("error: ")
        else:
            states[s.key] = "failed"
            try:
                with runlock.hold(s.run_dir):
                    rec = records.read_record_or_none(s.run_dir)
                    recorded = rec.status.reason if rec is not None else None
                    reason = (
                        recorded
                        or (
                            err.strip().splitlines()
                            or [
                                f"the run's process exited with code {code} before recording a reason (its output "
                                "above "
                                "says why)"
                            ]
                        )[-1]
                    )
                    if records.state(rec) != records.FAILED:
                        records.mark_failed(s.run_dir, reason)
            except runlock.RunFolderBusy as e:
                reason = str(e)
        if events:
            events.changed(s, states[s.key], reason, seconds)

    try:
        executor.run(_in_running_order([s for s in specs if states[s.key] != "done"]), started, finished)
    finally:
        lock.release()
    return {k: sum(1 for v in states.values() if v == k) for k in ("done", "failed", "pending")}
