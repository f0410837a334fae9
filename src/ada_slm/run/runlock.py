"""One process at a time trains a run folder: an exclusive lock on <run_dir>/.lock, held for the whole run.

Every writer of a run folder goes through it: `study exec` / a run forked by the local executor / a Ray task
(executors.execute_run), `ada-slm train` (train.train), and the runner itself for the moments it writes
spec.json or marks a run failed. A second process is refused with one line naming the holder, and writes
nothing. The lock is `flock`: the kernel drops it when its holder dies, even by SIGKILL, so a killed run never
leaves a stale lock; the holder checks that it still owns the lock file before it writes the run's record.

The holder writes who it is into the lock file (so a refused process can say who holds it) and appends one
JSON line per acquisition and release to <run_dir>/owners.jsonl, the folder's history of owners, with the run's
state as found and as left (study.state_of's words: done = trained and evaluated). A holder that was killed
leaves an acquisition without a release; its successor names it as `previous`.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ada_slm.errors import UserError
from ada_slm.files import check_writable_dir
from ada_slm.run import records

LOCK = ".lock"
OWNERS = "owners.jsonl"
# exit status of a run process that was refused because another process holds its run folder (EX_TEMPFAIL)
BUSY_EXIT = 75


class RunFolderBusy(UserError):
    """Another process holds the run folder's lock."""


class RunLockLost(UserError):
    """This process was to write a run folder whose lock it does not (or no longer) hold."""


@dataclass
class _Held:
    fd: int  # the open lock file: its flock is the lock
    depth: int  # nested holds in this process (execute_run holds it, and train inside it again)
    created_dir: bool  # the run folder did not exist before this hold
    created_parents: list[Path]  # folders above it that this hold created too (innermost first)


_held: dict[Path, _Held] = {}  # resolved run folder -> this process's hold on it
_held_guard = threading.Lock()


def _same_file(fd: int, path: Path) -> bool:
    """Is `path` still the file open as `fd` (not removed, not replaced by another file)?"""
    try:
        on_disk = os.stat(path)
    except OSError:
        return False
    ours = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)


def _read_owner(fd: int) -> dict | None:
    """The holder that the lock file names; None when it is empty (released) or not readable as one."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict | None) -> str:
    if not owner:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {since})"


def _run_state(run_dir: Path) -> str | None:
    """done (trained and evaluated), else the record's status.state; None without a readable record."""
    try:
        record = records.read_record_or_none(run_dir)
    except (UserError, OSError, ValueError):
        return None
    return "done" if records.is_complete(record) else records.state(record)


def _append_owner_event(run_dir: Path, event: dict) -> None:
    """One line of <run_dir>/owners.jsonl, written by the holder only (O_APPEND: never rewritten)."""
    fd = os.open(run_dir / OWNERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


def acquire(run_dir: str | Path) -> Path:
    """Take the run folder's lock (creating the folder if needed) or raise RunFolderBusy; returns the key that
    `release` takes. Re-entrant within a process."""
    run_dir = Path(run_dir)
    created = not run_dir.is_dir()
    missing_parents = [p for p in run_dir.parents if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{run_dir}: cannot create the run folder ({e.strerror or e})") from None
    missing_parents = [p.resolve() for p in missing_parents]
    key = run_dir.resolve()
    with _held_guard:
        if key in _held:
            _held[key].depth += 1
            return key
    path = run_dir / LOCK
    for _ in range(5):  # another holder may remove an empty folder it created between our open and our lock
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError(f"{path}: cannot open the run folder's lock ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunFolderBusy(
                f"{path}: {run_dir} is being trained by {describe(owner)}; one process per run "
                "folder — wait for it to end or stop it"
            ) from None
        except OSError as e:
            os.close(fd)
            raise UserError(f"{path}: cannot lock the run folder ({e.strerror or e})") from None
        if _same_file(fd, path):
            break
        os.close(fd)
    else:
        raise RunFolderBusy(f"{path}: the run folder's lock keeps being replaced; is another tool removing it?")
    previous = _read_owner(fd)  # a released lock is emptied: a name left here is a holder that was killed
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    _append_owner_event(run_dir, {"event": "acquired", **owner, "previous": previous, "found": _run_state(key)})
    with _held_guard:
        _held[key] = _Held(fd, 1, created, missing_parents)
    return key


def release(key: Path) -> None:
    """Undo one `acquire`; the last one logs the release (with the record's state) and drops the lock."""
    with _held_guard:
        held = _held[key]
        held.depth -= 1
        if held.depth:
            return
        del _held[key]
    try:
        if _same_file(held.fd, key / LOCK):
            _append_owner_event(
                key, {"event": "released", "pid": os.getpid(), "time": time.time(), "left": _run_state(key)}
            )
            os.ftruncate(held.fd, 0)
            if held.created_dir and set(os.listdir(key)) <= {LOCK, OWNERS}:
                # nothing was written (the run failed before it began): leave no folder behind
                (key / OWNERS).unlink()
                (key / LOCK).unlink()
                key.rmdir()
                for parent in held.created_parents:  # and the folders above it that this hold made, if still empty
                    try:
                        parent.rmdir()
                    except OSError:
                        break
    finally:
        os.close(held.fd)  # drops the flock


def check(run_dir: str | Path) -> None:
    """Before writing the run's record: this process must hold the lock, on the file that is there now."""
    path = Path(run_dir) / LOCK
    with _held_guard:
        held = _held.get(Path(run_dir).resolve())
    if held is None:
        raise RunLockLost(
            f"{path}: this process (pid {os.getpid()}) does not hold the run folder's lock; its record is not written"
        )
    if not _same_file(held.fd, path):
        raise RunLockLost(
            f"{path}: the run folder's lock was removed or replaced while pid {os.getpid()} held "
            "it; its record is not written"
        )


class hold:
    """`with runlock.hold(run_dir, "out_dir"):` — the run folder's lock for the block. A folder that cannot be
    one (a file, under a file, read-only) is one line naming `what` before anything is created."""

    def __init__(self, run_dir: str | Path, what: str = "run folder"):
        self.run_dir, self.what = run_dir, what

    def __enter__(self) -> Path:
        check_writable_dir(self.run_dir, self.what)
        self.key = acquire(self.run_dir)
        return self.key

    def __exit__(self, *exc) -> None:
        release(self.key)


def holding_out_dir(train_fn):
    """Decorator of a training function whose first argument is a config with `out_dir`: the run folder's
    lock is held for the whole call."""

    @functools.wraps(train_fn)
    def locked(cfg, *args, **kwargs):
        with hold(cfg.out_dir, "out_dir"):
            return train_fn(cfg, *args, **kwargs)

    return locked
