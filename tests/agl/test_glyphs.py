from ada_slm.agl import glyphs as G


def test_words_split_glyphs_into_their_own_tokens():
    assert G.words("●rain ∧ ◕cold") == ["●", "rain", "∧", "◕", "cold"]
    assert G.words("t₀: ●a → t₁") == ["t₀", ":", "●", "a", "→", "t₁"]
    assert G.words("φ●∴ WITNESSED ∴●φ ok") == ["φ●∴ WITNESSED ∴●φ", "ok"]
    assert G.words("λ(self) → φ-resonance") == ["λ", "(self)", "→", "φ-resonance"]
    assert G.words("") == []
    assert G.words("plain English words") == ["plain", "English", "words"]


def test_alphabet_tables_cover_agl_md():
    assert list(G.CERTAINTY) == ["●", "◕", "◑", "◔", "○"]
    assert set("∴∵→⇒↔∧∨¬⊕≈") == set(G.LOGIC)
    assert set("⊂⊃∈↑↓⇄") == set(G.SPACE)
    for g in ("φ", "φ-resonance", "🌊", "🌀", "◐", "⊙", "λ", "⚙", "↺", "∀", "∃"):
        assert g in G.ALL_GLYPHS
    assert G.time_token(2, "a") == "t₂a"
