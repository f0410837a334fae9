"""Statistics on synthetic studies with known effects (fixed seeds, so these are deterministic)."""

import numpy as np
import pytest

from ada_slm import stats


def synth(rng, mean, n_seeds=8, n_items=30, seed_sd=0.02, item_sd=0.05, noise_sd=0.03, item_effects=None):
    """seed -> item -> score: mean + a per-seed (training) effect + a per-item effect shared by all arms + noise."""
    items = item_effects if item_effects is not None else rng.normal(0, item_sd, n_items)
    out = {}
    for s in range(n_seeds):
        seed_effect = rng.normal(0, seed_sd)
        out[s] = {f"i{j}": float(mean + seed_effect + items[j] + rng.normal(0, noise_sd)) for j in range(len(items))}
    return out


def test_ci_covers_the_true_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    covered, trials, true_delta = 0, 120, 0.04
    for t in range(trials):
        items = rng.normal(0, 0.05, 30)
        a = synth(rng, 0.30 + true_delta, item_effects=items)
        b = synth(rng, 0.30, item_effects=items)
        c = stats.compare(a, b, "m", seed=t, n_boot=400, n_perm=200)
        covered += c.delta.low <= true_delta <= c.delta.high
    assert 0.85 <= covered / trials <= 1.0


def test_null_effects_are_flagged_at_about_alpha():
    rng = np.random.default_rng(1)
    flagged, trials = 0, 120
    for t in range(trials):
        items = rng.normal(0, 0.05, 30)
        a, b = synth(rng, 0.3, item_effects=items), synth(rng, 0.3, item_effects=items)
        c = stats.compare(a, b, "m", seed=t, n_boot=400, n_perm=200)
        flagged += c.delta.excludes_zero() and c.p < stats.ALPHA
    assert flagged / trials <= 0.12


def test_a_real_effect_is_detected():
    rng = np.random.default_rng(2)
    items = rng.normal(0, 0.05, 30)
    a, b = synth(rng, 0.5, item_effects=items), synth(rng, 0.3, item_effects=items)
    comps = stats.compare_all({"m": a, "z": b}, {"m": b, "z": b}, ["m", "z"])
    assert comps["m"].significant and comps["m"].delta.mean == pytest.approx(0.2, abs=0.03)
    assert comps["m"].ratio[0] == pytest.approx(0.5 / 0.3, rel=0.1)
    assert comps["m"].ratio[1] < comps["m"].ratio[0] < comps["m"].ratio[2]
    assert not comps["z"].significant and comps["z"].p == 1.0  # identical arms


def test_ratio_only_over_a_baseline_clearly_above_zero_and_the_noise_floor():
    rng = np.random.default_rng(3)
    zero = {s: {f"i{j}": 0.0 for j in range(20)} for s in range(3)}
    tiny = {s: {f"i{j}": (0.02 if j == 0 else 0.0) for j in range(20)} for s in range(3)}  # one item scores
    some = synth(rng, 0.1, n_seeds=3, n_items=20)
    assert stats.compare(some, zero, "m").ratio is None
    assert stats.compare(some, zero, "m").ratio_note == "n/a (baseline ≈ 0)"
    assert stats.compare(some, tiny, "m").ratio is None  # its CI reaches 0
    clear = synth(rng, 0.05, n_seeds=3, n_items=20, seed_sd=0.001, item_sd=0.001, noise_sd=0.001)
    assert stats.compare(some, clear, "m").ratio is not None
    assert stats.compare(some, clear, "m", noise_floor=0.06).ratio is None  # below the base model's floor


def test_holm():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def test_confound_and_equivalence_rules():
    # the seed's v9C vs v9B as designed: rank doubles, split 4×4 → 1×16 at the same effective batch
    fd = stats.factors_between({"lora.r": (32, 16), "lora.alpha": (64, 32), "batch.micro": (1, 4),
                                "batch.accum": (16, 4)})
    assert set(fd.factors) == {"rank", "batch split"} and not fd.confounded
    # as it actually ran: micro 4 × accum 16 = 64 → a second real factor
    fd = stats.factors_between({"lora.r": (32, 16), "lora.alpha": (64, 32), "batch.accum": (16, 4),
                                "batch.effective": (64, 16)})
    assert set(fd.factors) == {"rank", "effective batch"} and fd.confounded
    fd = stats.factors_between({"batch.micro": (1, 4), "batch.accum": (16, 4)})
    assert fd.split_only and not fd.confounded
    fd = stats.factors_between({"lora.r": (32, 16), "lora.alpha": (32, 32)})  # α/r changes too
    assert set(fd.factors) == {"rank", "lora.alpha"} and fd.confounded
    fd = stats.factors_between({"data.size": (5000, 2000)})
    assert set(fd.factors) == {"data size"} and not fd.confounded


def test_factorial_2x2_recovers_known_effects():
    """Factor 1 adds 0.1, factor 2 nothing, no interaction: over 30 synthetic studies the main effect of factor 1
    is always found and its CI covers 0.1; the null effects are flagged rarely."""
    rng = np.random.default_rng(4)
    cells = {(0, 0): 0.20, (0, 1): 0.20, (1, 0): 0.30, (1, 1): 0.30}
    found = covered = false_main2 = false_inter = 0
    for t in range(30):
        items = rng.normal(0, 0.03, 40)
        data = {k: synth(rng, v, n_seeds=6, n_items=40, seed_sd=0.005, item_effects=items) for k, v in cells.items()}
        main1, main2, inter = stats.factorial_2x2(data, seed=t, n_boot=300)
        found += main1.interval.excludes_zero()
        covered += main1.interval.low < 0.1 < main1.interval.high
        false_main2 += main2.interval.excludes_zero()
        false_inter += inter.interval.excludes_zero()
    assert found == 30 and covered >= 25
    assert false_main2 <= 6 and false_inter <= 6


def test_goldilocks_only_with_support():
    rng = np.random.default_rng(5)
    items = rng.normal(0, 0.03, 30)
    peak = [(16, synth(rng, 0.2, item_effects=items)), (32, synth(rng, 0.4, item_effects=items)),
            (48, synth(rng, 0.2, item_effects=items))]
    claimed, text = stats.goldilocks(peak)
    assert claimed and "interior optimum at 32" in text
    flat = [(16, synth(rng, 0.3, item_effects=items)), (32, synth(rng, 0.3, item_effects=items)),
            (48, synth(rng, 0.3, item_effects=items))]
    assert stats.goldilocks(flat) == (False, stats.goldilocks(flat)[1])
    assert "not supported" in stats.goldilocks(flat)[1]
    assert not stats.goldilocks(peak[:2])[0]


def test_required_seeds_formula():
    # per-seed mean differences 0.1 ± sd: n = ((1.96 + 0.8416) · sd / δ)²
    a = {s: {"i": 0.1 + d} for s, d in enumerate([0.05, -0.05, 0.05, -0.05])}
    b = {s: {"i": 0.0} for s in range(4)}
    sd = np.std([0.15, 0.05, 0.15, 0.05], ddof=1)
    expected = int(np.ceil(((1.959964 + 0.841621) * sd / 0.1) ** 2))
    assert stats.required_seeds(a, b) == max(2, expected)
    assert stats.required_seeds({0: {"i": 1.0}}, {0: {"i": 0.0}}) is None  # one seed: no spread to estimate
