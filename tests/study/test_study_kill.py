"""`kill -9` of `study run`: nothing of it survives, and killed anywhere and started again, a study ends with
the records of an uninterrupted one, every run complete once and no run folder ever owned by two processes."""

import json
import random
import signal
import subprocess
import threading
import time

import psutil
import pytest
import yaml

from ada_slm.run import hardware
from tests.shared import CLI, DATA

STUDY = DATA / "tiny-kill.yaml"


def run_cli(study, root, *extra) -> subprocess.Popen:
    """`study run` into root/results and root/exports; its stderr goes to root/runner-<n>.log."""
    root.mkdir(exist_ok=True)
    logs = sorted(root.glob("runner-*.log"))
    with open(root / f"runner-{len(logs)}.log", "w") as log:
        return subprocess.Popen(
            CLI
            + [
                "study",
                "run",
                str(study),
                "--no-report",
                "--results",
                str(root / "results"),
                "--exports",
                str(root / "exports"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return None


def kill_tree(runner: subprocess.Popen) -> list[psutil.Process] | None:
    """SIGKILL the runner, nothing else: first stop it and every process under it (so none can start another
    while they are listed), list them, then kill the runner and let the others go on — with the runner gone,
    it is up to them to die. Returns the runner's descendants (None if the runner had already ended)."""
    try:
        root = psutil.Process(runner.pid)
        root.suspend()
    except psutil.NoSuchProcess:
        return None
    stopped = {}
    while True:  # a process forked while we stop its parent is caught by the next pass
        new = [p for p in root.children(recursive=True) if p.pid not in stopped]
        if not new:
            break
        for p in new:
            try:
                p.suspend()
                stopped[p.pid] = p
            except psutil.NoSuchProcess:
                pass
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    for p in stopped.values():
        try:
            p.resume()
        except psutil.NoSuchProcess:
            pass
    return list(stopped.values())


def is_gone(p: psutil.Process) -> bool:
    try:  # is_running compares the start time too, so a reused pid is not mistaken for the process
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class DeathWatch(threading.Thread):
    """Polls processes until each is gone and notes when it was first seen gone (an upper bound of its death)."""

    def __init__(self, procs: list[psutil.Process], patience_s: float = 180):
        super().__init__(daemon=True)
        self.procs, self.patience_s, self.died = procs, patience_s, {}

    def run(self):
        deadline = time.time() + self.patience_s
        while time.time() < deadline and len(self.died) < len(self.procs):
            for p in self.procs:
                if p.pid not in self.died and is_gone(p):
                    self.died[p.pid] = time.time()
            time.sleep(0.01)

    def survivors(self) -> list[str]:
        self.join()
        out = []
        for p in self.procs:
            if p.pid not in self.died:
                try:
                    out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                    p.kill()  # leave nothing running after the test
                except psutil.NoSuchProcess:
                    pass
        return out


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_of_the_runner_leaves_no_process_and_starts_no_run(tmp_path, jobs):
    """Runs that would train for hours: the runner is SIGKILLed while they train (one, or two side by side with
    --jobs 2); the fork server, the runs and every other process the runner started die with it, and no next
    run starts."""
    raw = yaml.safe_load(STUDY.read_text())
    raw["defaults"].update(max_steps=100_000, checkpoint_every=10_000, val_every=10_000)
    raw["seeds"] = [0, 1, 2]
    study = tmp_path / "long.yaml"
    study.write_text(yaml.safe_dump(raw))
    runner = run_cli(study, tmp_path, "--only", "r4", "--jobs", str(jobs))
    run_dir = tmp_path / "results" / "tinykill" / "r4"

    def training() -> int:  # runs with a step recorded
        return sum(
            bool(((read_json(run_dir / f"seed{k}" / "record.json") or {}).get("train") or {}).get("steps"))
            for k in range(3)
        )

    while runner.poll() is None and training() < jobs:
        time.sleep(0.05)
    assert runner.poll() is None, (tmp_path / "runner-0.log").read_text()
    descendants = kill_tree(runner)
    assert len(descendants) >= 1 + jobs  # the fork server and the runs (and multiprocessing's resource tracker)
    watch = DeathWatch(descendants)
    watch.start()
    assert watch.survivors() == []
    running = [f"seed{k}" for k in range(jobs)]
    assert sorted(p.name for p in run_dir.iterdir()) == running  # no new run started
    for seed in running:
        record = read_json(run_dir / seed / "record.json")
        assert record["status"]["state"] == "running"  # the killed run stopped where it was, to be resumed
        assert record["meta"]["torch_threads"] == max(1, hardware.threads() // jobs)  # the machine's threads split
    # the kernel dropped the dead run's lock: the next process takes it, and names the killed owner
    from ada_slm.run import runlock

    key = runlock.acquire(run_dir / "seed0")  # (seed0 of either variant)
    runlock.release(key)
    owners = [json.loads(line) for line in (run_dir / "seed0" / runlock.OWNERS).read_text().splitlines()]
    assert owners[-3]["event"] == "acquired" and owners[-3]["pid"] in {p.pid for p in descendants}
    assert owners[-2]["event"] == "acquired" and owners[-2]["previous"]["pid"] == owners[-3]["pid"]


def progress(study_dir) -> int:
    """Events of the study so far, as its files show them: per run, spec written, each step recorded, trained,
    evaluated (4 runs × (1 + 4 + 1 + 1) = 28 for tiny-kill)."""
    n = 0
    for run in study_dir.glob("*/seed*"):
        record = read_json(run / "record.json") or {}
        n += (run / "spec.json").is_file() + len((record.get("train") or {}).get("steps") or [])
        n += (record.get("status") or {}).get("state") == "complete"
        n += bool((record.get("eval") or {}).get("metrics"))
    return n


def deterministic(run_dir) -> dict:
    record = json.loads((run_dir / "record.json").read_text())
    return {
        "state": record["status"]["state"],
        "losses": [s["loss"] for s in record["train"]["steps"]],
        "val": record["train"]["val"],
        "adapter": record["train"]["final_adapter_sha256"],
        "metrics": record["eval"]["metrics"],
        "outputs": [json.loads(line)["output"] for line in (run_dir / "eval.jsonl").open()],
    }


@pytest.mark.slow
def test_study_killed_anywhere_ends_as_an_uninterrupted_one(tmp_path):
    """tiny-kill (2 arms × 2 seeds, 4 steps) is SIGKILLed at 3 points drawn from a seeded RNG among its 28
    progress events and started again at once each time, then until it is done. Every run ends complete exactly
    once, no run folder ever had two owners at a time (its owners.jsonl, checked against when the test saw each
    killed process die), no process outlives its runner, and the records equal an uninterrupted study's."""
    from ada_slm.run import runlock

    # the uninterrupted reference runs beside the killed study (its own folders; the kill points are events, not
    # times): each runner spends much of its life importing on one core, so the two overlap well on two cores
    clean = run_cli(STUDY, tmp_path / "clean")
    root = tmp_path / "killed"
    study_dir = root / "results" / "tinykill"
    points = sorted(random.Random(24).sample(range(1, 28), 3))
    died, watches, kills = {}, [], 0
    runner = run_cli(STUDY, root)
    for point in points:
        while runner.poll() is None and progress(study_dir) < point:
            time.sleep(0.02)
        descendants = kill_tree(runner)
        if descendants is None:
            break
        died[runner.pid] = time.time()  # kill_tree waited for it
        kills += 1
        runner = run_cli(STUDY, root)  # at once, as someone would: the killed processes may still be dying
        watches.append(DeathWatch(descendants))
        watches[-1].start()
    for _ in range(3):  # a run refused because a killed owner was still dying fails this attempt: run again
        if runner.wait() == 0:
            break
        runner = run_cli(STUDY, root)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted(root.glob("runner-*.log")))
    assert runner.returncode == 0, logs
    assert clean.wait() == 0, (tmp_path / "clean" / "runner-0.log").read_text()
    assert kills == 3, f"the study ended before kill point {points[kills]}"
    for watch in watches:
        assert watch.survivors() == []
        died.update(watch.died)

    runs = sorted(p.relative_to(study_dir).as_posix() for p in study_dir.glob("*/seed*"))
    assert runs == ["r4/seed0", "r4/seed1", "r8/seed0", "r8/seed1"]
    for run in runs:
        events = [json.loads(line) for line in (study_dir / run / runlock.OWNERS).read_text().splitlines()]
        holder = None
        for e in events:
            if e["event"] == "acquired":
                assert e["found"] != "done", f"{run}: taken again after it was done: {e}"
                if holder is not None:  # the holder never released it: it was killed, and dead before this
                    assert e["previous"]["pid"] == holder and holder in died, f"{run}: {events}"
                    assert died[holder] <= e["since"], f"{run}: pid {e['pid']} took it while pid {holder} lived"
                holder = e["pid"]
            else:
                assert e["pid"] == holder, f"{run}: {events}"
                holder = None
        assert deterministic(study_dir / run) == deterministic(tmp_path / "clean" / "results" / "tinykill" / run), run
