"""`study plan` before any run: throughput kept once per machine kind with the model cache (else the README's
estimate, marked as one), and the detectable Δ of the design from default variance components."""

import os
import subprocess

import pytest

from ada_slm.analysis import plan
from tests.shared import CLI


def record(tokens_per_s, kind="avx2", base="smollm2-135m", max_length=256, generation_s=35.0):
    steps = [{"step": k, "tokens": 1136, "sequences": 16} for k in (1, 2)]
    return {
        "meta": {
            "base": base,
            "precision": "fp32",
            "device": "cpu",
            "precision_choice": {"requested": "auto", "machine_kind": kind},
        },
        "config": {"max_length": max_length},
        "status": {"state": "complete"},
        "train": {"tokens_per_s": tokens_per_s, "steps": steps},
        "eval": {"generation_s": generation_s, "n_items": 133, "generation": {"max_new_tokens": 48}},
    }


def test_throughput_is_measured_once_per_machine_kind_and_kept(tmp_path):
    path = tmp_path / "throughput.json"
    added = plan.remember([("phase14d", record(100.0)), ("phase14d", record(120.0))], path)
    assert added == ["avx2/fp32/smollm2-135m/max_length 256"]
    assert plan.remember([("other", record(999.0))], path) == []  # kept: a later study does not overwrite it
    store = plan.read_store(path)
    t = plan.throughput_for("avx2", "fp32", "smollm2-135m", 256, store)
    assert not t.estimate and t.tokens_per_s == pytest.approx(110.0) and t.tokens_per_sequence == pytest.approx(71.0)
    assert "measured on this machine kind" in t.source and "phase14d" in t.source
    assert plan.eval_seconds(t, 133, 24) == pytest.approx(17.5)  # half the generation budget
    # another sequence cap is another measurement: the README's estimate until it is measured
    assert plan.throughput_for("avx2", "fp32", "smollm2-135m", 96, store).estimate
    path.write_text("{not json")
    assert plan.read_store(path) == {}


def test_without_a_measurement_the_estimate_is_marked_and_unknown_kinds_get_none():
    t = plan.throughput_for("amx", "bf16", "smollm2-135m", 256, {})
    assert t.estimate and t.source.startswith("ESTIMATE for machine kind amx") and t.tokens_per_s == 170.0
    assert plan.throughput_for("other", "fp32", "smollm2-135m", 256, {}) is None
    assert plan.throughput_for("avx2", "fp32", "LiquidAI/LFM2-350M", 256, {}) is None


def test_detectable_effect_from_default_components_at_the_plan_design():
    """From the kept phase14d cpu study's components (α 0.025, two questions): runs paired by seed 0.081 at 3 runs per
    arm and 0.072 at 20, against 0.089 and 0.073 unpaired; more items sharpen it, more seeds hardly."""
    pw, source = plan.default_power("agl_awareness", 3, 133, 2)
    assert pw.alpha == pytest.approx(0.025) and "phase14d" in source and pw.paired
    assert pw.detectable[3] == pytest.approx(0.081, abs=0.002)
    assert pw.detectable[20] == pytest.approx(0.072, abs=0.002)
    assert pw.detectable_unpaired[3] == pytest.approx(0.089, abs=0.002)
    unpaired, _ = plan.default_power("agl_awareness", 3, 133, 2, pairing="none")
    assert not unpaired.paired and unpaired.detectable == pw.detectable_unpaired
    assert plan.default_power("agl_awareness", 3, 1000, 2)[0].detectable[3] < 0.05
    assert plan.default_power("agl_awareness", 3, 16, 2)[0].detectable[3] > 0.15  # the quick scale's 16 items
    assert plan.default_power("well_formed", 3, 133, 2) is None


@pytest.mark.slow
def test_study_plan_prints_time_and_power_before_any_run(tmp_path):
    """The quick phase14d before any run, with this machine kind's throughput kept in the cache."""
    kind, precision = plan.this_machine()
    env = os.environ | {"ADA_SLM_CACHE": str(tmp_path / "cache")}
    env.pop("ADA_SLM_THROUGHPUT")  # conftest's; here the default place beside the model cache is tested
    store = {
        plan.machine_key(kind, precision, "smollm2-135m", 96): {
            "tokens_per_s": 100.0,
            "tokens_per_sequence": 50.0,
            "eval_s_per_item": 0.5,
            "eval_max_new_tokens": 10,
            "runs": 2,
            "study": "earlier",
            "measured": "2026-12-01",
        }
    }
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / plan.THROUGHPUT_FILE).write_text(__import__("json").dumps(store))
    p = subprocess.run(
        CLI + ["study", "plan", "phase14d", "--scale", "quick", "--results", str(tmp_path / "r"), "--jobs", "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    # piped: 80 columns, a block per arm (the table with --wide)
    assert max(len(line) for line in p.stdout.splitlines()) <= 80, p.stdout
    assert "v9C: r32/α64, 1×16=16, 120 ex, 2 steps · smollm2-135m" in p.stdout and "┃" not in p.stdout
    out = " ".join(p.stdout.split())
    assert "no finished run yet" not in out
    assert f"measured on this machine kind ({kind}, {precision}) on 2026-12-01 in study earlier" in out
    # 10 trained runs × 2 steps × 16 sequences × 50 tokens / 100 tokens/s = 160 s; 12 evaluations × 16 items × 0.5 s
    # = 96 s; two at a time: 128 s
    assert (
        "time of the 12 runs to do: training 2.7 min + evaluation 1.6 min + set-up (not measured yet) of runs; "
        "2 at a time (--jobs): ≈ 2.1 min of wall time"
    ) in out
    assert "power on agl_awareness from default components" in out and "16 items" in out
    assert "at 2 runs per arm (this plan):" in out and "unpaired" not in out  # 2 seeds are not paired


def test_a_record_of_another_shape_is_no_measurement(tmp_path):
    odd = record(100.0)
    odd["train"]["steps"] = [{"step": 1}]  # no token counts
    assert plan.remember([("s", odd)], tmp_path / "throughput.json") == []
    assert not (tmp_path / "throughput.json").exists()


def test_an_evaluation_served_by_the_eval_cache_is_no_measurement_of_generation(tmp_path):
    path = tmp_path / "throughput.json"
    hit = record(100.0, generation_s=0.7)
    hit["eval"]["cached_from"] = {"run": "base/seed0"}
    plan.remember([("phase14d", hit), ("phase14d", record(100.0, generation_s=35.0))], path)
    t = plan.throughput_for("avx2", "fp32", "smollm2-135m", 256, plan.read_store(path))
    assert plan.eval_seconds(t, 133, 48) == pytest.approx(35.0)  # the hit's 0.7 s is left out, not averaged in


def test_a_runs_overhead_is_measured_from_its_whole_wall_time(tmp_path):
    """run_wall_s (the run's process from spec to record) less its step seconds and its generation: set-up,
    held-out loss and export, kept with the throughput and added to every run of the plan."""
    path = tmp_path / "throughput.json"
    timed = record(100.0)  # 2 steps × 1136 tokens at 100 tokens/s = 22.72 s of steps, 35 s of generation
    timed["meta"]["run_wall_s"] = 70.0
    timed["meta"]["torch_threads"] = 1
    plan.remember([("phase14d", timed)], path)
    t = plan.throughput_for("avx2", "fp32", "smollm2-135m", 256, plan.read_store(path))
    assert t.overhead_s == pytest.approx(70.0 - 22.72 - 35.0)
    assert "1 thread(s) per run" in t.source
    assert (
        plan.throughput_for(
            "avx2",
            "fp32",
            "smollm2-135m",
            256,
            {plan.machine_key("avx2", "fp32", "smollm2-135m", 256): {"tokens_per_s": 1.0, "tokens_per_sequence": 1.0}},
        ).overhead_s
        is None
    )


@pytest.mark.slow
def test_study_plan_refuses_a_plan_over_its_budget_unless_forced(tmp_path):
    env = os.environ | {"ADA_SLM_CACHE": str(tmp_path / "cache")}
    args = CLI + ["study", "plan", "phase14d", "--scale", "cpu", "--results", str(tmp_path / "r"), "--jobs", "2"]
    over = subprocess.run(args + ["--budget-hours", "0.01"], capture_output=True, text=True, env=env)
    assert over.returncode == 1 and over.stdout == "" and "over --budget-hours 0.01" in over.stderr
    assert len(over.stderr.strip().splitlines()) == 1
    forced = subprocess.run(args + ["--budget-hours", "0.01", "--force"], capture_output=True, text=True, env=env)
    assert forced.returncode == 0 and "v9C-ran" in forced.stdout
    assert subprocess.run(args + ["--budget-hours", "100"], capture_output=True, text=True, env=env).returncode == 0
