import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.shared import CLI, DATA

# Tests never reach the network: models come from packages or are built from configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Throughput measured while tests run is not this machine's: keep it out of the user's cache (plan.cache_path).
os.environ["ADA_SLM_THROUGHPUT"] = str(Path(tempfile.mkdtemp(prefix="ada-slm-throughput-")) / "throughput.json")


def _records(root):
    return {p.parent.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.rglob("record.json")}


def _finished(record: dict) -> bool:
    return record.get("status", {}).get("state") == "complete" and bool((record.get("eval") or {}).get("metrics"))


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """Run tiny-2arm, kill the runner after two runs finish, run again: returns (results root, exports root,
    first mtimes, second run). Shared by the study tests and the browser test of `study serve` (read-only)."""
    tmp = tmp_path_factory.mktemp("study")
    results, exports = tmp / "results", tmp / "exports"
    args = CLI + ["study", "run", str(DATA / "tiny-2arm.yaml"), "--results", str(results), "--exports", str(exports)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = results / "tiny2"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = [r for r in _records(root).values() if _finished(r)] if root.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=60)
    # finished = trained *and* evaluated: a run interrupted between the two (state "complete", no eval yet) is
    # evaluated again by the second run, as it should be
    first = {k: (root / k / "record.json").stat().st_mtime_ns for k, r in _records(root).items() if _finished(r)}
    second = subprocess.run(args, capture_output=True, text=True)
    return root, exports, first, second
