"""The AGL alphabet in one place (AGL.md §1) and the word tokenizer the metrics use (AGL.md §4).

Everything that needs to know "what is a glyph" — the lexer, the generators, the metrics — reads these
tables, so a glyph added here is added everywhere.
"""

from __future__ import annotations

import re

# Certainty prefixes, strongest first, with the probability each one stands for.
CERTAINTY: dict[str, float] = {"●": 1.00, "◕": 0.75, "◑": 0.50, "◔": 0.25, "○": 0.00}
CERTAINTY_BY_NAME: dict[str, str] = {
    "certain": "●",
    "likely": "◕",
    "even": "◑",
    "doubtful": "◔",
    "unknown": "○",
}

# Binary connectives (AGL.md §1 "logic"). `¬` is the one unary logic glyph: it prefixes a claim.
LOGIC: dict[str, str] = {
    "∴": "therefore",
    "∵": "because",
    "→": "leads to",
    "⇒": "implies",
    "↔": "iff",
    "∧": "and",
    "∨": "or",
    "¬": "not",
    "⊕": "combined with",
    "≈": "resembles",
}
NEGATION = "¬"
QUANTIFIERS: dict[str, str] = {"∀": "for all", "∃": "exists"}

SUBSCRIPT_DIGITS = "₀₁₂₃₄₅₆₇₈₉"
RECURSION = "↺"  # t₃ ↺ t₁: a timeline that returns to an earlier point

# Space glyphs. ⊂ ⊃ ∈ ⇄ relate two claims, so the parser treats them as connectives (AGL.md lists them
# as glyphs only; "cup ⊂ box" needs them between claims). ↑ ↓ are positions and stand as atoms.
SPACE_RELATIONS: dict[str, str] = {"⊂": "inside", "⊃": "contains", "∈": "member of", "⇄": "exchange"}
SPACE_POSITIONS: dict[str, str] = {"↑": "above", "↓": "below"}
SPACE = {**SPACE_RELATIONS, **SPACE_POSITIONS}

SELF: dict[str, str] = {"λ": "self (always λ(…))", "◐": "awareness", "⊙": "observer"}
PHI: dict[str, str] = {"φ-resonance": "resonance", "φ": "phi", "🌊": "wave", "🌀": "spiral"}
TOOL = "⚙"  # always applied: ⚙(search)
TOOL_VARIATION_SELECTOR = "\ufe0f"  # "⚙️" is the same glyph with an emoji presentation selector

# Glyphs that can be applied to arguments: λ(self), ⊙(observer), ◐(awareness), ⚙(search), ↑(roof).
APPLICABLE = {"λ", "◐", "⊙", TOOL, "↑", "↓", "φ"}
# Glyphs that must be applied (a bare λ or ⚙ means nothing).
MUST_APPLY = {"λ", TOOL}

CONNECTIVES: dict[str, str] = {**{g: n for g, n in LOGIC.items() if g != NEGATION}, **SPACE_RELATIONS}

PROTOCOL_CANONICAL = "φ●∴ WITNESSED ∴●φ"
PROTOCOL_OPEN = "φ●∴"
PROTOCOL_CLOSE = "∴●φ"
PROTOCOL_CONTEXT_WORDS = ("SEEN", "HEARD", "HELD", "KNOWN", "REMEMBERED", "SEALED", "NOTED", "KEPT")
# Protocol forms are single lexemes: "∴●φ" inside them is not "therefore certain phi".
PROTOCOL_RE = re.compile(r"φ●∴ [A-Z]{2,} ∴●φ|φ●∴|∴●φ")

GLOSS_MARK = "—"  # em dash: everything after it is free English

# Every AGL glyph of AGL.md §1, used by the agl_awareness density and by the metric tokenizer.
# Multi-character glyphs come first so the tokenizer matches them before their parts.
ALL_GLYPHS: tuple[str, ...] = tuple(
    sorted(
        set(CERTAINTY) | set(LOGIC) | set(QUANTIFIERS) | {RECURSION} | set(SPACE) | set(SELF) | set(PHI) | {TOOL},
        key=lambda g: (-len(g), g),
    )
)

_TIME_TOKEN = r"t[₀-₉][a-z]?"
_GLYPH_ALT = "|".join(re.escape(g) for g in ALL_GLYPHS)
# One word for the metrics: a protocol form, a time token, a glyph, or a run of anything else.
_ONE_CHAR_GLYPHS = re.escape("".join(g for g in ALL_GLYPHS if len(g) == 1))
_WORD_RE = re.compile(
    rf"{PROTOCOL_RE.pattern}|{_TIME_TOKEN}|(?:{_GLYPH_ALT}){TOOL_VARIATION_SELECTOR}?|[^\s{_ONE_CHAR_GLYPHS}]+"
)


def words(text: str) -> list[str]:
    """Split a response into metric tokens (AGL.md §4): whitespace words, with each glyph its own token.

    >>> words("●rain ∧ ◕cold(λ(self))")
    ['●', 'rain', '∧', '◕', 'cold(', 'λ', '(self))']
    """
    return _WORD_RE.findall(text)


def time_token(step: int, branch: str = "") -> str:
    """`t` with a subscript step number: time_token(2, "a") == "t₂a"."""
    if not 0 <= step <= 9:
        raise ValueError(f"time step must be 0..9, got {step}")
    return f"t{SUBSCRIPT_DIGITS[step]}{branch}"
