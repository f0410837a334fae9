"""The study analysis on simulated finished runs: decisions calibrated at 3 seeds, run-level metrics, designs
built from the full config difference, the report rendered from the analysis, metric names checked at load."""

import json

import numpy as np
import pytest

from ada_slm.analysis import analysis, design
from ada_slm.analysis.arms import RUN_FIELDS
from ada_slm.analysis.report.writer import build_report, summary
from ada_slm.errors import UserError
from ada_slm.run.metrics import METRICS
from ada_slm.run.records import RunRecord
from ada_slm.study.spec import expand, load_study

# a finished run's record as the analysis holds it (the simulated scores stand in for its eval.jsonl)
FINISHED = RunRecord.model_validate({"status": {"state": "complete"}})

N_ITEMS = 133
STUDY = """
name: sim
baseline: b16
seeds: [0, 1, 2]
defaults:
  base: tiny-lfm2
  data: {size: 2000, val_fraction: 0.1}
  lora: {r: 16, alpha: 32, dropout: 0.05}
  batch: {micro: 4, accum: 4}
  epochs: 3
arms:
  b16: {}
  r32: {lora: {r: 32, alpha: 64}}
  r48: {lora: {r: 48, alpha: 96}}
  split: {batch: {micro: 1, accum: 16}}
  r32-split: {lora: {r: 32, alpha: 64}, batch: {micro: 1, accum: 16}}
  data5k: {data: {size: 5000}}
  drop0: {lora: {r: 32, alpha: 64, dropout: 0.0}}
decision:
  metric: agl_awareness
  min_effect: 0.03
  questions:
    rank: {compare: r32, against: b16}
    data: {compare: data5k, against: b16}
  rules:
    - {when: {rank: true, data: true}, recommend: "Path C"}
    - {when: {rank: true, data: false}, recommend: "Path A", config: {lora: {r: 32, alpha: 64}}}
    - {when: {rank: false, data: true}, recommend: "Path B"}
    - {when: {}, recommend: "No path is supported yet"}
"""


@pytest.fixture(scope="module")
def study_specs(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "sim.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    return study, expand(study, str(path), results_root=path.parent / "results")


def simulate_arms(
    study, specs, rng, means, seed_sd=0.02, item_sd=0.05, inter_sd=0.02, resid_sd=0.08, losses=None, rho=0.0
):
    """In-memory ArmData for the arms in `means` from the crossed random-effects model (3 runs per arm); `rho`:
    the correlation of one seed's training effect across arms (runs of a seed share data order and LoRA init)."""
    items = rng.normal(0, item_sd, N_ITEMS)
    shared_seed = rng.normal(0, seed_sd, (3, 1))
    arms = {}
    for name, mu in means.items():
        cfg = next(s.train for s in specs if s.arm == name)
        seed_effect = rho**0.5 * shared_seed + (1 - rho) ** 0.5 * rng.normal(0, seed_sd, (3, 1))
        y = mu + seed_effect + items + rng.normal(0, inter_sd, N_ITEMS) + rng.normal(0, resid_sd, (3, N_ITEMS))
        scores = {m: {} for m in RUN_FIELDS} | {
            "agl_awareness": {s: {f"i{j}": float(v) for j, v in enumerate(row)} for s, row in enumerate(y)}
        }
        if losses:
            scores["heldout_loss"] = {s: {"run": float(losses[name] + rng.normal(0, 0.005))} for s in range(3)}
        arms[name] = analysis.ArmData(
            name, cfg, {s: FINISHED for s in range(3)}, scores, {}, {s: "complete" for s in range(3)}
        )
    return arms


def _path_picked(study, specs, arms) -> bool:
    return analysis.decide(study, arms, specs).rule.recommend.startswith("Path")


@pytest.mark.parametrize("pairing, rho", [("none", 0.0), ("seed", 0.0), ("seed", 0.9)])
@pytest.mark.slow
def test_decision_picks_a_path_rarely_without_effects_and_mostly_with_a_large_one(study_specs, pairing, rho):
    """Calibrated under either pairing whatever the seed correlation; power at Δ 0.1 with seed noise dominating:
    unpaired when the seeds' effects are independent, paired when they are correlated (as measured on real runs).
    Pairing uncorrelated seeds costs power (2 d.f. instead of ≈ 4 at 3 runs): that case is not asserted."""
    study, specs = study_specs
    study = study.model_copy(update={"pairing": pairing})
    rng = np.random.default_rng(0)
    null = [
        _path_picked(study, specs, simulate_arms(study, specs, rng, {"b16": 0.3, "r32": 0.3, "data5k": 0.3}, rho=rho))
        for _ in range(500)
    ]
    assert np.mean(null) <= 0.05
    big = [
        analysis.decide(
            study,
            specs_arms := simulate_arms(study, specs, rng, {"b16": 0.3, "r32": 0.4, "data5k": 0.3}, rho=rho),
            specs,
        )
        for _ in range(100)
    ]
    if (pairing, rho) != ("seed", 0.0):
        assert np.mean([d.rule.recommend == "Path A" for d in big]) >= 0.7
    assert specs_arms  # the last simulated study


def test_decision_on_a_lower_is_better_run_metric(study_specs):
    study, specs = study_specs
    study = study.model_copy(update={"decision": study.decision.model_copy(update={"metric": "heldout_loss"})})
    arms = simulate_arms(
        study,
        specs,
        np.random.default_rng(1),
        {"b16": 0.3, "r32": 0.3, "data5k": 0.3},
        losses={"b16": 2.097, "r32": 1.797, "data5k": 2.097},
    )
    d = analysis.decide(study, arms, specs)
    rank = d.answers[0]
    assert rank.comparison.delta.mean == pytest.approx(-0.3, abs=0.02) and rank.yes  # lower loss: yes
    assert d.rule.recommend == "Path A"


def test_designs_from_the_full_config_difference(study_specs):
    study, specs = study_specs
    arms = simulate_arms(
        study,
        specs,
        np.random.default_rng(2),
        {n: 0.3 for n in ("b16", "r32", "r48", "split", "r32-split", "data5k", "drop0")},
    )
    facs = analysis.factorials(arms, "agl_awareness")
    assert [(f.factor1, f.factor2) for f in facs] == [("batch split", "rank")]
    assert set(facs[0].cells.values()) == {"b16", "r32", "split", "r32-split"}  # drop0 differs in dropout too
    g = analysis.goldilocks(arms, "agl_awareness")
    assert sorted(g.by_rank) == [16, 32, 48] and "drop0" not in g.by_rank.values() and not g.claimed
    comp = analysis._compare_arm(study, arms["data5k"], arms["b16"], {})
    assert list(comp.factors.factors) == ["data size and steps"]
    assert comp.factors.factors["data size and steps"] == ("5000 ex, 846 steps", "2000 ex, 339 steps")
    split = analysis._compare_arm(study, arms["split"], arms["b16"], {})
    assert split.factors.split_only and "agl_awareness" in split.equivalence


def _write_run(spec, rng, mean, loss, ran=None):
    """A finished run; `ran`: the train config its record.json holds (as train.py writes it)."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for j in range(20):
        metrics = {m: None for m in METRICS} | {
            "agl_awareness": float(max(0.0, mean + rng.normal(0, 0.02))),
            "well_formed": float(rng.random() < 0.5),
        }
        rows.append({"id": f"i{j}", "prompt": "p", "output": "⟨self⟩ exists", "metrics": metrics})
    (spec.run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = [{"step": k, "loss": loss + 0.5 / k, "tokens": 1000, "sequences": 16} for k in (1, 2, 3)]
    train = (
        None
        if spec.train is None
        else {
            "steps": steps,
            "val": [{"step": 3, "loss": loss}],
            "final_val_loss": loss,
            "final_train_loss": loss + 0.1,
            "tokens_per_s": 500.0 + rng.normal(0, 5),
        }
    )
    record = {
        "status": {"state": "complete"},
        "train": train,
        **({"config": {**ran.model_dump(), "total_steps": 3}} if ran else {}),
        "eval": {
            "suite": "multilang",
            "n_items": 20,
            "generation": {"mode": "greedy", "max_new_tokens": 8, "batch_size": 8},
        },
    }
    (spec.run_dir / "record.json").write_text(json.dumps(record))


def test_report_and_summary_render_from_the_analysis(study_specs):
    study, specs = study_specs
    rng = np.random.default_rng(3)
    means = {
        "base": 0.0,
        "b16": 0.1,
        "r32": 0.1,
        "r48": 0.1,
        "split": 0.1,
        "r32-split": 0.1,
        "data5k": 0.1,
        "drop0": 0.1,
    }
    for s in specs:
        _write_run(s, rng, means[s.arm], {"r32": 1.797}.get(s.arm, 2.097) + rng.normal(0, 0.005))
    a = analysis.analyse(study, specs)
    held = a.comparisons["r32"].comparisons["heldout_loss"]
    assert held.supported and held.delta.mean == pytest.approx(-0.3, abs=0.02)
    assert a.arms["b16"].components["agl_awareness"].n_seeds == 3 and a.power.detectable[3] > 0
    md = build_report(study, specs, None, specs[0].run_dir.parent.parent, a).read_text()
    for text in (
        "## Power",
        "seed SD / item SD",
        "perm p (min)",
        "(≥ 0.25)",
        "Runs paired by seed (3 pairs)",
        "| heldout_loss |",
        "Differs in data size and steps: 2000 ex, 339 steps → 5000 ex, 846 steps.",
        "Equivalence (TOST",
        "Runs per arm to detect the decision's min_effect 0.03",
    ):
        assert text in md, text
    printed = summary(a)
    assert "## Decision" in printed and "## Power" in printed and "## Per-metric" not in printed


@pytest.mark.parametrize(
    "field, text",
    [
        (
            "decision:\n  metric: agl_awarness\n  questions: {q: {compare: a, against: a}}\n"
            "  rules: [{recommend: r}]\n",
            "decision.metric",
        ),
        ("equivalence_margins: {welformed: 0.1}\n", "equivalence_margins"),
    ],
)
def test_metric_names_are_checked_when_the_study_loads(tmp_path, field, text):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbaseline: a\narms:\n  a: {}\n" + field)
    with pytest.raises(UserError) as info:
        load_study(path)
    message = str(info.value)
    assert text in message and "unknown metric" in message and "\n" not in message.strip()


def test_goldilocks_follows_the_metric_direction(study_specs):
    """On held-out loss (lower is better) the middle rank with the WORST loss is no optimum (the old code called
    it one: it 'beat' both neighbours by having the larger loss); the middle rank with the lowest loss is."""
    study, specs = study_specs
    means = {"b16": 0.3, "r32": 0.3, "r48": 0.3}
    worst = simulate_arms(study, specs, np.random.default_rng(4), means, losses={"b16": 2.0, "r32": 2.3, "r48": 2.0})
    g = analysis.goldilocks(worst, "heldout_loss")
    assert sorted(g.by_rank) == [16, 32, 48] and not g.claimed
    best = simulate_arms(study, specs, np.random.default_rng(4), means, losses={"b16": 2.3, "r32": 2.0, "r48": 2.3})
    g = analysis.goldilocks(best, "heldout_loss")
    assert g.claimed and "interior optimum at 32 (below both neighbours)" in g.text
    assert "over the two sides of the peak (2 tests)" in g.text


def build_report_text(study, specs, a) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return build_report(study, specs, None, Path(d), a).read_text()


def test_every_verdict_names_its_holm_family(study_specs):
    """A Δ is corrected over the metrics of its comparison in the table and over the decision's questions in the
    decision: the table's cells say 'supported' or '—' under a caption that names the family once, the decision
    names its own, so a '—' beside a 'yes' is explained, not a contradiction."""
    from ada_slm.analysis.report.decision import decision_table
    from ada_slm.analysis.report.writer import comparison_table, summary_table

    study, specs = study_specs
    arms = simulate_arms(
        study,
        specs,
        np.random.default_rng(5),
        {"b16": 0.3, "r32": 0.36, "data5k": 0.3},
        losses={"b16": 2.0, "r32": 2.0, "data5k": 2.0},
    )
    a = analysis.analyse(study, specs, arms=arms)
    header, rows = comparison_table(a, a.comparisons["r32"])
    verdicts = {r[0]: r[header.index("difference")] for r in rows}
    assert set(verdicts.values()) <= {"supported", "—"}
    md = summary(a)
    assert "'supported' = Holm p < 0.05 over the metrics of that comparison" in build_report_text(study, specs, a)
    _, decision_rows = decision_table(a.decision)
    rank = next(r for r in decision_rows if r[0] == "rank")
    assert "over the decision's questions (2 tests))" in rank[2]
    _, summary_rows = summary_table(a)
    r32 = next(r for r in summary_rows if r[0] == "r32")
    assert ("(supported)" in r32[6] or "(—)" in r32[6]) and "× [" in r32[6] and md  # × only with its CI
    assert not any("real" in cell for row in rows + decision_rows + summary_rows for cell in row)


def test_the_report_is_of_what_ran_and_says_when_the_study_file_was_edited_after(tmp_path):
    """ArmData.config comes from the finished runs' record.json; the study file edited after the runs (r32's rank
    now 40) changes no number or label, and the report says so in one line."""
    path = tmp_path / "sim.yaml"
    path.write_text(STUDY)
    roots = {"results_root": tmp_path / "results", "exports_root": tmp_path / "exports"}
    rng = np.random.default_rng(5)
    for s in expand(load_study(path), str(path), **roots):
        _write_run(s, rng, 0.1, 2.0, ran=s.train)
    path.write_text(STUDY.replace("r32: {lora: {r: 32, alpha: 64}}", "r32: {lora: {r: 40, alpha: 64}}"))
    study = load_study(path)
    specs = expand(study, str(path), **roots)
    assert next(s.train.lora.r for s in specs if s.arm == "r32") == 40
    a = analysis.analyse(study, specs)
    assert a.data["r32"].config.lora.r == 32 and a.arms["r32"].config.lora.r == 32
    assert a.data["r32"].edited == "r32/seed0 ran with lora.r 32 (the file now: 40)"
    assert [n for n, arm in a.data.items() if arm.edited] == ["r32"]
    md = build_report(study, specs, None, tmp_path / "results" / "sim", a).read_text()
    notes = [line for line in md.splitlines() if "edited after these runs" in line]
    assert len(notes) == 1 and "r32/seed0 ran with lora.r 32 (the file now: 40)" in notes[0]
    assert "| r32 | r32/α64, 4×4=16, 2000 ex, 3 epochs |" in md and "r40" not in md
    path.write_text(STUDY)  # as it ran: nothing to say
    study = load_study(path)
    specs = expand(study, str(path), **roots)
    assert not any(arm.edited for arm in analysis.analyse(study, specs).data.values())


def test_runs_of_different_precision_are_a_factor_and_confound_another(study_specs):
    """r32 trained in bf16 (an AMX machine) against b16 in fp32: the rank comparison is labelled confounded by
    precision; the same precision on both sides adds nothing; a mixed arm is named as such."""
    study, specs = study_specs
    arms = simulate_arms(study, specs, np.random.default_rng(5), {"b16": 0.3, "r32": 0.3})

    def trained_in(arm, *precisions):
        cfg = arms[arm].config
        arm_records = {
            s: RunRecord.model_validate(
                {"config": cfg.model_dump(), "status": {"state": "complete"}, "meta": {"precision": p}}
            )
            for s, p in enumerate(precisions)
        }
        arms[arm] = analysis.ArmData(arm, cfg, arm_records, arms[arm].scores, {}, arms[arm].states)

    trained_in("b16", "fp32", "fp32", "fp32")
    trained_in("r32", "fp32", "fp32", "fp32")
    comp = analysis._compare_arm(study, arms["r32"], arms["b16"], {})
    assert list(comp.factors.factors) == ["rank"] and not comp.factors.confounded
    trained_in("r32", "bf16", "bf16", "bf16")
    comp = analysis._compare_arm(study, arms["r32"], arms["b16"], {})
    assert comp.factors.factors["precision"] == ("bf16", "fp32") and comp.factors.confounded
    trained_in("r32", "bf16", "fp32", "fp32")
    comp = analysis._compare_arm(study, arms["r32"], arms["b16"], {})
    assert comp.factors.factors["precision"] == ("bf16 + fp32", "fp32")


def test_the_report_opens_with_the_answer_and_no_cell_reads_nan(study_specs):
    """One run per arm (no seed-level test): every cell says why there is no interval, none reads nan; the answer
    block comes before the first table, and a proportion's CI stays inside [0, 1]."""
    study, specs = study_specs
    rng = np.random.default_rng(8)
    arms = simulate_arms(
        study, specs, rng, {"b16": 0.3, "r32": 0.5, "data5k": 0.3}, losses={"b16": 2.0, "r32": 1.9, "data5k": 2.0}
    )
    for arm in arms.values():  # keep seed 0 only
        arm.records = {0: arm.records[0]}
        arm.states = {0: "complete"}
        arm.scores = {m: {s: v for s, v in per.items() if s == 0} for m, per in arm.scores.items()}
    a = analysis.analyse(study, specs, arms=arms)
    md = build_report_text(study, specs, a)
    assert "nan" not in md.lower().replace("nanosecond", ""), [line for line in md.splitlines() if "nan" in line]
    assert md.index("## The answer") < md.index("| arm |") and "no CI: one run" in md
    assert "n/a (one run per arm: no CI)" in md and "no test (one run)" in md
    from ada_slm.analysis.report.doc import ci4
    from ada_slm.stats import contrasts

    y = np.array([[1.0] * 30 + [0.0], [1.0] * 31, [1.0] * 29 + [0.0, 0.0]])  # a proportion near 1
    iv = contrasts.arm_interval(y)
    assert iv.high > 1 and ci4(iv).endswith("1.0000] (clipped to [0, 1])")


def test_labels_factors_and_the_report_read_the_adapter_peft_built(tmp_path):
    """A run continued from an r 4 adapter (lora.init_adapter) while its config says r 32: PEFT built r 4, so the
    analysis, its label, the design's rank factor and the report say r 4 — not the configured 32, and not an edit
    of the study file."""
    path = tmp_path / "sim.yaml"
    path.write_text(STUDY)
    roots = {"results_root": tmp_path / "results", "exports_root": tmp_path / "exports"}
    rng = np.random.default_rng(6)
    study = load_study(path)
    specs = expand(study, str(path), **roots)
    for s in specs:
        _write_run(s, rng, 0.1, 2.0, ran=s.train)
        if s.arm == "r32":  # what train.py writes when init_adapter's shape wins
            record = json.loads((s.run_dir / "record.json").read_text())
            record["config"]["resolved_lora"] = {"r": 4, "alpha": 8, "use_rslora": False, "use_dora": False}
            (s.run_dir / "record.json").write_text(json.dumps(record))
    a = analysis.analyse(study, specs)
    assert a.data["r32"].config.lora.r == 4 and a.data["r32"].edited is None
    assert a.data["r32"].config.label().startswith("r4/α8")
    assert design.differences(a.data["b16"].config, a.data["r32"].config)["lora.r"] == (16, 4)
    md = build_report(study, specs, None, tmp_path / "results" / "sim", a).read_text()
    assert "| r32 | r4/α8, 4×4=16" in md and "| r32 | r32/α64" not in md
