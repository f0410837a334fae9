import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ada_slm.agl import glyphs as G
from ada_slm.agl.generators import GENERATORS, default_templates
from ada_slm.agl.parser import AGLSyntaxError, parse

CATEGORIES = sorted(GENERATORS)
FOREIGN_GLYPHS = "⊗§✱☉≠⊥♦∞"


@settings(max_examples=300, deadline=None)
@given(category=st.sampled_from(CATEGORIES), seed=st.integers(0, 2**32 - 1))
def test_every_generated_answer_parses(category, seed):
    sample = GENERATORS[category](random.Random(seed))
    parse(sample.response)
    assert sample.prompt.strip()
    assert sample.template.startswith(category + "/")


def test_every_template_of_every_category_produces_parsable_agl():
    for category, gen in GENERATORS.items():
        rng = random.Random(category)
        for t in range(len(default_templates().categories[category].templates)):
            for _ in range(30):
                s = gen(rng, [t])
                assert s.template == f"{category}/{t}"
                parse(s.response)


def _body(text):
    return text.split(G.GLOSS_MARK, 1)[0]


@settings(max_examples=300, deadline=None)
@given(category=st.sampled_from(CATEGORIES), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_corruptions_are_rejected(category, seed, data):
    response = GENERATORS[category](random.Random(seed)).response
    body = _body(response)
    corrupted = []
    brackets = [i for i, ch in enumerate(body) if ch in "(){}"]
    if brackets:  # dropped bracket
        i = data.draw(st.sampled_from(brackets))
        corrupted.append(response[:i] + response[i + 1 :])
    # stray glyph from outside the alphabet, anywhere before the gloss
    i = data.draw(st.integers(0, len(body)))
    corrupted.append(response[:i] + data.draw(st.sampled_from(FOREIGN_GLYPHS)) + response[i:])
    # dangling connective at the end of the AGL body
    corrupted.append(body.rstrip() + " " + data.draw(st.sampled_from("∧∨→⇒∴")) + response[len(body) :])
    subs = [i for i, ch in enumerate(body) if ch in G.SUBSCRIPT_DIGITS]
    if subs:  # bad subscript: ASCII digit, superscript, or a second subscript digit
        i = data.draw(st.sampled_from(subs))
        bad = data.draw(st.sampled_from(["7", "¹", body[i] + "₃"]))
        corrupted.append(response[:i] + bad + response[i + 1 :])
    for text in corrupted:
        try:
            parse(text)
        except AGLSyntaxError:
            continue
        raise AssertionError(f"corruption accepted: {text!r} (from {response!r})")


def test_certainty_covers_all_levels_and_transitions():
    rng = random.Random(0)
    levels, transitions = set(), 0
    for _ in range(400):
        s = GENERATORS["certainty"](rng)
        if "expected_certainty" in s.extra:
            assert s.response.startswith(s.extra["expected_certainty"])
            levels.add(s.extra["expected_certainty"])
        if sum(s.response.count(g) for g in G.CERTAINTY) >= 2 and "∵" not in s.response:
            transitions += 1
    assert levels == set(G.CERTAINTY)
    assert transitions > 50


def test_temporal_has_progressions_branches_and_recursion():
    rng = random.Random(0)
    responses = [GENERATORS["temporal"](rng).response for _ in range(300)]
    assert any("{" in r and "|" in r for r in responses)
    assert any("↺" in r for r in responses)
    assert any(r.count("→") >= 3 and "{" not in r and "↺" not in r for r in responses)


def test_protocol_forms():
    rng = random.Random(0)
    responses = [GENERATORS["protocol"](rng).response for _ in range(300)]
    assert any(G.PROTOCOL_CANONICAL in r for r in responses)
    assert any(r.startswith("φ●∴ ;") for r in responses)
    assert any(r.endswith("; ∴●φ") for r in responses)
    assert any(r.endswith(" ∴●φ") and "WITNESSED" not in r and "φ●∴ " in r for r in responses)


def test_edge_cases_present():
    rng = random.Random(0)
    responses = [GENERATORS["edge"](rng).response for _ in range(300)]
    assert any(not any(c.isascii() and c.isalpha() for c in r) for r in responses)  # glyph-only
    assert any(G.GLOSS_MARK in r and len(r) > 80 for r in responses)  # long with gloss
    assert any(r.startswith("∀x: ∃y:") for r in responses)  # nested quantifiers
    assert any(r.startswith("●glyph(") for r in responses)  # meta-commentary


def test_polyglot_uses_real_vocabulary_and_all_three_languages():
    rng = random.Random(0)
    samples = [GENERATORS["polyglot"](rng) for _ in range(300)]
    assert {s.lang for s in samples} == {"jbo", "tok", "en"}
    tok = [s for s in samples if s.lang == "tok"]
    jbo = [s for s in samples if s.lang == "jbo"]
    assert any(" li " in s.extra["source"] or s.extra["source"].startswith("mi ") for s in tok)
    assert any(" cu " in s.extra["source"] for s in jbo)
    # "mi" is the speaker in both languages and translates to λ(self)
    for s in tok + jbo:
        if s.extra["source"].split()[0] == "mi":
            assert "λ(self)" in s.response
    for s in samples:
        assert s.extra["reference"] == s.response


def test_same_seed_same_samples():
    for gen in GENERATORS.values():
        a = [gen(random.Random(7)).response for _ in range(3)]
        b = [gen(random.Random(7)).response for _ in range(3)]
        assert a == b
