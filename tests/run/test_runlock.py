"""One process at a time trains a run folder (runlock.py): a second trainer is refused in one line and writes
nothing; the lock dies with its holder; a lock file that was replaced stops the holder from writing its record."""

import fcntl
import json
import os
import signal
import subprocess
import time

import pytest

from ada_slm.run import runlock
from tests.shared import CLI

TRAIN = [
    "base=tiny-lfm2",
    "data.size=40",
    "lora.r=4",
    "batch.micro=2",
    "batch.accum=1",
    "max_length=200",
    "lr=1e-3",
    "log_every=1",
    "val_every=10000",
    "checkpoint_every=10000",
]


def owners(run_dir):
    return [json.loads(line) for line in (run_dir / runlock.OWNERS).read_text().splitlines()]


@pytest.mark.slow
def test_a_second_process_cannot_train_a_run_folder_in_use(tmp_path):
    """`ada-slm train` trains a run folder for hours; a second `ada-slm train` (tracked) and a `study exec` of the
    same folder are refused in one line naming the holder, and change nothing in it; once the holder is killed,
    the folder is free again. (On a main without the lock the second `train` trains the folder too and ends 0.)"""
    run_dir = tmp_path / "run"
    train = CLI + ["train", "--quiet", *TRAIN, f"out_dir={run_dir}"]
    holder = subprocess.Popen(
        train + ["max_steps=100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        record = run_dir / "record.json"
        while holder.poll() is None and not (record.is_file() and json.loads(record.read_text())["train"]["steps"]):
            time.sleep(0.05)
        assert holder.poll() is None, holder.stderr.read()
        second_train = CLI + ["train", "--quiet", "--track", "tensorboard", *TRAIN, f"out_dir={run_dir}", "max_steps=3"]
        for second, status in ((second_train, 1), (CLI + ["study", "exec", str(run_dir)], 75)):
            p = subprocess.run(second, capture_output=True, text=True, timeout=600)
            lines = p.stderr.strip().splitlines()
            assert p.returncode == status, p.stderr[-2000:]
            assert len(lines) == 1 and f"is being trained by pid {holder.pid} on " in lines[0], p.stderr
            assert lines[0].startswith(f"error: {run_dir / '.lock'}: ")
        assert json.loads(record.read_text())["status"]["state"] == "running"  # not marked failed by the refusals
        assert not (run_dir / "tensorboard").exists()  # the refused tracker wrote nothing either
        assert [(e["event"], e["pid"]) for e in owners(run_dir)] == [("acquired", holder.pid)]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    key = runlock.acquire(run_dir)  # the kernel dropped the dead holder's lock
    runlock.release(key)
    events = owners(run_dir)
    assert events[1]["event"] == "acquired" and events[1]["previous"]["pid"] == holder.pid
    assert events[1]["found"] == "running"
    assert events[2] == {**events[2], "event": "released", "pid": os.getpid(), "left": "running"}


def test_lock_is_reentrant_logged_and_released(tmp_path):
    run_dir = tmp_path / "a" / "seed0"
    run_dir.mkdir(parents=True)
    with runlock.hold(run_dir):
        with runlock.hold(run_dir):  # execute_run holds it, and train inside it again
            runlock.check(run_dir)
        runlock.check(run_dir)
        owner = json.loads((run_dir / runlock.LOCK).read_text())
        assert owner["pid"] == os.getpid()
    assert (run_dir / runlock.LOCK).read_text() == ""  # released: no owner named
    assert [e["event"] for e in owners(run_dir)] == ["acquired", "released"]
    with pytest.raises(runlock.RunLockLost, match="does not hold"):
        runlock.check(run_dir)


def test_a_held_lock_refuses_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runlock.LOCK).write_text(json.dumps({"pid": 4242, "host": "node7", "since": 0}))
    fd = os.open(run_dir / runlock.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another holder (another open file: flock conflicts even in one process)
    try:
        with pytest.raises(runlock.RunFolderBusy, match=r"is being trained by pid 4242 on node7 \(since "):
            runlock.acquire(run_dir)
    finally:
        os.close(fd)
    assert not (run_dir / runlock.OWNERS).exists()  # a refused process writes nothing


def test_a_replaced_lock_file_stops_the_record_write(tmp_path):
    """Someone removes the run folder's lock (or the whole folder) while a run trains: another process could
    then take a new lock there, so the first one must not write its record."""
    run_dir = tmp_path / "run"
    with runlock.hold(run_dir):
        (run_dir / runlock.LOCK).unlink()
        with pytest.raises(runlock.RunLockLost, match="removed or replaced"):
            runlock.check(run_dir)
    assert not (run_dir / runlock.LOCK).exists()  # the release left the new file alone (it is not ours)


def test_a_folder_the_lock_created_for_nothing_is_removed(tmp_path):
    """A run that fails before it writes anything (bad data, say) leaves no folder behind."""
    run_dir = tmp_path / "runs" / "x"
    with runlock.hold(run_dir):
        assert (run_dir / runlock.LOCK).is_file()
    assert not run_dir.exists()
    with runlock.hold(run_dir):
        (run_dir / "record.json").write_text("{}")
    assert (run_dir / runlock.OWNERS).is_file()  # something was written: the folder and its history stay
