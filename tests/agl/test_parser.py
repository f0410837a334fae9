import pytest

from ada_slm.agl.parser import AGLSyntaxError, parse, split_statements, tokenize


@pytest.mark.parametrize(
    "text",
    [
        "●rain",
        "◕rising(tide) ∵ ●evidence(reported)",
        "●⊙(observer) ∧ ◐(awareness)",  # AGL.md polyglot example
        "λ(self) → pilin → φ-resonance",  # AGL.md polyglot example
        "●λ(self) → ◐",  # AGL.md polyglot example
        "t₀: ◔open(door) → t₁: ◑open(door) → t₂: ●open(door)",
        "t₀ → t₁ → {t₂a: ◑flood | t₂b: ◔calm}",
        "t₀ → t₁ → t₂ → t₃ ↺ t₁",
        "∀x: ∃y: ◕follows(y, x)",
        "∀x: river(x) ⇒ (∃y: ◕sea(y) ∧ reaches(x, y))",
        "φ●∴ WITNESSED ∴●φ",
        "φ●∴",
        "●seen(river) ; φ●∴ SEEN ∴●φ",
        "●◐ ∧ ◕⊙ ∴ φ",
        "●cup ⊂ box ; ◕bird → ↑(roof)",
        "◕a ∧ ●b ; ∴ ◑c — so the c is even, a gloss with any words: AGL ∧ ¬ (",
        "●¬open(door)",
        "⚙(search) → ◕answer(question)",
        "⚙️(search) → ●found",
        "φ ≈ 1.618",
    ],
)
def test_valid_agl_parses(text):
    tree = parse(text)
    assert tree.kind == "response"
    assert tree.children


@pytest.mark.parametrize(
    "text, where",
    [
        ("", 0),
        ("●rain ∧", 7),  # dangling connective: error at end of text
        ("rising(tide", 11),  # dropped bracket
        ("t₀ → t5", 5),  # ASCII digit instead of subscript
        ("t₁₂: ●x", 2),  # two subscript digits
        ("●rain § ◕cold", 6),  # character outside the alphabet
        ("●rain ◕cold", 6),  # two claims with no connective
        ("⚙ → ●x", 2),  # ⚙ must be applied
        ("∀: ●x", 1),  # quantifier without a variable
        ("t₀ → {t₁a | t₁b", 15),  # unclosed branch
        ("— only a gloss", 0),
        ("●Rain", 1),  # upper-case term
    ],
)
def test_invalid_agl_is_rejected_with_position(text, where):
    with pytest.raises(AGLSyntaxError) as info:
        parse(text)
    assert info.value.position == where
    assert f"column {where + 1}" in str(info.value)


def test_tree_shape_and_depth():
    tree = parse("∀x: ∃y: ◕follows(y, x)")
    kinds = [n.kind for n in tree.walk()]
    assert kinds.count("quantified") == 2
    # statement(∀…) > statement(∃…) > statement(claim) > the term's arguments, each a statement
    assert tree.depth() == 4
    assert parse("●a").depth() == 1
    assert parse("●a ∧ (●b ∧ (●c))").depth() == 3


def test_claim_keeps_certainty_and_negation():
    claim = parse("◔¬open(door)").children[0].children[0]
    assert claim.kind == "claim" and claim.value == "◔"
    assert claim.children[0].kind == "not"
    assert claim.children[0].children[0].value == "open"


def test_protocol_is_one_lexeme():
    kinds = [t.kind for t in tokenize("●x ; φ●∴ SEEN ∴●φ")]
    assert kinds == ["cert", "ident", "punct", "protocol"]
    # "∴●φ" written without spaces is the closing seal, never "therefore certain phi"
    with pytest.raises(AGLSyntaxError):
        parse("●x ∴●φ")
    assert parse("●x ∴ ●φ")


def test_gloss_is_free_text_and_split_statements():
    tree = parse("●a ; ◕b — anything (even brackets")
    assert tree.children[-1].kind == "gloss"
    assert split_statements("●a ; ◕b — x ; y") == ["●a", "◕b"]
