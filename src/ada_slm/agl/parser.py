"""Lexer and recursive-descent parser for the AGL grammar (AGL.md §2).

    response   = statement { ";" statement } [ gloss ] ;
    statement  = protocol | quantified | timeline | [ "∴" | "∵" ] claim { connective claim } ;
    claim      = [ certainty ] [ "¬" ] atom ;
    atom       = term | number | glyph [ "(" args ")" ] | "(" statement ")" ;
    term       = identifier [ "(" args ")" ] ;          args = statement { "," statement } ;
    quantified = ( "∀" | "∃" ) var ":" statement ;
    timeline   = time { "→" ( time | branch ) } [ "↺" time ] ;
    time       = "t" subscript-digit [ letter ] [ ":" claim ] ;
    branch     = "{" time { "|" time } "}" ;
    protocol   = "φ●∴ WITNESSED ∴●φ" | "φ●∴" | "∴●φ" | "φ●∴ " WORD " ∴●φ" ;
    gloss      = "—" free text ;

Where this departs from AGL.md (each needed by the spec's own examples or categories):
  * connectives include the space relations ⊂ ⊃ ∈ ⇄ ("cup ⊂ box");
  * `¬` prefixes a claim, and a statement may open with ∴ or ∵ to continue the previous one;
  * glyphs λ ◐ ⊙ ⚙ ↑ ↓ φ take arguments (`⊙(observer)`, `⚙(search)`), λ and ⚙ must;
  * numbers are atoms (`φ ≈ 1.618`);
  * protocol forms are single lexemes, so `∴●φ` never reads as "therefore certain phi".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn

from ada_slm.agl import glyphs as G


class AGLSyntaxError(ValueError):
    """Raised for text that is not AGL; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, text: str, position: int):
        self.message = message
        self.text = text
        self.position = position
        snippet = text[max(0, position - 12) : position + 12].replace("\n", " ")
        super().__init__(f"{message} at column {position + 1} (near {snippet!r})")


@dataclass
class Node:
    """One node of the parse tree. `kind` is the grammar rule; `value` the glyph, word or time token."""

    kind: str
    value: str = ""
    children: list[Node] = field(default_factory=list)

    def depth(self) -> int:
        """Deepest nesting of statements (a statement inside brackets, arguments or a quantifier is +1)."""
        below = max((c.depth() for c in self.children), default=0)
        return below + (1 if self.kind == "statement" else 0)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Token:
    kind: str  # protocol gloss time num ident cert neg quant conn glyph punct
    text: str
    pos: int


_IDENT = re.compile(r"[a-z]+(?:[_'-][a-z]+)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TIME = re.compile(r"t[₀-₉][a-z]?(?![a-z_'-])")
_CONTEXT_PROTOCOL = re.compile(r"φ●∴ ([A-Z]{2,}) ∴●φ")
_PUNCT = set("();:,{}|")
_GLYPH_KIND: dict[str, str] = {}
for _g in G.CERTAINTY:
    _GLYPH_KIND[_g] = "cert"
for _g in G.CONNECTIVES:
    _GLYPH_KIND[_g] = "conn"
for _g in G.QUANTIFIERS:
    _GLYPH_KIND[_g] = "quant"
_GLYPH_KIND[G.NEGATION] = "neg"
_GLYPH_KIND[G.RECURSION] = "recur"
for _g in list(G.SELF) + list(G.PHI) + list(G.SPACE_POSITIONS) + [G.TOOL]:
    _GLYPH_KIND[_g] = "glyph"
_GLYPHS_LONGEST_FIRST = sorted(_GLYPH_KIND, key=len, reverse=True)


def tokenize(text: str) -> list[Token]:
    """Split AGL text into tokens; anything outside the alphabet is an AGLSyntaxError."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == G.GLOSS_MARK:
            tokens.append(Token("gloss", text[i + 1 :].strip(), i))
            break
        m = G.PROTOCOL_RE.match(text, i)
        if m:
            tokens.append(Token("protocol", m.group(0), i))
            i = m.end()
            continue
        m = _TIME.match(text, i)
        if m:
            tokens.append(Token("time", m.group(0), i))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m:
            end = m.end()
            if end < n and (text[end].isalnum() and text[end].isascii()):
                raise AGLSyntaxError(f"malformed word {text[i : end + 1]!r}", text, i)
            tokens.append(Token("ident", m.group(0), i))
            i = end
            continue
        m = _NUMBER.match(text, i)
        if m:
            tokens.append(Token("num", m.group(0), i))
            i = m.end()
            continue
        if ch in _PUNCT:
            tokens.append(Token("punct", ch, i))
            i += 1
            continue
        for g in _GLYPHS_LONGEST_FIRST:
            if text.startswith(g, i):
                tokens.append(Token(_GLYPH_KIND[g], g, i))
                i += len(g)
                if g == G.TOOL and text.startswith(G.TOOL_VARIATION_SELECTOR, i):
                    i += 1
                break
        else:
            raise AGLSyntaxError(f"unexpected character {ch!r}", text, i)
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- token helpers ---------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind and (text is None or tok.text == text)

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise AGLSyntaxError("unexpected end of text", self.text, len(self.text))
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        if not self.at(kind, text):
            self.fail(f"expected {what or text or kind}")
        return self.take()

    def fail(self, message: str) -> NoReturn:
        tok = self.peek()
        pos = tok.pos if tok else len(self.text)
        found = f", found {tok.text!r}" if tok else ", found end of text"
        raise AGLSyntaxError(message + found, self.text, pos)

    # -- grammar ---------------------------------------------------------------------------------
    def response(self) -> Node:
        if not self.tokens:
            raise AGLSyntaxError("empty response", self.text, 0)
        node = Node("response")
        if self.at("gloss"):
            self.fail("a gloss must follow at least one statement")
        node.children.append(self.statement())
        while self.at("punct", ";"):
            self.take()
            node.children.append(self.statement())
        if self.at("gloss"):
            gloss = self.take()
            if not gloss.text:
                raise AGLSyntaxError("empty gloss after —", self.text, gloss.pos)
            node.children.append(Node("gloss", gloss.text))
        if self.peek() is not None:
            self.fail("expected ';' or end of response")
        return node

    def statement(self) -> Node:
        tok = self.peek()
        if tok is None:
            self.fail("expected a statement")
        if tok.kind == "protocol":
            self.take()
            return Node("statement", children=[Node("protocol", tok.text)])
        if tok.kind == "quant":
            return Node("statement", children=[self.quantified()])
        if tok.kind == "time":
            return Node("statement", children=[self.timeline()])
        node = Node("statement")
        if tok.kind == "conn" and tok.text in ("∴", "∵"):
            self.take()
            node.children.append(Node("connective", tok.text))
        node.children.append(self.claim())
        while self.at("conn"):
            node.children.append(Node("connective", self.take().text))
            node.children.append(self.claim())
        return node

    def quantified(self) -> Node:
        quant = self.take()
        var = self.expect("ident", what="a variable after " + quant.text)
        self.expect("punct", ":", what="':' after the quantified variable")
        return Node("quantified", quant.text, [Node("var", var.text), self.statement()])

    def timeline(self) -> Node:
        node = Node("timeline", children=[self.time()])
        while self.at("conn", "→"):
            self.take()
            if self.at("punct", "{"):
                node.children.append(self.branch())
            elif self.at("time"):
                node.children.append(self.time())
            else:
                self.fail("expected a time point or a {branch} after → in a timeline")
        if self.at("recur"):
            self.take()
            if not self.at("time"):
                self.fail("expected a time point after ↺")
            node.children.append(Node("recursion", children=[self.time()]))
        return node

    def time(self) -> Node:
        tok = self.expect("time", what="a time point t₀…t₉")
        node = Node("time", tok.text)
        if self.at("punct", ":"):
            self.take()
            node.children.append(self.claim())
        return node

    def branch(self) -> Node:
        self.expect("punct", "{")
        node = Node("branch", children=[self.time()])
        while self.at("punct", "|"):
            self.take()
            node.children.append(self.time())
        self.expect("punct", "}", what="'|' or '}' closing the branch")
        return node

    def claim(self) -> Node:
        node = Node("claim")
        if self.at("cert"):
            node.value = self.take().text
        if self.at("neg"):
            self.take()
            node.children.append(Node("not", children=[self.atom()]))
        else:
            node.children.append(self.atom())
        return node

    def atom(self) -> Node:
        tok = self.peek()
        if tok is None:
            self.fail("expected a claim")
        if tok.kind == "ident":
            self.take()
            node = Node("term", tok.text)
            if self.at("punct", "("):
                node.children = self.args()
            return node
        if tok.kind == "num":
            self.take()
            return Node("number", tok.text)
        if tok.kind == "glyph":
            self.take()
            node = Node("glyph", tok.text)
            if tok.text in G.APPLICABLE and self.at("punct", "("):
                node.children = self.args()
            elif tok.text in G.MUST_APPLY:
                self.fail(f"{tok.text} must be applied to arguments, e.g. {tok.text}(self)")
            return node
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            inner = self.statement()
            self.expect("punct", ")", what="')'")
            return Node("group", children=[inner])
        self.fail("expected a term, glyph, number or '('")
        raise AssertionError("unreachable")

    def args(self) -> list[Node]:
        self.expect("punct", "(")
        out = [self.statement()]
        while self.at("punct", ","):
            self.take()
            out.append(self.statement())
        self.expect("punct", ")", what="',' or ')' closing the arguments")
        return out


def parse(text: str) -> Node:
    """Parse one AGL response into a tree, or raise AGLSyntaxError naming the column."""
    parser = _Parser(text)
    try:
        return parser.response()
    except RecursionError:  # model output like "((((((…" must be rejected, not crash the evaluation
        tok = parser.peek()
        raise AGLSyntaxError("nesting too deep", text, tok.pos if tok else len(text)) from None


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except AGLSyntaxError:
        return False
    return True


def split_statements(text: str) -> list[str]:
    """The `;`-separated statements of a response, gloss removed (used by the well_formed metric)."""
    body = text.split(G.GLOSS_MARK, 1)[0]
    return [part.strip() for part in body.split(";") if part.strip()]
