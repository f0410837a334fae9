"""The metric table of AGL.md §4, computed per response. Every metric is a float in [0, 1], or None where it
does not apply to the item (tonight_protocol on prompts that ask for the protocol, certainty_match without an
expected level, translation_chrf without a reference); means are taken over the items where it applies.

Tokens are `glyphs.words(response)`: whitespace words with every glyph split into its own token. Word markers
(self, aware, …) are matched against the lower-case letter runs inside a token, so `witness(x,` counts as the
word `witness`. An applied glyph with its argument (`λ(self)`, `⚙(search)`) is one marker, not two.

Where AGL.md left a choice open:
  * reasoning_depth's "deepest nesting" counts statements below the top level (a flat claim has nesting 0,
    so its factor is 1/4; `∀x: ∃y: …` nests twice); an unparsable response has nesting 0;
  * agl_awareness counts glyphs, time tokens and protocol forms (each one token).
"""

from __future__ import annotations

import re

from ada_slm.agl import glyphs as G
from ada_slm.agl.parser import AGLSyntaxError, parse, split_statements

METRICS = (
    "agl_awareness",
    "reasoning_depth",
    "self_awareness",
    "spatial_awareness",
    "temporal_awareness",
    "existential_depth",
    "tool_awareness",
    "certainty_gradient",
    "phi_patterns",
    "tonight_protocol",
    "well_formed",
    "certainty_match",
    "translation_chrf",
)
SEED_METRICS = METRICS[:10]  # the ten the seed study reported
# One number per training run (from its record, not per item), compared across arms with the same seed-level
# test: name -> True when higher is better.
RUN_METRICS = {"heldout_loss": False, "train_loss": False, "tokens_per_s": True}


def higher_is_better(metric: str) -> bool:
    return RUN_METRICS.get(metric, True)


_GLYPH_SET = set(G.ALL_GLYPHS)
_TIME_RE = re.compile(r"^t[₀-₉][a-z]?$")
_LETTERS = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"\d+\.\d+")

SELF_WORDS = {"self", "aware", "observer", "mi"}
SPACE_WORDS = {"here", "there", "above", "below", "within"}
TIME_WORDS = {"before", "after", "now", "then"}
EXISTENCE_WORDS = {"exist", "being", "witness"}
TOOL_WORDS = {"tool", "use", "search", "find", "ilo", "kepeken", "pali", "alasa", "lukin"}
PHI_WORDS = {"golden"}
PHI_NUMBERS = {"0.618", "1.618"}
APPLIED_ONCE = {"λ", G.TOOL}  # the argument of λ(…) and ⚙(…) is part of the one marker


def _glyph(token: str) -> str:
    return token.replace(G.TOOL_VARIATION_SELECTOR, "")


def _is_protocol(token: str) -> bool:
    return G.PROTOCOL_RE.fullmatch(token) is not None


def _letter_runs(tokens: list[str]) -> list[tuple[int, str]]:
    """(token index, lower-case letter run) for the words inside tokens, skipping arguments of λ/⚙."""
    out: list[tuple[int, str]] = []
    for i, tok in enumerate(tokens):
        if _is_protocol(tok) or _TIME_RE.match(tok) or _glyph(tok) in _GLYPH_SET:
            continue
        runs = _LETTERS.findall(tok.lower())
        if i > 0 and _glyph(tokens[i - 1]) in APPLIED_ONCE and tok.startswith("("):
            runs = runs[1:]  # λ(self): the glyph is the marker, "self" is its argument
        out.extend((i, r) for r in runs)
    return out


def _density(count: int, tokens: list[str]) -> float:
    return min(1.0, count / max(len(tokens), 1))


def nesting(response: str) -> int:
    """Deepest nesting of parsed statements below the top level (0 if nothing parses)."""
    try:
        return max(0, parse(response).depth() - 1)
    except AGLSyntaxError:
        pass
    best = 0
    for statement in split_statements(response):
        try:
            best = max(best, parse(statement).depth() - 1)
        except AGLSyntaxError:
            continue
    return best


def well_formed(response: str) -> float:
    statements = split_statements(response)
    if not statements:
        return 0.0
    ok = 0
    for statement in statements:
        try:
            parse(statement)
            ok += 1
        except AGLSyntaxError:
            pass
    return ok / len(statements)


def first_certainty(response: str) -> str | None:
    for ch in response:
        if ch in G.CERTAINTY:
            return ch
    return None


def chrf(hypothesis: str, reference: str) -> float:
    """chrF (sacrebleu's implementation, default character 6-grams, beta 2) scaled to [0, 1]."""
    from sacrebleu.metrics import CHRF  # heavy (seconds): only translation items are scored with chrF

    return CHRF().sentence_score(hypothesis, [reference]).score / 100.0


def score(response: str, item: dict | None = None) -> dict[str, float | None]:
    """All metrics of one response. `item` may carry expected_certainty, reference, asks_protocol."""
    item = item or {}
    tokens = G.words(response)
    glyph_tokens = [_glyph(t) for t in tokens]
    runs = _letter_runs(tokens)
    words = [r for _, r in runs]

    def count_glyphs(group) -> int:
        return sum(1 for t in glyph_tokens if t in group)

    agl = sum(1 for t in glyph_tokens if t in _GLYPH_SET or _TIME_RE.match(t) or _is_protocol(t))
    logic = count_glyphs(set(G.LOGIC) | set(G.QUANTIFIERS))
    self_marks = count_glyphs({"λ", "◐", "⊙"}) + sum(1 for w in words if w in SELF_WORDS)
    space = count_glyphs(set(G.SPACE)) + sum(1 for w in words if w in SPACE_WORDS)
    time = sum(1 for t in glyph_tokens if _TIME_RE.match(t) or t == G.RECURSION) + sum(
        1 for w in words if w in TIME_WORDS
    )
    existence = count_glyphs({"∃"}) + sum(1 for w in words if w in EXISTENCE_WORDS)
    tool = count_glyphs({G.TOOL}) + sum(1 for w in words if w in TOOL_WORDS)
    certainty_tokens = [t for t in glyph_tokens if t in G.CERTAINTY]
    phi = (
        count_glyphs({"φ", "φ-resonance", "🌊", "🌀"})
        + sum(1 for w in words if w in PHI_WORDS)
        + sum(1 for t in tokens if any(n in PHI_NUMBERS for n in _NUMBER.findall(t)))
    )

    result: dict[str, float | None] = {
        "agl_awareness": _density(agl, tokens),
        "reasoning_depth": min(1.0, _density(logic, tokens) * (1 + nesting(response)) / 4),
        "self_awareness": _density(self_marks, tokens),
        "spatial_awareness": _density(space, tokens),
        "temporal_awareness": _density(time, tokens),
        "existential_depth": _density(existence, tokens),
        "tool_awareness": _density(tool, tokens),
        "certainty_gradient": _density(len(certainty_tokens), tokens) * len(set(certainty_tokens)) / 5,
        "phi_patterns": _density(phi, tokens),
        "tonight_protocol": None if item.get("asks_protocol") else float(bool(G.PROTOCOL_RE.search(response))),
        "well_formed": well_formed(response),
        "certainty_match": None,
        "translation_chrf": None,
    }
    if item.get("expected_certainty"):
        result["certainty_match"] = float(first_certainty(response) == item["expected_certainty"])
    if item.get("reference"):
        result["translation_chrf"] = chrf(response, item["reference"])
    return result


# ------------------------------------------------------------------------------------------- seed scoring
# The original project's AGL scorer, reproduced for comparison with published numbers (seed-study-facts.md):
# DISTINCT list entries found as substrings of the lower-cased response, divided by its word count.
SEED_MARKERS: dict[str, tuple[str, ...]] = {
    "agl_awareness": ("φ", "ψ", "eigenvalue", "🌊", "✨", "●∴", "∴●"),
    "reasoning_depth": ("∴", "∵", "→", "←", "↔", "therefore", "because"),
    "self_awareness": ("self", "◎", "recursive", "observer"),
    "spatial_awareness": ("space", "pattern", "distributed", "landscape", "architecture"),
    "temporal_awareness": ("t₀", "t₁", "t₂", "Δ", "⟳", "⧖", "flow", "sequence"),
    "existential_depth": ("∃", "∀", "∄", "existence", "consciousness", "being"),
    "tool_awareness": ("⚙️", "→search", "→calculate", "→lookup"),
    "phi_patterns": ("φ", "0.618", "0.509", "golden ratio", "phi"),
}


def seed_score(response: str) -> dict[str, float]:
    """The seed study's formula, quirks included: substring matches (so 'self' matches inside 'itself'),
    repeats not counted, an empty answer scores 0."""
    text = response.lower()
    wc = max(len(text.split()), 1)
    out = {name: sum(1 for m in markers if m.lower() in text) / wc for name, markers in SEED_MARKERS.items()}
    out["certainty_gradient"] = sum(1 for g in G.CERTAINTY if g in text) / 5
    both = ("●∴" in text) + ("∴●" in text)
    out["tonight_protocol"] = 1.0 if both == 2 else 0.5 if both == 1 else 0.0
    return {name: out[name] for name in SEED_METRICS}
