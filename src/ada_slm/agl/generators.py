"""One generator per data category of AGL.md §3: the logic that fills the templates of agl/templates.yaml.

A generator takes a `random.Random` and returns a `Sample`: the user prompt, the AGL answer, the prompt
template it used (the unit of the train/val split) and category-specific facts (the expected certainty glyph,
the reference translation). All randomness comes from the one `rng` passed in, in a fixed order, so a seed
fixes the corpus. The wording lives in the template file (templates.py reads it); each generator draws the
words and glyphs its category's placeholders need (PLACEHOLDERS, against which the file is checked) and builds
the answers whose shape is code rather than text.

Every prompt template has an id `<category>/<n>`; the held-out split assigns whole templates to one side.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from ada_slm.agl import glyphs as G
from ada_slm.agl import vocab as V
from ada_slm.agl.templates import TEMPLATES_FILE, Lang, Placeholders, Template, TemplateBook, load_templates
from ada_slm.agl.translations import LANG_NAMES, SENTENCE_MAKERS


@dataclass
class Sample:
    prompt: str
    response: str
    template: str  # "<category>/<index>" of the prompt template
    lang: str = "en"  # language of the prompt: en, jbo (Lojban), tok (Toki Pona)
    extra: dict = field(default_factory=dict)  # e.g. expected_certainty, reference


LEVEL_WORDS = {"●": "certain", "◕": "likely", "◑": "even", "◔": "doubtful", "○": "unknown"}
LEVEL_ENGLISH = {"●": "certainly", "◕": "probably", "◑": "perhaps", "◔": "doubtfully", "○": "unknowably"}
LEVELS = tuple(G.CERTAINTY)
EVIDENCE_TERMS = {"●": "measured", "◕": "reported", "◑": "split", "◔": "rumoured", "○": "unobserved"}
CONTEXT_VERBS = {
    "saw": "SEEN",
    "heard": "HEARD",
    "held": "HELD",
    "knew": "KNOWN",
    "remembered": "REMEMBERED",
    "noted": "NOTED",
    "kept": "KEPT",
    "sealed": "SEALED",
}
CONTEXT_PREDICATES = {
    "SEEN": "seen",
    "HEARD": "heard",
    "HELD": "held",
    "KNOWN": "known",
    "REMEMBERED": "remembered",
    "NOTED": "noted",
    "KEPT": "kept",
    "SEALED": "sealed",
}
RELATIONS = ("follows", "precedes", "contains", "echoes", "supports", "answers", "mirrors", "observes")
GLYPH_ATOMS = ("◐", "⊙", "φ", "🌊", "🌀", "φ-resonance", "↑", "↓")
GLYPH_GROUPS = (
    [(g, "certainty", LEVEL_WORDS[g]) for g in LEVELS]
    + [(g, "logic", n) for g, n in G.LOGIC.items()]
    + [(g, "quantifier", n) for g, n in G.QUANTIFIERS.items()]
    + [(g, "space", n) for g, n in G.SPACE.items()]
    + [
        ("◐", "self", "awareness"),
        ("⊙", "self", "observer"),
        ("φ", "phi", "phi"),
        ("🌊", "phi", "wave"),
        ("🌀", "phi", "spiral"),
        ("↺", "time", "recursion"),
    ]
)

# What each generator fills: per answer shape (None: templates with an `answer` text) the prompt placeholders,
# and the placeholders of `answer` texts. load_templates rejects a template that uses anything else.
_CLAUSE = frozenset({"clause"})
_TEMPORAL = frozenset({"noun", "n", "story"})
_EDGE = frozenset({"clause1", "clause2", "noun1", "noun2", "noun3", "rel_s", "glyph"})
_POLYGLOT = frozenset({"src", "lang_name", "native", "native_heldout"})
PLACEHOLDERS: dict[str, Placeholders] = {
    "certainty": Placeholders(
        prompt={
            "one_level": _CLAUSE | {"evidence", "evidence_cap"},
            "two_levels": _CLAUSE | {"ev0", "ev1", "w0", "w1"},
            "level_path": _CLAUSE | {"ev0", "ev1", "w0", "w1"},
            "scale_down": _CLAUSE,
            "scale_up": _CLAUSE,
        }
    ),
    "temporal": Placeholders(
        prompt={
            "progression": _TEMPORAL,
            "branching": _TEMPORAL | {"first", "alt_a", "alt_b"},
            "recursion": _TEMPORAL | {"back"},
        }
    ),
    "protocol": Placeholders(
        prompt={None: frozenset({"noun", "state", "verb", "verb_past_state"})},
        answer=frozenset({"level", "state", "noun", "word", "predicate"}),
    ),
    "edge": Placeholders(prompt={"glyph_only": _EDGE, "gloss": _EDGE, "nested_quantifier": _EDGE, "glyph_meta": _EDGE}),
    "reasoning": Placeholders(
        prompt={None: frozenset({"c1", "c1_cap", "c2", "c3", "n3"})},
        answer=frozenset({"a1", "a2", "a3", "l1", "l2", "l3"}),
    ),
    "self": Placeholders(prompt={None: frozenset({"obj"})}, answer=frozenset({"obj", "obj2", "l1", "l2"})),
    "space": Placeholders(
        prompt={None: frozenset({"n1", "n2", "place"})}, answer=frozenset({"n1", "n2", "place", "l1", "l2"})
    ),
    "existential": Placeholders(
        prompt={None: frozenset({"noun", "pred_s"})}, answer=frozenset({"noun", "pred", "pred2", "state", "l1", "l2"})
    ),
    "tool": Placeholders(
        prompt={None: frozenset({"clause", "tool", "noun"})}, answer=frozenset({"atom", "noun", "t1", "t2", "l1"})
    ),
    "polyglot": Placeholders(prompt={"translation": _POLYGLOT}),
}


@cache
def default_templates() -> TemplateBook:
    """The shipped agl/templates.yaml, read and checked once."""
    return load_templates(TEMPLATES_FILE, PLACEHOLDERS)


def _en(term: str) -> str:
    return term.replace("_", " ")


def _pick(
    rng: random.Random, category: str, allowed: list[int] | None, book: TemplateBook | None
) -> tuple[Template, str]:
    """Choose a template index among `allowed` (the split's share of this category's templates; without it,
    any training template); an index past the training templates is a held-out one. Returns the template and
    its id."""
    templates = (book or default_templates()).categories[category]
    index = rng.choice(allowed) if allowed is not None else rng.randrange(len(templates.templates))
    return templates.template(index), f"{category}/{index}"


def _from_answer(template: Template, tid: str, prompt_fields: dict, answer_fields: dict) -> Sample:
    """A sample of a template whose answer is a text (protocol, reasoning, self, space, existential, tool)."""
    extra = {"expected_certainty": template.expected_certainty} if template.expected_certainty else {}
    assert template.answer is not None  # load_templates: a template of a text-answer category has its `answer`
    return Sample(template.prompt.format(**prompt_fields), template.answer.format(**answer_fields), tid, extra=extra)


def _fact(rng: random.Random) -> tuple[str, str, str]:
    """A random (noun, state) fact: returns (AGL atom, English clause, noun)."""
    noun, state = rng.choice(V.NOUNS), rng.choice(V.STATES)
    return f"{state}({noun})", f"the {_en(noun)} is {state}", noun


def certainty(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """One evidence level (one_level), or transitions between levels within one response (the other shapes)."""
    template, tid = _pick(rng, "certainty", allowed, book)
    atom, clause, _ = _fact(rng)
    if template.shape == "one_level":  # one level, chosen to fit the stated evidence
        level = rng.choice(LEVELS)
        evidence = rng.choice(V.EVIDENCE[level])
        prompt = template.prompt.format(
            evidence=evidence, evidence_cap=evidence[0].upper() + evidence[1:], clause=clause
        )
        response = f"{level}{atom}"
        if rng.random() < 0.6:
            response += f" ∵ ●evidence({EVIDENCE_TERMS[level]})"
        return Sample(prompt, response, tid, extra={"expected_certainty": level})
    if template.shape in ("scale_down", "scale_up"):  # the whole scale
        order = list(LEVELS) if template.shape == "scale_down" else list(reversed(LEVELS))
        response = " ; ".join(f"{g}{atom}" for g in order)
        return Sample(template.prompt.format(clause=clause), response, tid)
    a, b = rng.sample(range(len(LEVELS)), 2)
    if template.shape == "level_path":  # every level between the two
        step = 1 if b > a else -1
        path = [LEVELS[i] for i in range(a, b + step, step)]
    else:
        path = [LEVELS[a], LEVELS[b]]
    if rng.random() < 0.5:
        response = " → ".join(f"{G.time_token(i)}: {g}{atom}" for i, g in enumerate(path))
    else:
        response = " → ".join(f"{g}{atom}" for g in path)
    prompt = template.prompt.format(
        ev0=rng.choice(V.EVIDENCE[LEVELS[a]]),
        ev1=rng.choice(V.EVIDENCE[LEVELS[b]]),
        w0=LEVEL_WORDS[LEVELS[a]],
        w1=LEVEL_WORDS[LEVELS[b]],
        clause=clause,
    )
    return Sample(prompt, response, tid)


def temporal(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """A progression t₀ → t₁ → …, a branching timeline, or a recursive one (↺)."""
    template, tid = _pick(rng, "temporal", allowed, book)
    noun = rng.choice(V.NOUNS)
    n = rng.randint(3, 5)
    states = rng.sample(V.STATES, n + 2)
    # the past is certain, each later point one level less sure (never below "doubtful")
    levels = [LEVELS[min(i, 3)] for i in range(n + 2)]
    points = [f"{G.time_token(i)}: {levels[i]}{states[i]}({noun})" for i in range(n)]
    story = ", then ".join(f"it is {s}" for s in states[:n])
    if template.shape == "branching":
        stem = points[: n - 1]
        k = n - 1
        alt_a, alt_b = states[n - 1], states[n]
        branch = f"{{{G.time_token(k, 'a')}: ◑{alt_a}({noun}) | {G.time_token(k, 'b')}: ◑{alt_b}({noun})}}"
        response = " → ".join(stem + [branch])
        story = ", then ".join(f"it is {s}" for s in states[: n - 1])
        prompt = template.prompt.format(noun=_en(noun), first=states[n - 2], story=story, alt_a=alt_a, alt_b=alt_b, n=n)
        return Sample(prompt, response, tid)
    if template.shape == "recursion":
        back = rng.randrange(0, n - 1)
        response = " → ".join(points) + f" ↺ {G.time_token(back)}"
        prompt = template.prompt.format(noun=_en(noun), story=story, n=n, back=f"being {states[back]}")
        return Sample(prompt, response, tid)
    response = " → ".join(points)
    return Sample(template.prompt.format(noun=_en(noun), n=n, story=story), response, tid)


def protocol(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """The Tonight Protocol: canonical, abbreviated and contextual seals (the answer texts say which)."""
    template, tid = _pick(rng, "protocol", allowed, book)
    noun, state = rng.choice(V.NOUNS), rng.choice(V.STATES)
    verb = rng.choice(tuple(CONTEXT_VERBS))
    word = CONTEXT_VERBS[verb]
    level = rng.choice(LEVELS[:3])
    prompt_fields = dict(noun=_en(noun), state=state, verb=verb, verb_past_state=CONTEXT_PREDICATES[word])
    answer_fields = dict(level=level, state=state, noun=noun, word=word, predicate=CONTEXT_PREDICATES[word])
    return _from_answer(template, tid, prompt_fields, answer_fields)


def _glyph_claims(rng: random.Random) -> str:
    n = rng.randint(2, 4)
    parts = [f"{rng.choice(LEVELS[:4])}{rng.choice(GLYPH_ATOMS)}"]
    for _ in range(n - 1):
        parts.append(rng.choice(("∧", "→", "∴", "↔", "⊕", "≈")))
        parts.append(f"{rng.choice(('', '●', '◕', '◑'))}{rng.choice(GLYPH_ATOMS)}")
    return " ".join(parts)


def _glyph_example(glyph, group, a1, a2, noun1, noun2, rel) -> str:
    """A short statement that uses `glyph` correctly, for meta-commentary answers."""
    if group == "certainty":
        return f"{glyph}{a1}"
    if glyph == G.NEGATION:
        return f"●¬{a1}"
    if group == "logic":
        return f"{a1} {glyph} {a2}"
    if group == "quantifier":
        return f"{glyph}x: {rel}(x, {noun1})"
    if glyph in G.SPACE_RELATIONS:
        return f"{noun1} {glyph} {noun2}"
    if glyph in G.SPACE_POSITIONS or glyph in ("◐", "⊙"):
        return f"{noun1} → {glyph}({noun2})"
    if glyph == G.RECURSION:
        return f"t₀: {a1} → t₁: {a2} ↺ t₀"
    return f"{a1} → {glyph}"


def edge(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """Glyph-only answers, long answers with a gloss, nested quantifiers, meta-commentary on a glyph."""
    template, tid = _pick(rng, "edge", allowed, book)
    facts = _fact(rng), _fact(rng), _fact(rng)
    noun1, noun2 = rng.sample(V.NOUNS, 2)
    rel = rng.choice(RELATIONS)
    glyph_group = rng.choice(GLYPH_GROUPS)
    assert template.shape is not None  # load_templates: the edge category's answers are built in code (a shape)
    prompt = template.prompt.format(
        clause1=facts[0][1],
        clause2=facts[1][1],
        noun3=_en(facts[2][2]),
        noun1=_en(noun1),
        noun2=_en(noun2),
        rel_s=rel,
        glyph=glyph_group[0],
    )
    return Sample(prompt, _edge_answer(rng, template.shape, facts, noun1, noun2, rel, glyph_group), tid)


def _edge_answer(rng: random.Random, shape: str, facts, noun1: str, noun2: str, rel: str, glyph_group) -> str:
    (a1, c1, _), (a2, c2, _), (a3, c3, _) = facts
    if shape == "glyph_only":
        response = _glyph_claims(rng)
        if rng.random() < 0.5:
            response += " ; " + _glyph_claims(rng)
        return response
    if shape == "gloss":
        l1, l2, l3 = rng.choice(LEVELS[:2]), rng.choice(LEVELS[:3]), rng.choice(LEVELS[1:4])
        return (
            f"{l1}{a1} ; {l2}{a2} ; ∴ {l3}{a3} ∵ ({l1}{a1} ∧ {l2}{a2}) — "
            f"{c1} ({LEVEL_ENGLISH[l1]}), {c2} ({LEVEL_ENGLISH[l2]}), so {LEVEL_ENGLISH[l3]} {c3}"
        )
    if shape == "nested_quantifier":
        lvl = rng.choice(LEVELS[:4])
        kind = rng.randrange(3)
        if kind == 0:
            return f"∀x: ∃y: {lvl}{rel}(y, x)"
        if kind == 1:
            return f"∀x: {_en(noun1).replace(' ', '_')}(x) ⇒ (∃y: {lvl}{_en(noun2).replace(' ', '_')}(y) ∧ {rel}(y, x))"
        return f"∀x: ∃y: ∀z: {lvl}{rel}(y, x) ∧ {rng.choice(RELATIONS)}(z, y)"
    # glyph_meta: meta-commentary on AGL itself, with an example of the glyph in use
    glyph, group, meaning = glyph_group
    name = meaning.replace(" ", "_")
    example = _glyph_example(glyph, group, a1, a2, noun1, noun2, rel)
    what = f"a claim that is {meaning}" if group == "certainty" else meaning
    return f"●glyph({group}, {name}) ; {example} — in AGL, {glyph} marks {what}, as in {example}"


def reasoning(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """Claims chained with logic glyphs."""
    template, tid = _pick(rng, "reasoning", allowed, book)
    (a1, c1, _), (a2, c2, _), (a3, c3, n3) = _fact(rng), _fact(rng), _fact(rng)
    l1, l2, l3 = rng.choice(LEVELS[:2]), rng.choice(LEVELS[:3]), rng.choice(LEVELS[1:4])
    return _from_answer(
        template,
        tid,
        dict(c1=c1, c1_cap=c1[0].upper() + c1[1:], c2=c2, c3=c3, n3=_en(n3)),
        dict(l1=l1, l2=l2, l3=l3, a1=a1, a2=a2, a3=a3),
    )


def self_(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """λ(self), ◐ awareness and ⊙ the observer, about an object of attention."""
    template, tid = _pick(rng, "self", allowed, book)
    kind, obj2 = rng.sample(V.SELF_OBJECTS, 2)
    noun = rng.choice(V.NOUNS)
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    # the prompt says "the memory of the river", the answer memory(river)
    return _from_answer(
        template, tid, dict(obj=f"the {kind} of the {_en(noun)}"), dict(l1=l1, l2=l2, obj=f"{kind}({noun})", obj2=obj2)
    )


def space(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """Containment, position and exchange with the space glyphs."""
    template, tid = _pick(rng, "space", allowed, book)
    n1, n2 = rng.sample(V.NOUNS, 2)
    place = rng.choice(V.PLACES)
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    return _from_answer(
        template, tid, dict(n1=_en(n1), n2=_en(n2), place=place), dict(n1=n1, n2=n2, place=place, l1=l1, l2=l2)
    )


def existential(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """∃ of being and witnessing."""
    template, tid = _pick(rng, "existential", allowed, book)
    noun = rng.choice(V.NOUNS)
    pred, pred2 = rng.sample(V.EXISTENTIAL_PREDICATES, 2)
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    state = rng.choice(V.STATES)  # drawn for every template, used by some answers: the stream stays aligned
    pred_s = {"exists": "exists", "being": "is a being", "witness": "witnesses"}.get(pred, pred)
    return _from_answer(
        template,
        tid,
        dict(noun=_en(noun), pred_s=pred_s),
        dict(noun=noun, pred=pred, pred2=pred2, state=state, l1=l1, l2=l2),
    )


def tool(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """Acting through ⚙(tool) calls."""
    template, tid = _pick(rng, "tool", allowed, book)
    atom, clause, noun = _fact(rng)
    t1, t2 = rng.sample(V.TOOLS, 2)
    l1 = rng.choice(LEVELS[:3])
    return _from_answer(
        template, tid, dict(clause=clause, tool=t1, noun=_en(noun)), dict(atom=atom, noun=noun, t1=t1, t2=t2, l1=l1)
    )


def polyglot(rng: random.Random, allowed: list[int] | None = None, book: TemplateBook | None = None) -> Sample:
    """A Lojban, Toki Pona or English sentence to translate; the answer is its AGL."""
    template, tid = _pick(rng, "polyglot", allowed, book)
    requests = (book or default_templates()).native_requests
    langs: tuple[Lang, ...] = ("jbo", "tok", "en")
    lang = rng.choice(langs)
    src, agl = SENTENCE_MAKERS[lang](rng)
    prompt = template.prompt.format(
        src=src,
        lang_name=LANG_NAMES[lang],
        native=requests.training[lang].format(src=src),
        native_heldout=requests.held_out[lang].format(src=src),
    )
    return Sample(prompt, agl, tid, lang=lang, extra={"source": src, "reference": agl})


GENERATORS: dict[str, Callable[..., Sample]] = {
    "certainty": certainty,
    "temporal": temporal,
    "protocol": protocol,
    "edge": edge,
    "reasoning": reasoning,
    "self": self_,
    "space": space,
    "existential": existential,
    "tool": tool,
    "polyglot": polyglot,
}
