"""`study run --until-decided` end to end on tiny-lfm2 (interrupted in round 2, resumed), the shipped rank sweep,
and `study plan --until-decided`."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ada_slm.analysis import adaptive
from ada_slm.study.spec import expand, load_study
from tests.shared import CLI, DATA, STUDIES


def _mtimes(root: Path) -> dict:
    return {p.parent.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("record.json")}


@pytest.fixture(scope="module")
def adaptive_study(tmp_path_factory):
    """Run tiny-adaptive until decided, Ctrl-C it once round 1 has been looked at, run it again."""
    tmp = tmp_path_factory.mktemp("adaptive")
    results, exports = tmp / "results", tmp / "exports"
    args = CLI + [
        "study",
        "run",
        str(DATA / "tiny-adaptive.yaml"),
        "--until-decided",
        "--results",
        str(results),
        "--exports",
        str(exports),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rounds = results / "tinyadapt" / adaptive.ROUNDS
    while proc.poll() is None:
        if rounds.is_file() and json.loads(rounds.read_text())["rounds"]:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C in round 2
    proc.wait(timeout=120)
    second = subprocess.run(args, capture_output=True, text=True)
    return results / "tinyadapt", args, second


@pytest.mark.slow
def test_two_rounds_then_stop_adding_runs_only_to_open_arms(adaptive_study):
    root, _, second = adaptive_study
    assert second.returncode == 0, second.stderr
    state = json.loads((root / adaptive.ROUNDS).read_text())
    assert [r["runs_per_arm"] for r in state["rounds"]] == [{"r8": 1, "r16": 1, "r4": 1}, {"r8": 2, "r16": 2, "r4": 1}]
    assert state["rounds"][0]["next_arms"] == ["r16", "r8"]  # r4 is in no question: no second seed
    assert state["outcome"] == "max seeds (2) reached" and state["answers"] == {"rank": "open"}
    assert "Lan–DeMets" in state["plan"]["rule"]
    assert sorted(_mtimes(root)) == ["r16/seed0", "r16/seed1", "r4/seed0", "r8/seed0", "r8/seed1"]
    report = (root / "report.md").read_text()
    assert "## Adaptive rounds" in report and "max seeds (2) reached" in report
    assert "stopped: max seeds (2) reached" in second.stdout


@pytest.mark.slow
def test_resumed_adaptive_study_recomputes_the_same_rounds_and_runs_nothing(adaptive_study):
    root, args, _ = adaptive_study
    before, state = _mtimes(root), (root / adaptive.ROUNDS).read_text()
    again = subprocess.run(args + ["--no-report"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert _mtimes(root) == before
    assert (root / adaptive.ROUNDS).read_text() == state
    changed = subprocess.run(args + ["--max-seeds", "3"], capture_output=True, text=True)
    assert changed.returncode == 1 and "planned with max_seeds = 2" in changed.stderr


@pytest.mark.slow
def test_plan_until_decided_prints_expected_runs(adaptive_study):
    root, args, _ = adaptive_study
    results = str(root.parent)
    p = subprocess.run(
        CLI + ["study", "plan", str(DATA / "tiny-adaptive.yaml"), "--until-decided", "--results", results],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "looks at [1, 2] runs per arm" in p.stdout
    assert "runs expected" in p.stdout and "no difference" in p.stdout


def test_rank_sweep_ships_six_ranks_at_alpha_2r(tmp_path):
    study = load_study(STUDIES / "rank-sweep.yaml")
    assert study.adaptive.eliminate
    for scale in ("quick", "cpu"):
        specs = expand(study, "rank-sweep", scale, results_root=tmp_path)
        ranks = sorted({(s.train.lora.r, s.train.lora.alpha) for s in specs})
        assert ranks == [(r, 2 * r) for r in (4, 8, 16, 32, 48, 64)]
        assert {s.base for s in specs} == {"smollm2-135m"}
    d = adaptive.design(study, "rank-sweep", "cpu", study.seeds, tmp_path, tmp_path)
    assert d.sweep == list(study.arms) and d.plan.looks == [3, 4, 5, 6, 7, 8, 9, 10]


def test_a_look_of_the_sweep_on_run_scores_drops_the_clearly_worse_arm(tmp_path):
    """`replay`'s elimination step on per-item scores (arm -> seed -> item -> score) of three runs per rank."""
    import numpy as np

    study = load_study(STUDIES / "rank-sweep.yaml")
    d = adaptive.design(study, "rank-sweep", "cpu", study.seeds, tmp_path, tmp_path)
    rng = np.random.default_rng(0)
    means = {"r4": 0.10, "r8": 0.28, "r16": 0.30, "r32": 0.31, "r48": 0.30, "r64": 0.29}
    scores = {
        arm: {
            s: {f"i{j}": float(mu + 0.003 * rng.standard_normal() + 0.01 * rng.standard_normal()) for j in range(40)}
            for s in range(3)
        }
        for arm, mu in means.items()
    }
    alive = np.ones((1, len(d.arms)), bool)
    entry, prog = {}, adaptive.Progress()
    settled = adaptive._eliminate(d, scores, alive, 0, entry, prog)
    assert entry["leader"] == "r32" and prog.leader == "r32"
    assert entry["eliminated"] == ["r4"] and not alive[0, d.arms.index("r4")]
    assert not settled and set(entry["versus_leader"]) == set(means) - {"r32"}
    assert (
        entry["versus_leader"]["r4"]["delta"] < -0.2
        and entry["versus_leader"]["r4"]["p"] < entry["elimination_threshold"]
    )
