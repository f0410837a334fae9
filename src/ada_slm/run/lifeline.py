"""Processes that die with the process that started them, so a `kill -9` of `study run` leaves nothing training.

A local study is a chain: the runner → a fork server (multiprocessing's, which imports torch once) → one
process per run, forked from the fork server. On Linux, PR_SET_PDEATHSIG asks the kernel to SIGKILL a process
when its parent exits: the fork server is asked to die with the runner and each run with the fork server. The
kernel watches only from the moment it is asked, so each process then checks that its parent is still the one
it expects; if not, the parent died first and the process kills itself at once. A run also watches the runner
directly (multiprocessing's parent sentinel reads EOF when the runner is gone), and a `study exec` subprocess
(Ray, or a platform without a fork server) dies with the process that started it.

Elsewhere than Linux the parent-death signal does not exist; the watch of the runner still holds there.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Environment variable naming the pid a new process must die with. The runner sets it while it starts the fork
# server, and for each `study exec` subprocess; the new process acts on it when it first imports this module.
PARENT_ENV = "ADA_SLM_DIE_WITH_PID"

# Set in a process bound to its parent through PARENT_ENV: its own pid. In the fork server, and so in every run
# forked from it, this is the fork server's pid, the parent a run expects.
bound_pid: int | None = None


def die_with_parent(expected_parent: int | None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; if the parent is no longer
    `expected_parent` (it died before the request), die now. False where the platform cannot do it."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def die_with_multiprocessing_parent() -> None:
    """In a multiprocessing child: SIGKILL this process as soon as the process that started it is gone (its
    sentinel, a pipe the parent holds open, reads EOF), whichever process forked it."""

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="ada-slm lifeline", daemon=True).start()


# A process started with PARENT_ENV (the fork server, whose first import this is: executors.PRELOAD; or a
# `study exec` subprocess) dies with that parent from here on. Popped, so that its own children don't see it.
_parent = os.environ.pop(PARENT_ENV, None)
if _parent and _parent.isdigit():
    die_with_parent(int(_parent))
    bound_pid = os.getpid()
