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

from conftest import CLI, DATA

STUDY = DATA / "tiny-kill.yaml"


def run_cli(study, results, *extra) -> subprocess.Popen:
    return subprocess.Popen(CLI + ["study", "run", str(study), "--no-report", "--results", str(results / "results"),
                                   "--exports", str(results / "exports"), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return None


def kill_tree(runner: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the runner, nothing else: first stop it and every process under it (so none can start another
    while they are listed), list them, then kill the runner and let the others go on — with the runner gone,
    it is up to them to die. Returns the runner's descendants."""
    root = psutil.Process(runner.pid)
    root.suspend()
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


def test_sigkill_of_the_runner_leaves_no_process_and_starts_no_run(tmp_path):
    """A run that would train for hours: the runner is SIGKILLed while it trains; the fork server, the run and
    every other process the runner started die with it, and the next run never starts."""
    raw = yaml.safe_load(STUDY.read_text())
    raw["defaults"].update(max_steps=100_000, checkpoint_every=10_000, val_every=10_000)
    study = tmp_path / "long.yaml"
    study.write_text(yaml.safe_dump(raw))
    runner = run_cli(study, tmp_path, "--only", "r4")
    run_dir = tmp_path / "results" / "tinykill" / "r4"
    while runner.poll() is None and not ((read_json(run_dir / "seed0" / "record.json") or {}).get("train") or {}).get("steps"):
        time.sleep(0.05)
    assert runner.poll() is None, runner.stderr.read()
    descendants = kill_tree(runner)
    assert len(descendants) >= 2  # the fork server and the run (and multiprocessing's resource tracker)
    watch = DeathWatch(descendants)
    watch.start()
    assert watch.survivors() == []
    assert not (run_dir / "seed1").exists()  # no new run started
    record = read_json(run_dir / "seed0" / "record.json")
    assert record["status"]["state"] == "running"  # the killed run stopped where it was, to be resumed
    # the kernel dropped the dead run's lock: the next process takes it, and names the killed owner
    from ada_slm import runlock

    key = runlock.acquire(run_dir / "seed0")
    runlock.release(key)
    owners = [json.loads(line) for line in (run_dir / "seed0" / runlock.OWNERS).read_text().splitlines()]
    assert owners[-3]["event"] == "acquired" and owners[-3]["pid"] in {p.pid for p in descendants}
    assert owners[-2]["event"] == "acquired" and owners[-2]["previous"]["pid"] == owners[-3]["pid"]
