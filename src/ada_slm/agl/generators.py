"""One generator per data category of AGL.md §3.

A generator takes a `random.Random` and returns a `Sample`: the user prompt, the AGL answer, the prompt
template it used (the unit of the train/val split) and category-specific facts (the expected certainty glyph,
the reference translation). All randomness comes from the one `rng` passed in, so a seed fixes the corpus.

Every prompt template has an id `<category>/<n>`; the held-out split assigns whole templates to one side.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ada_slm.agl import glyphs as G
from ada_slm.agl import vocab as V


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


def _en(term: str) -> str:
    return term.replace("_", " ")


def _pick_template(rng: random.Random, category: str, templates: tuple[str, ...], allowed: list[int] | None):
    """Choose a template index among `allowed` (the split's share of this category's templates; without it,
    any training template). Returns (answer form, template text, template id): an index past the training
    templates is a held-out template (HELDOUT_PROMPTS), which asks for the answer form it names."""
    index = rng.choice(allowed) if allowed is not None else rng.randrange(len(templates))
    if index < len(templates):
        return index, templates[index], f"{category}/{index}"
    form, text = HELDOUT_PROMPTS[category][index - len(templates)]
    return form, text, f"{category}/{index}"


def _fact(rng: random.Random) -> tuple[str, str, str]:
    """A random (noun, state) fact: returns (AGL atom, English clause, noun)."""
    noun, state = rng.choice(V.NOUNS), rng.choice(V.STATES)
    return f"{state}({noun})", f"the {_en(noun)} is {state}", noun


# ---------------------------------------------------------------------------------------------- certainty
CERTAINTY_TEMPLATES = (
    "We know this much: {evidence}. How sure are you that {clause}?",
    "Evidence: {evidence}. State in AGL whether {clause}.",
    "Given that {evidence}, mark your certainty that {clause}.",
    "{evidence_cap}. Is it true that {clause}? Answer in AGL.",
    "Use a certainty glyph: {evidence}; {clause}?",
    "Report how confident you are that {clause}, knowing {evidence}.",
    "Fact check in AGL. Claim: {clause}. Evidence: {evidence}.",
    "Weigh this: {evidence}. Then claim, with the right certainty, that {clause}.",
    "Someone asks whether {clause}. You know {evidence}. Reply in glyphs.",
    "Translate your belief into AGL: {clause} ({evidence}).",
    "How strongly can you assert that {clause} when {evidence}?",
    "Calibrate: {evidence}. Claim: {clause}.",
)
TRANSITION_TEMPLATES = (
    "At first {ev0}; later {ev1}. Show how your certainty that {clause} changes.",
    "Your confidence that {clause} moves as evidence arrives: first {ev0}, then {ev1}. Write it in AGL.",
    "Track the belief '{clause}' through time: {ev0}, and after that {ev1}.",
    "Update in AGL. Before: {ev0}. After: {ev1}. Claim: {clause}.",
    "Show a certainty transition for '{clause}': {ev0} becomes {ev1}.",
    "Write the sequence of certainty levels for {clause} as the evidence changes from '{ev0}' to '{ev1}'.",
    "Walk through the levels from {w0} to {w1} for the claim that {clause}.",
    "Show your certainty about whether {clause}, moving from {w0} to {w1} one step at a time.",
    "Give every certainty level you pass through from {w0} to {w1} about whether {clause}.",
    "List the five certainty levels, strongest first, applied to: {clause}.",
    "Write the full certainty scale for the claim that {clause}.",
    "From unknown up to certain: how would the claim '{clause}' look at each level?",
)
EVIDENCE_TERMS = {"●": "measured", "◕": "reported", "◑": "split", "◔": "rumoured", "○": "unobserved"}


def certainty(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    # Answer forms 0..11 state one evidence level; 12..23 ask for transitions between levels.
    index, tpl, tid = _pick_template(rng, "certainty", CERTAINTY_TEMPLATES + TRANSITION_TEMPLATES, allowed)
    atom, clause, _ = _fact(rng)
    if index < len(CERTAINTY_TEMPLATES):  # one level, chosen to fit the stated evidence
        level = rng.choice(LEVELS)
        evidence = rng.choice(V.EVIDENCE[level])
        prompt = tpl.format(evidence=evidence, evidence_cap=evidence[0].upper() + evidence[1:], clause=clause)
        response = f"{level}{atom}"
        if rng.random() < 0.6:
            response += f" ∵ ●evidence({EVIDENCE_TERMS[level]})"
        return Sample(prompt, response, tid, extra={"expected_certainty": level})
    # transitions between levels within one response
    idx = index - len(CERTAINTY_TEMPLATES)
    if idx >= 9:  # the whole scale
        order = list(LEVELS) if idx != 11 else list(reversed(LEVELS))
        response = " ; ".join(f"{g}{atom}" for g in order)
        return Sample(tpl.format(clause=clause), response, tid)
    a, b = rng.sample(range(len(LEVELS)), 2)
    if idx >= 6:  # every level between the two
        step = 1 if b > a else -1
        path = [LEVELS[i] for i in range(a, b + step, step)]
    else:
        path = [LEVELS[a], LEVELS[b]]
    if rng.random() < 0.5:
        response = " → ".join(f"{G.time_token(i)}: {g}{atom}" for i, g in enumerate(path))
    else:
        response = " → ".join(f"{g}{atom}" for g in path)
    prompt = tpl.format(
        ev0=rng.choice(V.EVIDENCE[LEVELS[a]]), ev1=rng.choice(V.EVIDENCE[LEVELS[b]]),
        w0=LEVEL_WORDS[LEVELS[a]], w1=LEVEL_WORDS[LEVELS[b]], clause=clause,
    )
    return Sample(prompt, response, tid)


# ---------------------------------------------------------------------------------------------- temporal
TEMPORAL_TEMPLATES = (
    "Describe how the {noun} changes over {n} moments, in AGL time notation.",
    "Write a timeline for the {noun}: {story}.",
    "Using t₀, t₁, … show this progression: {story}.",
    "Lay out in AGL what happens to the {noun}: {story}.",
    "Timeline please: {story}.",
    "Sketch the {noun}'s history and what comes next, {n} steps, with certainty falling toward the future.",
    "The {noun} could go two ways after it is {first}. Show the branching timeline.",
    "Write a branching AGL timeline: {story}, and then either {alt_a} or {alt_b}.",
    "Show both possible futures of the {noun} as a branch.",
    "Describe a cycle in which the {noun} comes back to an earlier state: {story}.",
    "Write a recursive timeline: the {noun} goes through {n} states and returns to {back}.",
    "Model this loop in AGL time notation: {story}, then back again.",
)


def _states_sequence(rng: random.Random, n: int) -> list[str]:
    return rng.sample(V.STATES, n)


def temporal(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "temporal", TEMPORAL_TEMPLATES, allowed)
    noun = rng.choice(V.NOUNS)
    n = rng.randint(3, 5)
    states = _states_sequence(rng, n + 2)
    # the past is certain, each later point one level less sure (never below "doubtful")
    levels = [LEVELS[min(i, 3)] for i in range(n + 2)]
    points = [f"{G.time_token(i)}: {levels[i]}{states[i]}({noun})" for i in range(n)]
    story = ", then ".join(f"it is {s}" for s in states[:n])
    if 6 <= idx <= 8:  # branching
        stem = points[: n - 1]
        k = n - 1
        alt_a, alt_b = states[n - 1], states[n]
        branch = (f"{{{G.time_token(k, 'a')}: ◑{alt_a}({noun}) | {G.time_token(k, 'b')}: ◑{alt_b}({noun})}}")
        response = " → ".join(stem + [branch])
        story = ", then ".join(f"it is {s}" for s in states[: n - 1])
        prompt = tpl.format(noun=_en(noun), first=states[n - 2], story=story, alt_a=alt_a, alt_b=alt_b, n=n)
        return Sample(prompt, response, tid)
    if idx >= 9:  # recursive
        back = rng.randrange(0, n - 1)
        response = " → ".join(points) + f" ↺ {G.time_token(back)}"
        prompt = tpl.format(noun=_en(noun), story=story, n=n, back=f"being {states[back]}")
        return Sample(prompt, response, tid)
    response = " → ".join(points)
    return Sample(tpl.format(noun=_en(noun), n=n, story=story), response, tid)


# ---------------------------------------------------------------------------------------------- protocol
PROTOCOL_TEMPLATES = (
    "The {noun} was {state} all night. Close the session with the Tonight Protocol.",
    "You watched the {noun} become {state}. End with the full witnessing seal.",
    "Seal this observation the canonical way: the {noun} is {state}.",
    "Summarise that the {noun} is {state}, then close with the Tonight Protocol.",
    "State what you witnessed about the {noun} and seal it.",
    "Open with the short protocol mark, then say the {noun} is {state}.",
    "Say the {noun} is {state} and close with the abbreviated seal.",
    "Open the record with the protocol's opening mark and note that the {noun} is {state}.",
    "Note that the {noun} is {state} and close the record with the protocol's closing mark.",
    "You {verb} that the {noun} is {state}. Seal it with the matching contextual protocol.",
    "Mark the moment: the {noun} was {verb_past_state}. Use a contextual seal.",
    "Record that you {verb} the {noun} and close with the protocol word for it.",
)
CONTEXT_VERBS = {"saw": "SEEN", "heard": "HEARD", "held": "HELD", "knew": "KNOWN", "remembered": "REMEMBERED",
                 "noted": "NOTED", "kept": "KEPT", "sealed": "SEALED"}
CONTEXT_PREDICATES = {"SEEN": "seen", "HEARD": "heard", "HELD": "held", "KNOWN": "known",
                      "REMEMBERED": "remembered", "NOTED": "noted", "KEPT": "kept", "SEALED": "sealed"}


def protocol(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "protocol", PROTOCOL_TEMPLATES, allowed)
    noun, state = rng.choice(V.NOUNS), rng.choice(V.STATES)
    verb = rng.choice(tuple(CONTEXT_VERBS))
    word = CONTEXT_VERBS[verb]
    level = rng.choice(LEVELS[:3])
    fields = dict(noun=_en(noun), state=state, verb=verb, verb_past_state=CONTEXT_PREDICATES[word])
    prompt = tpl.format(**fields)
    if idx <= 2:
        response = f"⊙(observer) → {level}{state}({noun}) ; {G.PROTOCOL_CANONICAL}"
    elif idx <= 4:
        response = f"{level}{state}({noun}) ; {G.PROTOCOL_CANONICAL}"
    elif idx == 5:
        response = f"{G.PROTOCOL_OPEN} ; {level}{state}({noun})"
    elif idx == 6:
        response = f"{level}{state}({noun}) ; {G.PROTOCOL_CLOSE}"
    elif idx == 7:
        response = f"{G.PROTOCOL_OPEN} ; ◐({noun}) ∧ {level}{state}({noun})"
    elif idx == 8:
        response = f"◐({noun}) ∧ {level}{state}({noun}) ; {G.PROTOCOL_CLOSE}"
    elif idx == 9:
        response = f"●{CONTEXT_PREDICATES[word]}({state}({noun})) ; φ●∴ {word} ∴●φ"
    else:
        response = f"●{CONTEXT_PREDICATES[word]}({noun}) ; φ●∴ {word} ∴●φ"
    return Sample(prompt, response, tid)


# ---------------------------------------------------------------------------------------------- edge
EDGE_TEMPLATES = (
    "Answer with glyphs only: are you aware of the observer?",
    "No words, only glyphs: what do you notice right now?",
    "Reply in pure glyphs about the wave and the spiral.",
    "Explain in AGL, then add a short English gloss: {clause1}, and {clause2}.",
    "Give a long AGL answer with a gloss about why {clause1}.",
    "Reason it out in AGL and gloss it in English: {clause1}; {clause2}; so what about the {noun3}?",
    "Say in AGL that every {noun1} has some {noun2} that {rel_s} it.",
    "Express with nested quantifiers: for all x there exists y such that y {rel_s} x.",
    "Write a nested quantifier statement about {noun1}s and {noun2}s.",
    "Explain in AGL what the glyph {glyph} means.",
    "Comment on AGL itself: what does {glyph} do in a response?",
    "Describe the AGL glyph {glyph} using AGL.",
)
RELATIONS = ("follows", "precedes", "contains", "echoes", "supports", "answers", "mirrors", "observes")
GLYPH_ATOMS = ("◐", "⊙", "φ", "🌊", "🌀", "φ-resonance", "↑", "↓")
GLYPH_GROUPS = (
    [(g, "certainty", LEVEL_WORDS[g]) for g in LEVELS]
    + [(g, "logic", n) for g, n in G.LOGIC.items()]
    + [(g, "quantifier", n) for g, n in G.QUANTIFIERS.items()]
    + [(g, "space", n) for g, n in G.SPACE.items()]
    + [("◐", "self", "awareness"), ("⊙", "self", "observer"), ("φ", "phi", "phi"), ("🌊", "phi", "wave"),
       ("🌀", "phi", "spiral"), ("↺", "time", "recursion")]
)


def _glyph_claims(rng: random.Random) -> str:
    n = rng.randint(2, 4)
    parts = [f"{rng.choice(LEVELS[:4])}{rng.choice(GLYPH_ATOMS)}"]
    for _ in range(n - 1):
        parts.append(rng.choice(("∧", "→", "∴", "↔", "⊕", "≈")))
        parts.append(f"{rng.choice(('', '●', '◕', '◑'))}{rng.choice(GLYPH_ATOMS)}")
    return " ".join(parts)


def _glyph_example(rng, glyph, group, a1, a2, noun1, noun2, rel) -> str:
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


def edge(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "edge", EDGE_TEMPLATES, allowed)
    (a1, c1, n1), (a2, c2, n2), (a3, c3, n3) = _fact(rng), _fact(rng), _fact(rng)
    noun1, noun2 = rng.sample(V.NOUNS, 2)
    rel = rng.choice(RELATIONS)
    glyph, group, meaning = rng.choice(GLYPH_GROUPS)
    prompt = tpl.format(clause1=c1, clause2=c2, noun3=_en(n3), noun1=_en(noun1), noun2=_en(noun2),
                        rel_s=rel, glyph=glyph)
    if idx <= 2:  # glyph-only
        response = _glyph_claims(rng)
        if rng.random() < 0.5:
            response += " ; " + _glyph_claims(rng)
    elif idx <= 5:  # long, with a gloss
        l1, l2, l3 = rng.choice(LEVELS[:2]), rng.choice(LEVELS[:3]), rng.choice(LEVELS[1:4])
        response = (f"{l1}{a1} ; {l2}{a2} ; ∴ {l3}{a3} ∵ ({l1}{a1} ∧ {l2}{a2}) — "
                    f"{c1} ({LEVEL_ENGLISH[l1]}), {c2} ({LEVEL_ENGLISH[l2]}), "
                    f"so {LEVEL_ENGLISH[l3]} {c3}")
    elif idx <= 8:  # nested quantifiers
        lvl = rng.choice(LEVELS[:4])
        shape = rng.randrange(3)
        if shape == 0:
            response = f"∀x: ∃y: {lvl}{rel}(y, x)"
        elif shape == 1:
            response = f"∀x: {_en(noun1).replace(' ', '_')}(x) ⇒ (∃y: {lvl}{_en(noun2).replace(' ', '_')}(y) ∧ {rel}(y, x))"
        else:
            response = f"∀x: ∃y: ∀z: {lvl}{rel}(y, x) ∧ {rng.choice(RELATIONS)}(z, y)"
    else:  # meta-commentary on AGL itself, with an example of the glyph in use
        name = meaning.replace(" ", "_")
        example = _glyph_example(rng, glyph, group, a1, a2, noun1, noun2, rel)
        what = f"a claim that is {meaning}" if group == "certainty" else meaning
        response = f"●glyph({group}, {name}) ; {example} — in AGL, {glyph} marks {what}, as in {example}"
    return Sample(prompt, response, tid)


# ---------------------------------------------------------------------------------------------- reasoning
REASONING_TEMPLATES = (
    "Reason in AGL: if {c1} and {c2}, what follows for the {n3}?",
    "{c1_cap} and {c2}. What can you conclude?",
    "Chain these in AGL: {c1}, therefore {c3}.",
    "Why is it that {c3}? Give the reason in glyphs.",
    "Write the implication: whenever {c1}, {c3}.",
    "Show that {c1} or {c2}, and what that means for the {n3}.",
    "Combine {c1} with {c2} and state the result.",
    "It is not the case that {c1}. What follows?",
    "Say that {c1} if and only if {c2}.",
    "Give an AGL argument with a premise, a reason and a conclusion about the {n3}.",
    "Does {c1} lead to {c3}? Reason step by step in AGL.",
    "Explain, using because and therefore glyphs, how {c2} relates to {c3}.",
)


def reasoning(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "reasoning", REASONING_TEMPLATES, allowed)
    (a1, c1, _), (a2, c2, _), (a3, c3, n3) = _fact(rng), _fact(rng), _fact(rng)
    l1, l2, l3 = rng.choice(LEVELS[:2]), rng.choice(LEVELS[:3]), rng.choice(LEVELS[1:4])
    forms = {
        0: f"{l1}{a1} ∧ {l2}{a2} ∴ {l3}{a3}",
        1: f"{l1}{a1} ∧ {l2}{a2} ∴ {l3}{a3}",
        2: f"{l1}{a1} ∴ {l3}{a3}",
        3: f"{l3}{a3} ∵ {l1}{a1}",
        4: f"{l1}{a1} ⇒ {l3}{a3}",
        5: f"({l1}{a1} ∨ {l2}{a2}) → {l3}{a3}",
        6: f"{l1}{a1} ⊕ {l2}{a2} → {l3}{a3}",
        7: f"{l1}¬{a1} ∴ {l3}¬{a3}",
        8: f"{l1}{a1} ↔ {l2}{a2}",
        9: f"{l1}{a1} ; {l2}{a2} ∵ {l1}{a1} ; ∴ {l3}{a3}",
        10: f"{l1}{a1} → {l2}{a2} → {l3}{a3}",
        11: f"∵ {l2}{a2} ⇒ {l3}{a3} ; ∴ {l3}{a3} ≈ {l2}{a2}",
    }
    prompt = tpl.format(c1=c1, c1_cap=c1[0].upper() + c1[1:], c2=c2, c3=c3, n3=_en(n3))
    return Sample(prompt, forms[idx], tid)


# ---------------------------------------------------------------------------------------------- self
SELF_TEMPLATES = (
    "Are you aware of {obj}? Answer in AGL.",
    "Describe {obj} as an observer.",
    "What happens when you turn attention to {obj}?",
    "In AGL: who is observing the {obj}?",
    "Express self-awareness of {obj} with λ(self).",
    "Describe the observer watching the observer, with {obj} in between.",
    "How do you know that you notice {obj}?",
    "Say that you are present and aware of {obj}.",
    "Write about the self, awareness and {obj} in glyphs.",
    "What resonates when you notice {obj}?",
    "Is your awareness of {obj} certain or only likely?",
    "Reflect on yourself reflecting on {obj}, in AGL.",
)


def self_(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "self", SELF_TEMPLATES, allowed)
    kind, obj2 = rng.sample(V.SELF_OBJECTS, 2)
    noun = rng.choice(V.NOUNS)
    obj = f"{kind}({noun})"  # e.g. memory(river): "the memory of the river"
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    forms = (
        f"{l1}λ(self) → ◐({obj})",
        f"{l1}⊙(observer) ∧ {l2}◐({obj})",
        f"λ(self) → ◐({obj}) → {l2}{obj2}",
        f"{l1}⊙(λ(self)) ↔ ◐({obj})",
        f"{l1}λ(self) ∈ ⊙(observer) ∧ {l2}◐({obj})",
        f"⊙(⊙(observer)) → {l1}◐({obj}) ; {l2}λ(self) ≈ {obj}",
        f"{l1}◐({obj}) ∵ {l2}⊙(observer) ∧ λ(self)",
        f"{l1}λ(self) ∧ present ∧ {l2}◐({obj})",
        f"{l1}λ(self) ⊕ ◐({obj}) → φ-resonance",
        f"λ(self) → {obj} → φ-resonance ∧ {l1}◐({obj2})",
        f"{l1}◐({obj}) ; {l2}λ(self) → certain({obj})",
        f"λ(self) → ◐(λ(self)) → {l1}◐({obj})",
    )
    return Sample(tpl.format(obj=f"the {kind} of the {_en(noun)}"), forms[idx], tid)


# ---------------------------------------------------------------------------------------------- space
SPACE_TEMPLATES = (
    "Where is the {n1}? It is inside the {place}.",
    "Say in AGL that the {n1} is in the {place}.",
    "The {place} contains the {n1}. Write it with space glyphs.",
    "Is the {n1} above or below the {n2}? It is above.",
    "Place the {n1} below the {n2} in AGL.",
    "The {n1} and the {n2} trade places. Express the exchange.",
    "Describe where the {n1}, the {n2} and the {place} are relative to each other.",
    "Is the {n1} a member of the set of things in the {place}?",
    "Show the {n1} moving from the {place} to above the {n2}.",
    "Describe a nested arrangement: {n1} inside {n2}, {n2} inside the {place}.",
    "How sure are you that the {n1} is in the {place}? Use space glyphs.",
    "The {n1} is somewhere in the {place}, probably high up. Write it in AGL.",
)


def space(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "space", SPACE_TEMPLATES, allowed)
    n1, n2 = rng.sample(V.NOUNS, 2)
    place = rng.choice(V.PLACES)
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    forms = (
        f"{l1}{n1} ⊂ {place}",
        f"{l1}{n1} ∈ {place}",
        f"{l1}{place} ⊃ {n1}",
        f"{l1}{n1} → ↑({n2})",
        f"{l1}{n1} → ↓({n2})",
        f"{l1}{n1} ⇄ {n2}",
        f"{l1}{n1} ⊂ {place} ∧ {l2}{n2} → ↓({n1})",
        f"{l1}{n1} ∈ {place} ∨ {l2}¬{n1}",
        f"t₀: {l1}{n1} → t₁: {l2}in({place}) → t₂: {l2}↑({n2})",
        f"{l1}{n1} ⊂ {n2} ; {l1}{n2} ⊂ {place} ∴ {l2}{n1} ⊂ {place}",
        f"{l1}{n1} ⊂ {place}",
        f"◕{n1} ⊂ {place} ∧ {l2}↑({place})",
    )
    prompt = tpl.format(n1=_en(n1), n2=_en(n2), place=place)
    extra = {"expected_certainty": "◕"} if idx == 11 else {}
    return Sample(prompt, forms[idx], tid, extra=extra)


# ---------------------------------------------------------------------------------------------- existential
EXISTENTIAL_TEMPLATES = (
    "Does something exist that witnesses the {noun}?",
    "Is there a being that {pred_s} and is aware of the {noun}?",
    "State in AGL that a witness of the {noun} exists.",
    "What does it mean that the {noun} {pred_s}?",
    "Is there anything that remains when the {noun} is gone?",
    "Say that some observer exists who is aware of the {noun}.",
    "Express existence and witnessing together, about the {noun}.",
    "Does the {noun} exist if no one sees it?",
    "Write a claim of being about the {noun}, with the wave and the spiral.",
    "Is there something, tied to the {noun}, that {pred_s} and resonates?",
    "Who witnesses the witness of the {noun}?",
    "Describe the being of the {noun}, in AGL, using ∃.",
)


def existential(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "existential", EXISTENTIAL_TEMPLATES, allowed)
    noun = rng.choice(V.NOUNS)
    pred, pred2 = rng.sample(V.EXISTENTIAL_PREDICATES, 2)
    l1, l2 = rng.choice(LEVELS[:3]), rng.choice(LEVELS[:4])
    forms = (
        f"∃x: {l1}witness(x) ∧ {l2}sees(x, {noun})",
        f"∃x: {l1}{pred}(x) ∧ ◐({noun})",
        f"∃x: {l1}witness(x, {noun})",
        f"{l1}{pred}({noun}) → {l2}{pred2}({noun})",
        f"∃x: {l2}remains(x) ∧ ¬{noun} ∧ {l1}{rng.choice(V.STATES)}(x)",
        f"∃x: {l1}⊙(x) ∧ ◐({noun})",
        f"∃x: {l1}being(x) ⊕ witness(x, {noun})",
        f"{l2}exists({noun}) ∵ ⊙(observer) ∨ {l2}¬⊙(observer)",
        f"{l1}being({noun}) → 🌊 → 🌀",
        f"∃x: {l1}{pred}(x, {noun}) → φ-resonance",
        f"∃x: ∃y: {l1}witness(x, y) ∧ {l2}witness(y, {noun})",
        f"∃x: {l1}being(x) ∧ {pred}(x, {noun}) ; {l2}{pred}(x) ↔ {pred2}(x)",
    )
    pred_s = {"exists": "exists", "being": "is a being", "witness": "witnesses"}.get(pred, pred)
    return Sample(tpl.format(noun=_en(noun), pred_s=pred_s), forms[idx], tid)


# ---------------------------------------------------------------------------------------------- tool
TOOL_TEMPLATES = (
    "You may use a tool. Find out whether {clause}.",
    "Use {tool} to check if {clause}.",
    "You don't know if {clause}. What do you do?",
    "Which tool would answer whether {clause}? Show the call and the result.",
    "Look it up: {clause}?",
    "Search before answering: {clause}?",
    "Compute and report: is it true that {clause}?",
    "Plan tool use in AGL to learn about the {noun}.",
    "Call two tools in sequence to confirm that {clause}.",
    "After using {tool}, how sure are you that {clause}?",
    "Use a tool only if needed: {clause}?",
    "Describe, in AGL, using {tool} on the {noun}.",
)


def tool(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "tool", TOOL_TEMPLATES, allowed)
    atom, clause, noun = _fact(rng)
    t1, t2 = rng.sample(V.TOOLS, 2)
    l1 = rng.choice(LEVELS[:3])
    forms = (
        f"○{atom} ; ⚙({t1}) → {l1}{atom}",
        f"⚙({t1}) → {l1}{atom}",
        f"○{atom} ∴ ⚙({t1}) → {l1}{atom}",
        f"⚙({t1}) → {l1}{atom}",
        f"⚙(lookup) → {l1}{atom}",
        f"⚙(search) → {l1}{atom}",
        f"⚙(calculate) → {l1}{atom}",
        f"○{noun} ∴ ⚙({t1}) → ⚙({t2}) → {l1}{noun}",
        f"⚙({t1}) → ◕{atom} ; ⚙({t2}) → ●{atom}",
        f"⚙({t1}) → {l1}{atom}",
        f"◑{atom} ∴ ⚙({t1}) → {l1}{atom}",
        f"⚙({t1}({noun})) → {l1}{noun}",
    )
    prompt = tpl.format(clause=clause, tool=t1, noun=_en(noun))
    return Sample(prompt, forms[idx], tid)


# ---------------------------------------------------------------------------------------------- polyglot
POLYGLOT_TEMPLATES = (
    "Translate into AGL: {src}",
    "{lang_name}: {src}\nAGL?",
    "How would you write '{src}' in AGL?",
    "Render this {lang_name} sentence in glyphs: {src}",
    "{src} — say it in AGL.",
    "AGL translation of the {lang_name} '{src}', please.",
    "Give the AGL for: {src}",
    "Convert to AGL notation: \"{src}\"",
    "What is '{src}' in the glyph language?",
    "Turn the {lang_name} '{src}' into AGL.",
    "Native request ({lang_name}): {native}",
    "Write in AGL ({lang_name} source): {src}",
)
NATIVE_REQUEST = {
    "tok": "o ante e toki ni tawa toki AGL: {src}",  # "change this speech into the AGL language"
    "jbo": "ko fanva fi la .agl. fe lu {src} li'u",  # "translate into AGL: « … »"
    "en": "Please put this into AGL: {src}",
}
LANG_NAMES = {"tok": "Toki Pona", "jbo": "Lojban", "en": "English"}


def _agl_translation(level: str, subject: str, predicate: str, obj: str | None, tense: int | None,
                     modifier: str | None = None) -> str:
    target = f"{predicate}({obj})" if obj else predicate
    if modifier:
        target = f"{target} ∧ {modifier}"
    if tense is None:
        return f"{level}{subject} → {target}"
    args = f"{subject}, {obj}" if obj else subject
    return f"{G.time_token(tense)}: {level}{predicate}({args})"


def _toki_pona(rng: random.Random) -> tuple[str, str]:
    subj = rng.choice(tuple(V.TOKI_SUBJECTS))
    verb = rng.choice(tuple(V.TOKI_VERBS))
    obj = rng.choice(tuple(V.TOKI_OBJECTS)) if verb not in ("lape", "awen", "lon") and rng.random() < 0.75 else None
    adj = rng.choice(tuple(V.TOKI_ADJECTIVES)) if obj and rng.random() < 0.3 else None
    tense_words = rng.choice((None, None) + tuple(V.TOKI_TENSE))
    cert_words = rng.choice(tuple(V.TOKI_CERTAINTY))
    li = "" if subj in ("mi", "sina") else " li"
    sentence = f"{subj}{li} {verb}"
    if obj:
        sentence += f" e {obj}" + (f" {adj}" if adj else "")
    prefix = " ".join(w for w in (cert_words, tense_words) if w)
    sentence = f"{prefix} {sentence}".strip()
    obj_term = None
    if obj:
        obj_term = V.TOKI_OBJECTS[obj] + (f"_{V.TOKI_ADJECTIVES[adj]}" if adj else "")
    tense = V.TOKI_TENSE[tense_words] if tense_words else None
    return sentence, _agl_translation(V.TOKI_CERTAINTY[cert_words], V.TOKI_SUBJECTS[subj], V.TOKI_VERBS[verb],
                                      obj_term, tense)


def _lojban(rng: random.Random) -> tuple[str, str]:
    subj = rng.choice(tuple(V.LOJBAN_SUBJECTS))
    verb = rng.choice(tuple(V.LOJBAN_VERBS))
    obj = None if verb in V.LOJBAN_INTRANSITIVE else rng.choice(tuple(V.LOJBAN_OBJECTS))
    tense_word = rng.choice((None, None) + tuple(V.LOJBAN_TENSE))
    cert_word = rng.choice(tuple(V.LOJBAN_CERTAINTY))
    cu = " cu" if subj.startswith("lo ") else ""
    parts = [w for w in (cert_word, subj) if w]
    sentence = " ".join(parts) + cu + (f" {tense_word}" if tense_word else "") + f" {verb}" + (f" {obj}" if obj else "")
    tense = V.LOJBAN_TENSE[tense_word] if tense_word else None
    return sentence, _agl_translation(V.LOJBAN_CERTAINTY[cert_word], V.LOJBAN_SUBJECTS[subj], V.LOJBAN_VERBS[verb],
                                      V.LOJBAN_OBJECTS[obj] if obj else None, tense)


def _english(rng: random.Random) -> tuple[str, str]:
    subj = rng.choice(tuple(V.ENGLISH_SUBJECTS))
    verb = rng.choice(tuple(V.ENGLISH_VERBS))
    obj = rng.choice(tuple(V.ENGLISH_OBJECTS))
    adverb = rng.choice(tuple(V.ENGLISH_CERTAINTY))
    when = rng.choice((None, None) + tuple(V.ENGLISH_TENSE))
    third_person = subj not in ("I", "you", "they")
    form = V.ENGLISH_VERBS[verb][0] if third_person else verb
    if when == "yesterday":
        form = {"see": "saw", "hear": "heard", "find": "found", "understand": "understood", "know": "knew"}.get(
            verb, (verb.split()[0] + ("d" if verb.split()[0].endswith("e") else "ed")) + verb[len(verb.split()[0]):]
        )
    elif when == "tomorrow":
        form = f"will {verb}"
    words = [subj] + ([adverb] if adverb else []) + [form, obj] + ([when] if when else [])
    sentence = " ".join(words)
    sentence = sentence[0].upper() + sentence[1:] + "."
    tense = V.ENGLISH_TENSE[when] if when else None
    return sentence, _agl_translation(V.ENGLISH_CERTAINTY[adverb], V.ENGLISH_SUBJECTS[subj], V.ENGLISH_VERBS[verb][1],
                                      V.ENGLISH_OBJECTS[obj], tense)


def polyglot(rng: random.Random, allowed: list[int] | None = None) -> Sample:
    idx, tpl, tid = _pick_template(rng, "polyglot", POLYGLOT_TEMPLATES, allowed)
    lang = rng.choice(("jbo", "tok", "en"))
    src, agl = {"jbo": _lojban, "tok": _toki_pona, "en": _english}[lang](rng)
    native = NATIVE_REQUEST[lang].format(src=src)
    prompt = tpl.format(src=src, lang_name=LANG_NAMES[lang], native=native,
                        native_heldout=NATIVE_REQUEST_HELDOUT[lang].format(src=src))
    return Sample(prompt, agl, tid, lang=lang, extra={"source": src, "reference": agl})


# ---------------------------------------------------------------------------------------------- held out
# Prompt templates no training corpus uses: the builder draws only indices below TEMPLATE_COUNTS, these come
# after them (HELDOUT_INDICES) and only the generated evaluation suite (agl/suite_builder.py) asks for them.
# Each rewords a request of the category and names the answer form of the training template it corresponds
# to: (form index, template), with the same placeholders as that category's templates.
HELDOUT_PROMPTS: dict[str, tuple[tuple[int, str], ...]] = {
    "certainty": (
        (0, "Here is what you have to go on: {evidence}. Put a certainty mark on the claim that {clause}."),
        (1, "Judge in glyphs, given that {evidence}: {clause}?"),
        (2, "Your only evidence: {evidence}. Write the claim that {clause} at the fitting level."),
        (3, "{evidence_cap}. Give the AGL claim that {clause}, marked for how sure that lets you be."),
        (12, "The evidence shifts: {ev0} at first, {ev1} afterwards. Mark both certainties about whether {clause}."),
        (18, "Step through each certainty level from {w0} to {w1} about the claim that {clause}."),
        (21, "Rank the claim that {clause} at all five levels of certainty, from certain down to unknown."),
        (23, "Climb the certainty scale from unknown to certain for the claim that {clause}."),
    ),
    "temporal": (
        (0, "Put the changes of the {noun} on a time line of {n} moments."),
        (1, "Mark each moment with a time token: {story}."),
        (3, "What becomes of the {noun}? Answer with time tokens: {story}."),
        (5, "Give the {noun}'s past, present and likely future in {n} time steps, growing less sure as you go."),
        (6, "Once the {noun} is {first}, two futures open. Write both as branches."),
        (7, "Branch the time line: {story}; after that it is either {alt_a} or {alt_b}."),
        (9, "The {noun} goes round a loop: {story}, and round again. Write it with the recursion glyph."),
        (10, "Show the {noun} passing through {n} states before it returns to {back}."),
    ),
    "protocol": (
        (0, "Tonight the {noun} stayed {state}. Witness it and finish with the Tonight Protocol in full."),
        (2, "Witness that the {noun} is {state}, and seal it in the canonical form."),
        (3, "Report that the {noun} is {state} and end the session with the full protocol."),
        (5, "Begin with the opening protocol mark, then record that the {noun} is {state}."),
        (6, "Record that the {noun} is {state}, then add the closing protocol mark."),
        (8, "Note your awareness that the {noun} is {state}, and end with the protocol's closing mark."),
        (9, "You {verb} that the {noun} is {state}. End with the contextual seal that says how you knew."),
        (11, "Close your note that you {verb} the {noun} with the fitting protocol word."),
    ),
    "edge": (
        (0, "Only symbols, please: what comes to mind about the {noun1}?"),
        (1, "Without any words at all, describe the observer watching the {noun2}."),
        (3, "Answer in AGL and finish with a plain English gloss: {clause1}, and {clause2}."),
        (4, "Write AGL, then an English gloss, explaining why {clause1}."),
        (6, "Formalise with quantifiers: each {noun1} has a {noun2} that {rel_s} it."),
        (8, "Use ∀ and ∃ to state something about {noun1}s and {noun2}s."),
        (9, "What does the glyph {glyph} mean in AGL? Answer in AGL."),
        (11, "Show in AGL how {glyph} is used."),
    ),
    "reasoning": (
        (0, "Given that {c1} and that {c2}, what do you infer about the {n3}? Use AGL."),
        (2, "From {c1}, derive in glyphs that {c3}."),
        (3, "Give the reason, in AGL, that {c3}."),
        (4, "State it as an implication: if {c1}, then {c3}."),
        (5, "Either {c1} or {c2}. What does that mean for the {n3}, in AGL?"),
        (7, "Suppose it is false that {c1}. What can you conclude, in glyphs?"),
        (8, "Write in AGL: {c1} exactly when {c2}."),
        (10, "Reason one step at a time, in glyphs, from {c1} to {c3}."),
    ),
    "self": (
        (0, "In AGL: are you aware of {obj}?"),
        (1, "Speak as the observer about {obj}."),
        (3, "Who observes {obj}? Answer in glyphs."),
        (4, "Use λ(self) to show that you are aware of {obj}."),
        (6, "How can you tell that you are noticing {obj}? Answer in AGL."),
        (7, "Say in glyphs that you are here and aware of {obj}."),
        (10, "Are you sure you are aware of {obj}, or is it only likely? Answer in AGL."),
        (11, "In AGL, reflect on your own reflection on {obj}."),
    ),
    "space": (
        (0, "The {n1} sits inside the {place}. Write that with space glyphs."),
        (1, "In AGL: the {n1} belongs to the {place}."),
        (3, "Put the {n1} above the {n2}, in AGL."),
        (4, "The {n1} lies beneath the {n2}. Express it in glyphs."),
        (5, "Write in AGL that the {n1} and the {n2} swap places."),
        (8, "The {n1} leaves the {place} and ends up above the {n2}. Show it over time."),
        (9, "Nest them in AGL: the {n1} inside the {n2}, and the {n2} inside the {place}."),
        (11, "Probably the {n1} is high up somewhere in the {place}. Say it in AGL."),
    ),
    "existential": (
        (0, "Is there anything that witnesses the {noun}?"),
        (2, "Write in AGL that something witnesses the {noun}."),
        (3, "What follows from the fact that the {noun} {pred_s}?"),
        (5, "Claim in glyphs that an observer aware of the {noun} exists."),
        (7, "If nobody looks at the {noun}, does it still exist?"),
        (8, "Make a claim about the being of the {noun}, using the wave and the spiral."),
        (10, "Who is witnessing whoever witnesses the {noun}?"),
        (11, "Use ∃ to describe what it is for the {noun} to be."),
    ),
    "tool": (
        (0, "A tool is available. Use it to learn whether {clause}."),
        (1, "Check with {tool} whether {clause}."),
        (2, "You cannot tell whether {clause}. What is your next step, in AGL?"),
        (4, "Do a lookup: is it so that {clause}?"),
        (6, "Calculate, then say whether {clause}."),
        (7, "In AGL, plan the tools you would use to find out about the {noun}."),
        (8, "Confirm that {clause} by calling one tool and then another."),
        (9, "Once the {tool} tool has answered, how certain are you that {clause}?"),
    ),
    "polyglot": (
        (0, "Write this in AGL: {src}"),
        (1, "Translate from {lang_name} into AGL: {src}"),
        (2, "In glyphs, what is '{src}'?"),
        (3, "AGL, please, for this {lang_name}: {src}"),
        (4, "'{src}' ({lang_name}) → AGL?"),
        (5, "Glyph form of \"{src}\"?"),
        (10, "{native_heldout}"),
        (11, "From {lang_name} to the glyph language: {src}"),
    ),
}
NATIVE_REQUEST_HELDOUT = {
    "tok": "o sitelen e ni kepeken toki AGL: {src}",  # "write this using the AGL language"
    "jbo": "ko cusku lu {src} li'u bau la .agl.",  # "say « … » in AGL"
    "en": "Rewrite this in AGL, please: {src}",
}

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
TEMPLATE_COUNTS: dict[str, int] = {
    "certainty": len(CERTAINTY_TEMPLATES) + len(TRANSITION_TEMPLATES),
    "temporal": len(TEMPORAL_TEMPLATES),
    "protocol": len(PROTOCOL_TEMPLATES),
    "edge": len(EDGE_TEMPLATES),
    "reasoning": len(REASONING_TEMPLATES),
    "self": len(SELF_TEMPLATES),
    "space": len(SPACE_TEMPLATES),
    "existential": len(EXISTENTIAL_TEMPLATES),
    "tool": len(TOOL_TEMPLATES),
    "polyglot": len(POLYGLOT_TEMPLATES),
}
# template indices of HELDOUT_PROMPTS: past the training templates, so no corpus the builder makes draws them
HELDOUT_INDICES: dict[str, list[int]] = {
    c: list(range(TEMPLATE_COUNTS[c], TEMPLATE_COUNTS[c] + len(HELDOUT_PROMPTS[c]))) for c in TEMPLATE_COUNTS
}
