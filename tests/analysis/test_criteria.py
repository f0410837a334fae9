"""Success criteria stated before the runs, judged met / not met / undecided from CIs (criteria.py, the report)."""

import numpy as np
import pytest

from ada_slm.analysis import analysis, criteria
from ada_slm.analysis.arms import RUN_FIELDS
from ada_slm.analysis.report.writer import summary
from ada_slm.errors import UserError
from ada_slm.run.records import RunRecord
from ada_slm.study.spec import expand, load_study

# a finished run's record as the analysis holds it (the simulated scores stand in for its eval.jsonl)
FINISHED = RunRecord.model_validate({"status": {"state": "complete"}})

N_ITEMS = 133
STUDY = """
name: crit
baseline: b16
seeds: [0, 1, 2]
defaults:
  base: tiny-lfm2
  data: {size: 200, val_fraction: 0.1}
  lora: {r: 16, alpha: 32}
  batch: {micro: 4, accum: 4}
  epochs: 1
arms:
  b16: {}
  r32: {lora: {r: 32, alpha: 64}}
  r48: {lora: {r: 48, alpha: 96}}
criteria:
  - {text: "r32 above 0.15", arm: r32, metric: agl_awareness, above: 0.15}
  - {text: "r32 above 0.5", arm: r32, metric: agl_awareness, above: 0.5}
  - {text: "r32 above its own mean", arm: r32, metric: agl_awareness, above: 0.4}
  - {text: "r32 beats b16", arm: r32, metric: agl_awareness, better_than: b16}
  - {text: "b16 beats r32", arm: b16, metric: agl_awareness, better_than: r32}
  - {text: "r48 beats b16", arm: r48, metric: agl_awareness, better_than: b16}
  - {text: "lower loss than b16", arm: r32, metric: heldout_loss, better_than: b16}
  - {text: "loss below 2.5", arm: r32, metric: heldout_loss, below: 2.5}
"""


@pytest.fixture(scope="module")
def study_specs(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "crit.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    return study, expand(study, str(path), results_root=path.parent / "results")


def simulated(specs, rng, means, losses, n_runs=3):
    """ArmData from the crossed model: 3 runs per arm, 133 shared items, run SD 0.01, residual SD 0.08."""
    items = rng.normal(0, 0.05, N_ITEMS)
    arms = {}
    for name, mu in means.items():
        cfg = next(s.train for s in specs if s.arm == name)
        y = mu + rng.normal(0, 0.01, (n_runs, 1)) + items + rng.normal(0, 0.08, (n_runs, N_ITEMS))
        scores = {m: {} for m in RUN_FIELDS} | {
            "agl_awareness": {s: {f"i{j}": float(v) for j, v in enumerate(row)} for s, row in enumerate(y)},
            "heldout_loss": {s: {"run": float(losses[name] + rng.normal(0, 0.005))} for s in range(n_runs)},
        }
        arms[name] = analysis.ArmData(
            name, cfg, {s: FINISHED for s in range(n_runs)}, scores, {}, {s: "complete" for s in range(n_runs)}
        )
    return arms


def test_criteria_are_judged_from_the_cis(study_specs):
    study, specs = study_specs
    arms = simulated(
        specs, np.random.default_rng(0), {"b16": 0.3, "r32": 0.4, "r48": 0.3}, {"b16": 3.2, "r32": 2.7, "r48": 3.2}
    )
    verdicts = {j.criterion.text: j.verdict for j in criteria.judge_all(study, arms)}
    assert verdicts == {
        "r32 above 0.15": "met",
        "r32 above 0.5": "not met",
        "r32 above its own mean": "undecided",
        "r32 beats b16": "met",
        "b16 beats r32": "not met",
        "r48 beats b16": "undecided",
        "lower loss than b16": "met",
        "loss below 2.5": "not met",
    }
    j = criteria.judge(study.criteria[0], arms)
    assert j.evidence == "r32 agl_awareness 0.3879 [0.3719, 0.4039] vs > 0.15"


def test_one_run_is_undecided(study_specs):
    study, specs = study_specs
    arms = simulated(
        specs,
        np.random.default_rng(1),
        {"b16": 0.3, "r32": 0.9, "r48": 0.3},
        {"b16": 3.2, "r32": 2.0, "r48": 3.2},
        n_runs=1,
    )
    assert {j.verdict for j in criteria.judge_all(study, arms)} == {"undecided"}


def test_a_ci_that_ends_at_the_threshold_is_judged(study_specs):
    """Every output at 0 gives the CI [0, 0]: "> 0" is then not met (not undecided), "< 0.1" met."""
    from ada_slm.study.decision import Criterion

    study, specs = study_specs
    arms = simulated(
        specs, np.random.default_rng(2), {"b16": 0.3, "r32": 0.4, "r48": 0.3}, {"b16": 3.2, "r32": 2.7, "r48": 3.2}
    )
    arms["r32"].scores["agl_awareness"] = {
        s: {i: 0.0 for i in row} for s, row in arms["r32"].scores["agl_awareness"].items()
    }
    above = criteria.judge(Criterion(text="appears", arm="r32", metric="agl_awareness", above=0.0), arms)
    assert above.verdict == "not met" and "[0.0000, 0.0000]" in above.evidence
    below = criteria.judge(Criterion(text="absent", arm="r32", metric="agl_awareness", below=0.1), arms)
    assert below.verdict == "met"


def test_the_report_shows_the_criteria(study_specs):
    study, specs = study_specs
    arms = simulated(
        specs, np.random.default_rng(0), {"b16": 0.3, "r32": 0.4, "r48": 0.3}, {"b16": 3.2, "r32": 2.7, "r48": 3.2}
    )
    md = summary(analysis.analyse(study, specs, arms=arms))
    assert (
        "## Success criteria" in md
        and "| r32 above 0.5 | not met | r32 agl_awareness 0.3879 [0.3719, 0.4039] vs > 0.5 |" in md
    )


def test_phase14d_ships_the_seeds_criteria():
    from ada_slm.app.cli.common import study_path

    study = load_study(study_path("phase14d"))
    texts = [c.text for c in study.criteria]
    assert texts[:2] == ["AGL awareness > 0.15", "AGL awareness > 0.20 (stretch)"]
    assert any("Tonight Protocol" in t for t in texts) and any("0.618" in t for t in texts)


@pytest.mark.parametrize(
    "entry, text",
    [
        ("{text: t, arm: b16, metric: agl_awareness, above: 0.1, better_than: r32}", "criteria.0"),
        ("{text: t, arm: nope, metric: agl_awareness, above: 0.1}", "criteria.0: unknown arm 'nope'"),
        ("{text: t, arm: b16, metric: agl_awarenes, above: 0.1}", "criteria.0.metric"),
    ],
)
def test_a_wrong_criterion_is_one_line_naming_it(tmp_path, entry, text):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.split("criteria:")[0] + f"criteria:\n  - {entry}\n")
    with pytest.raises(UserError) as e:
        load_study(path)
    assert text in str(e.value) and "\n" not in str(e.value)
