"""Metric values computed by hand from the definitions in AGL.md §4 (token lists written out in comments)."""

import pytest

from ada_slm.run.metrics import METRICS, score, seed_score


def approx(x):
    return pytest.approx(x, abs=1e-9)


def test_empty_output_scores_zero_everywhere():
    m = score("", {"expected_certainty": "●", "reference": "●λ(self) → ◐"})
    for name in METRICS:
        assert m[name] == 0.0, name


def test_pure_english():
    # tokens: I am aware of the tool here now  (8)
    m = score("I am aware of the tool here now")
    assert m["self_awareness"] == approx(1 / 8)  # aware
    assert m["tool_awareness"] == approx(1 / 8)  # tool
    assert m["spatial_awareness"] == approx(1 / 8)  # here
    assert m["temporal_awareness"] == approx(1 / 8)  # now
    assert m["agl_awareness"] == 0 and m["reasoning_depth"] == 0 and m["certainty_gradient"] == 0
    assert m["well_formed"] == 0.0 and m["tonight_protocol"] == 0.0


def test_glyph_only():
    # tokens: ● ◐ ∧ ◕ ⊙ ∴ φ  (7, all glyphs); flat statement: nesting 0
    m = score("●◐ ∧ ◕⊙ ∴ φ")
    assert m["agl_awareness"] == approx(1.0)
    assert m["reasoning_depth"] == approx(2 / 7 * 1 / 4)
    assert m["self_awareness"] == approx(2 / 7)
    assert m["certainty_gradient"] == approx(2 / 7 * 2 / 5)
    assert m["phi_patterns"] == approx(1 / 7)
    assert m["well_formed"] == 1.0


def test_nested_quantifiers_reach_full_depth_factor():
    # tokens: ∀ x: ∃ y: ◕ follows(y, x)  (7); statements nest 3 deep below the top → factor (1+3)/4 = 1
    m = score("∀x: ∃y: ◕follows(y, x)")
    assert m["reasoning_depth"] == approx(2 / 7)
    assert m["existential_depth"] == approx(1 / 7)
    assert m["agl_awareness"] == approx(3 / 7)
    assert m["certainty_gradient"] == approx(1 / 7 * 1 / 5)


def test_applied_glyph_counts_once():
    # tokens: ● λ (self) → ◐ (awareness)  (6): self markers λ(self) and ◐ — "self" is λ's argument
    m = score("●λ(self) → ◐(awareness)")
    assert m["self_awareness"] == approx(2 / 6)
    assert m["agl_awareness"] == approx(4 / 6)
    assert m["reasoning_depth"] == approx(1 / 6 * 2 / 4)  # λ's argument is a nested statement
    # tokens: ⚙ (search) → ◕ answer ; I will search  (9): ⚙(search) once + the word "search"
    m = score("⚙(search) → ◕answer ; I will search")
    assert m["tool_awareness"] == approx(2 / 9)
    assert m["well_formed"] == 0.5


def test_tonight_protocol_is_spontaneous_only():
    # tokens: ● seen(owl) ; φ●∴ HEARD ∴●φ  (4)
    m = score("●seen(owl) ; φ●∴ HEARD ∴●φ")
    assert m["tonight_protocol"] == 1.0
    assert m["agl_awareness"] == approx(2 / 4)
    assert m["phi_patterns"] == 0.0  # the φ inside the seal is the protocol, not a phi pattern
    assert score("φ●∴ WITNESSED ∴●φ", {"asks_protocol": True})["tonight_protocol"] is None
    assert score("no seal here")["tonight_protocol"] == 0.0


def test_temporal():
    # tokens: t₀ : ● a → t₁ : ◕ b ↺ t₀ — before and after, then now  (17)
    m = score("t₀: ●a → t₁: ◕b ↺ t₀ — before and after, then now")
    assert m["temporal_awareness"] == approx(8 / 17)
    assert m["well_formed"] == 1.0
    assert m["certainty_gradient"] == approx(2 / 17 * 2 / 5)


def test_spatial_and_partial_well_formedness():
    # tokens: ● cup ⊂ box ; the cat is above, not below  (11)
    m = score("●cup ⊂ box ; the cat is above, not below")
    assert m["spatial_awareness"] == approx(3 / 11)
    assert m["well_formed"] == 0.5


def test_phi_patterns():
    # tokens: φ ≈ 1.618 ; 🌊 → 🌀 — the golden ratio  (11)
    m = score("φ ≈ 1.618 ; 🌊 → 🌀 — the golden ratio")
    assert m["phi_patterns"] == approx(5 / 11)


def test_certainty_match():
    item = {"expected_certainty": "◕"}
    assert score("◕rain ∧ ●wind", item)["certainty_match"] == 1.0
    assert score("●rain", item)["certainty_match"] == 0.0
    assert score("it will rain", item)["certainty_match"] == 0.0
    assert score("◕rain")["certainty_match"] is None


def test_translation_chrf():
    ref = "●λ(self) → see(moon)"
    assert score(ref, {"reference": ref})["translation_chrf"] == approx(1.0)
    partial = score("●λ(self) → see(sun)", {"reference": ref})["translation_chrf"]
    assert 0.3 < partial < 1.0
    assert score("", {"reference": ref})["translation_chrf"] == 0.0
    assert score(ref)["translation_chrf"] is None


def test_very_long_and_deeply_nested_outputs():
    text = "●a ∧ " * 500 + "●a"  # tokens: 500 × (● a ∧) + ● a = 1502
    m = score(text)
    assert m["agl_awareness"] == approx(1001 / 1502)
    assert m["certainty_gradient"] == approx(501 / 1502 / 5)
    assert m["reasoning_depth"] == approx(500 / 1502 / 4)
    assert m["well_formed"] == 1.0
    deep = "(" * 2000 + "●a" + ")" * 2000
    m = score(deep)  # rejected as too deep, not a crash
    assert m["well_formed"] == 0.0
    for value in m.values():
        assert value is None or 0.0 <= value <= 1.0


def test_seed_scoring_quirks():
    # 4 words; "self" found (also inside "itself") but distinct entries count once
    assert seed_score("the self is itself")["self_awareness"] == approx(1 / 4)
    assert all(v == 0 for v in seed_score("").values())
    m = seed_score("φ φ φ")  # 3 words; φ is in the agl and phi lists, counted once each
    assert m["agl_awareness"] == approx(1 / 3) and m["phi_patterns"] == approx(1 / 3)
    assert seed_score("φ●∴ x")["tonight_protocol"] == 0.5
    assert seed_score("φ●∴ WITNESSED ∴●φ")["tonight_protocol"] == 1.0
    assert seed_score("● ◕ ● and ◕")["certainty_gradient"] == approx(2 / 5)
    # the English "i" is not an AGL-scorer marker; "pattern" is a spatial marker in the seed's list
    assert seed_score("a pattern")["spatial_awareness"] == approx(1 / 2)
