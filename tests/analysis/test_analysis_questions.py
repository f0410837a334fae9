"""The decision's questions: an equivalence question answered by TOST within its margin, and a question the
runs cannot ask (a corpus-size question capped by max_steps, an arm a scale skips) detected from the configs
alone and reported as not asked; the shipped phase14d asks rank, split (equivalence) and data."""

import numpy as np
import pytest

from ada_slm.analysis import analysis, design
from ada_slm.analysis.arms import RUN_FIELDS
from ada_slm.analysis.report.decision import decision_intro, decision_table
from ada_slm.run.records import RunRecord
from ada_slm.study.spec import expand, load_study

# a finished run's record as the analysis holds it (the simulated scores stand in for its eval.jsonl)
FINISHED = RunRecord.model_validate({"status": {"state": "complete"}})

N_ITEMS = 133
STUDY = """
name: q
baseline: b16
pairing: none   # simulate() draws every run's training effect independently: no seed blocks to pair
seeds: [0, 1, 2]
defaults:
  base: tiny-lfm2
  data: {size: 2000, val_fraction: 0.1, val_size: 200}
  lora: {r: 16, alpha: 32}
  batch: {micro: 4, accum: 4}
  loss: {normalisation: micro_batch}   # the seed's loss: a real split question (under the default per-token
  epochs: 3                            # loss r32-split would be r32's very runs)
arms:
  b16: {}
  r32: {lora: {r: 32, alpha: 64}}
  r32-split: {lora: {r: 32, alpha: 64}, batch: {micro: 1, accum: 16}}
  data5k: {data: {size: 5000}}
decision:
  metric: agl_awareness
  questions:
    rank: {compare: r32, against: b16}
    split: {compare: r32-split, against: r32, test: equivalent, margin: 0.06}
    data: {compare: data5k, against: b16}
  rules:
    - {when: {rank: true, data: true}, recommend: "Path C"}
    - {when: {rank: true, data: false}, recommend: "Path A"}
    - {when: {rank: true}, recommend: "Path A, data not asked"}
    - {when: {}, recommend: "none"}
scale:
  capped:
    overrides: {max_steps: 20}
  long:
    overrides: {max_steps: 200}
  skipping:
    overrides: {max_steps: 20}
    skip: [data5k]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "q.yaml"
    path.write_text(STUDY)
    return load_study(path), path


def _specs(study, scale=None):
    s, path = study
    return expand(s, str(path), scale, results_root=path.parent / "results")


def simulate(specs, rng, means, seed_sd=0.01, item_sd=0.05, inter_sd=0.02, resid_sd=0.08):
    """Finished runs of the arms in `means` (3 seeds, shared items) from the crossed random-effects model."""
    items = rng.normal(0, item_sd, N_ITEMS)
    arms = {}
    for name, mu in means.items():
        cfg = next(s.train for s in specs if s.arm == name)
        y = (
            mu
            + rng.normal(0, seed_sd, (3, 1))
            + items
            + rng.normal(0, inter_sd, N_ITEMS)
            + rng.normal(0, resid_sd, (3, N_ITEMS))
        )
        scores = {m: {} for m in RUN_FIELDS} | {
            "agl_awareness": {s: {f"i{j}": float(v) for j, v in enumerate(row)} for s, row in enumerate(y)}
        }
        arms[name] = analysis.ArmData(
            name, cfg, {s: FINISHED for s in range(3)}, scores, {}, {s: "complete" for s in range(3)}
        )
    return arms


def _answers(study, specs, arms, scale=None):
    d = analysis.decide(study[0], arms, specs, scale)
    return d, {x.question: x for x in d.answers}


@pytest.mark.slow
def test_split_is_an_equivalence_question_answered_by_tost(study):
    specs = _specs(study)
    rng = np.random.default_rng(0)
    same = [
        _answers(study, specs, simulate(specs, rng, {"b16": 0.2, "r32": 0.3, "r32-split": 0.3, "data5k": 0.2}))
        for _ in range(60)
    ]
    split = [a["split"] for _, a in same]
    assert all(x.test == "equivalent" and x.equivalence is not None and x.equivalence.margin == 0.06 for x in split)
    assert np.mean([x.yes for x in split]) >= 0.8  # equal arms: shown equivalent within ±0.06
    assert all(x.answer in ("yes (equivalent)", "not shown equivalent") for x in split)
    # the rule still sees rank and data (the split question is informational here)
    assert np.mean([d.rule.recommend == "Path A" for d, _ in same]) >= 0.8
    # at a true difference of exactly the margin, equivalence is claimed at most at the TOST level
    edge = [
        _answers(study, specs, simulate(specs, rng, {"b16": 0.2, "r32": 0.3, "r32-split": 0.36, "data5k": 0.2}))[1][
            "split"
        ].yes
        for _ in range(200)
    ]
    assert np.mean(edge) <= 0.05 + 0.03
    # and a split that matters is not called equivalent
    far = [
        _answers(study, specs, simulate(specs, rng, {"b16": 0.2, "r32": 0.3, "r32-split": 0.45, "data5k": 0.2}))[1][
            "split"
        ].yes
        for _ in range(30)
    ]
    assert not any(far)


def test_equivalence_p_joins_the_holm_family_of_the_questions(study):
    specs = _specs(study)
    d, a = _answers(
        study,
        specs,
        simulate(specs, np.random.default_rng(3), {"b16": 0.2, "r32": 0.3, "r32-split": 0.3, "data5k": 0.2}),
    )
    raw = {"rank": a["rank"].comparison.p, "split": a["split"].equivalence.p, "data": a["data"].comparison.p}
    from ada_slm.stats import contrasts

    assert {q: a[q].p_holm for q in raw} == pytest.approx(contrasts.holm(raw))


def test_data_question_not_asked_when_max_steps_caps_both_corpora(study):
    specs = _specs(study, "capped")
    arms = simulate(specs, np.random.default_rng(1), {"b16": 0.2, "r32": 0.3, "r32-split": 0.3, "data5k": 0.5})
    d, a = _answers(study, specs, arms, "capped")
    assert a["data"].not_asked.startswith("not asked at this scale: both arms see 320 distinct examples")
    assert a["data"].comparison is None and a["data"].answer == "not asked"
    assert "data" not in stats_family(a)
    # a rule naming the unasked question cannot match: rank yes → the {rank: true} fallback
    assert d.rule.recommend == "Path A, data not asked"
    head, rows = decision_table(d)
    assert rows[2][-1] == "not asked" and "320 distinct examples" in rows[2][2]
    assert "cannot ask" in decision_intro(d)


def stats_family(answers):
    return {q for q, x in answers.items() if np.isfinite(x.p_holm)}


def test_data_question_detected_from_configs_before_any_run(study):
    # no finished run: the configs alone say whether the question can be asked
    for scale, asked in ((None, True), ("long", True), ("capped", False)):
        specs = _specs(study, scale)
        arms = analysis.collect(specs)
        _, a = _answers(study, specs, arms, scale)
        assert (a["data"].not_asked is None) == asked, scale
        assert a["rank"].not_asked is None


def test_question_on_an_arm_the_scale_skips_is_not_asked(study):
    specs = _specs(study, "skipping")
    assert "data5k" not in {s.arm for s in specs}
    arms = simulate(specs, np.random.default_rng(2), {"b16": 0.2, "r32": 0.3, "r32-split": 0.3})
    d, a = _answers(study, specs, arms, "skipping")
    assert a["data"].not_asked == "not asked at this scale: scale skipping skips it (data5k)"
    assert d.rule.recommend == "Path A, data not asked"


def test_skip_and_margin_are_checked_at_load(tmp_path):
    bad = STUDY.replace("skip: [data5k]", "skip: [nope]")
    (tmp_path / "a.yaml").write_text(bad)
    from ada_slm.errors import UserError

    with pytest.raises(UserError, match=r"scale.skipping.skip: unknown arm 'nope'"):
        load_study(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(STUDY.replace("skip: [data5k]", "skip: [b16]"))
    with pytest.raises(UserError, match="baseline 'b16' is run at every scale"):
        load_study(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text(STUDY.replace("against: b16}\n    split", "against: b16, margin: 0.1}\n    split"))
    with pytest.raises(UserError, match="set test: equivalent"):
        load_study(tmp_path / "c.yaml")


def test_shipped_phase14d_asks_the_seeds_split_under_the_seeds_loss_and_the_batch_as_it_ran():
    from importlib import resources

    path = resources.files("ada_slm") / "studies" / "phase14d.yaml"
    study = load_study(path)
    q = study.decision.questions
    assert (q["rank"].compare, q["rank"].against, q["rank"].test) == ("v9D", "v9B", "better")
    assert (q["split"].compare, q["split"].against, q["split"].test) == ("v9C", "v9D", "equivalent")
    assert (q["batch"].compare, q["batch"].against) == ("v9C-ran", "v9D")
    assert (q["data"].compare, q["data"].against) == ("v9B-5k", "v9B")
    expected = {
        None: {},
        "full": {},
        "quick": {
            "data": "not asked at this scale: both arms see 32 distinct examples",
            "batch": "not asked at this scale: scale quick skips it (v9C-ran)",
        },
        "cpu": {"data": "not asked at this scale: scale cpu skips it (v9B-5k)"},
    }
    for scale, why in expected.items():
        specs = expand(study, str(path), scale)
        assert {s.train.loss.normalisation for s in specs if s.train} == {"micro_batch"}
        _, a = _answers((study, path), specs, analysis.collect(specs), scale)
        # the seed's loss weighs a micro-batch of 1 and of 4 differently: the split is a real question here
        assert a["rank"].not_asked is None and a["split"].not_asked is None, scale
        for name in ("data", "batch"):
            got = a[name].not_asked
            assert (got is None) if name not in why else got.startswith(why[name]), (scale, name, got)
        ran = {s.arm: s.train for s in specs if s.train}
        if "v9C-ran" in ran:  # as the seed's v9C ran: 4 × 16 = 64, a quarter of the steps over the same sequences
            v9c_ran, v9d = ran["v9C-ran"], ran["v9D"]
            steps = (v9c_ran.optimizer_steps(), v9d.optimizer_steps())
            assert v9c_ran.batch.effective == 64 and steps == ((5, 20) if scale == "cpu" else (87, 339)), steps
            assert list(design.factors_of(v9c_ran, v9d).factors) == ["effective batch"]


def test_under_a_split_invariant_loss_the_split_question_is_answered_from_the_configs(tmp_path):
    """The same study with the default per-token loss (or per-sequence): v9C and v9D are the same objective, seen
    before any run, and the question says so instead of spending runs on it."""
    from importlib import resources

    text = (resources.files("ada_slm") / "studies" / "phase14d.yaml").read_text()
    for how in ("token", "sequence"):
        path = tmp_path / f"{how}.yaml"
        path.write_text(text.replace("loss: {normalisation: micro_batch}", f"loss: {{normalisation: {how}}}"))
        study = load_study(path)
        specs = expand(study, str(path), "cpu")
        _, a = _answers((study, path), specs, analysis.collect(specs), "cpu")
        assert a["split"].not_asked.startswith(
            f"split: identical objective under this loss (loss.normalisation "
            f"{how}) — v9C and v9D differ only in micro × accum"
        ), a["split"]
        assert "no runs spent" in a["split"].not_asked
        assert a["rank"].not_asked is None and a["batch"].not_asked is None


def test_shipped_studies_hold_out_one_fixed_set_for_every_arm():
    # the builder gives every size the same held-out items when seed, mix, val_fraction and val_size agree
    # (tests/agl/test_builder.py): so every arm's data block may differ only in size
    from importlib import resources

    for name in ("phase14d", "phase14e-polyglot"):
        path = resources.files("ada_slm") / "studies" / f"{name}.yaml"
        study = load_study(path)
        for scale in [None, *study.scale]:
            datas = [s.train.data.model_dump(exclude={"size"}) for s in expand(study, str(path), scale) if s.train]
            assert datas and all(d == datas[0] for d in datas) and datas[0]["val_size"], (name, scale)


def test_adaptive_design_asks_only_what_the_scale_asks(tmp_path):
    from importlib import resources

    from ada_slm.analysis import adaptive

    path = resources.files("ada_slm") / "studies" / "phase14d.yaml"
    study = load_study(path)
    cpu = adaptive.design(study, str(path), "cpu", [0, 1, 2], tmp_path / "r", tmp_path / "e")
    assert "v9B-5k" not in cpu.arms and set(cpu.questions) == {"rank", "split", "batch"}
    quick = adaptive.design(study, str(path), "quick", [0, 1], tmp_path / "r", tmp_path / "e")
    assert "v9B-5k" in quick.arms and set(quick.questions) == {"rank", "split"}  # data run, but its question moot
    full = adaptive.design(study, str(path), "full", [0, 1, 2], tmp_path / "r", tmp_path / "e")
    assert set(full.questions) == {"rank", "split", "batch", "data"}


def test_a_question_that_also_compares_something_else_stays_asked(study):
    from ada_slm.study.decision import Question

    specs = _specs(study, "capped")
    arms = analysis.collect(specs)
    mixed = Question(compare="data5k", against="r32")  # corpus size and rank: the rank part is still asked
    assert (
        analysis.question_not_asked(study[0], mixed, {s.arm for s in specs}, arms["data5k"], arms["r32"], "capped")
        is None
    )
    pure = Question(compare="data5k", against="b16")
    assert analysis.question_not_asked(
        study[0], pure, {s.arm for s in specs}, arms["data5k"], arms["b16"], "capped"
    ).startswith("not asked at this scale: both arms see 320")
