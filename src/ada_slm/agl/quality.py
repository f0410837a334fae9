"""Quality filter for generated examples and the schema check for corpus files.

The filter drops, in this order: responses that do not parse as AGL, exact duplicates (same prompt and
response), and near-duplicates (a response that equals an earlier one after Unicode folding, lower-casing and
removing whitespace — a second prompt for the same answer teaches nothing new and inflates the corpus, which
is how the seed's "2k" corpus ended up as 56 unique pairs).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from ada_slm.agl.parser import AGLSyntaxError, parse

ROLES = ("system", "user", "assistant")
REQUIRED_KEYS = ("id", "category", "lang", "messages")


def near_duplicate_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(folded.split())


@dataclass
class QualityFilter:
    """Stateful filter: `accept(prompt, response)` returns the reason for rejection, or None to keep it."""

    seen_pairs: set = field(default_factory=set)
    seen_responses: set = field(default_factory=set)
    dropped: Counter = field(default_factory=Counter)

    def accept(self, prompt: str, response: str) -> str | None:
        reason = None
        try:
            parse(response)
        except AGLSyntaxError:
            reason = "unparsable"
        if reason is None and (prompt, response) in self.seen_pairs:
            reason = "duplicate"
        if reason is None and near_duplicate_key(response) in self.seen_responses:
            reason = "near_duplicate"
        if reason is not None:
            self.dropped[reason] += 1
            return reason
        self.seen_pairs.add((prompt, response))
        self.seen_responses.add(near_duplicate_key(response))
        return None


def example_errors(obj: dict, check_agl: bool = True) -> list[str]:
    """Schema problems of one corpus line, each a short phrase naming the field (empty list: valid)."""
    errors = [f"missing field '{k}'" for k in REQUIRED_KEYS if k not in obj]
    for key in ("id", "category", "lang"):
        if key in obj and not (isinstance(obj[key], str) and obj[key]):
            errors.append(f"field '{key}' must be a non-empty string")
    messages = obj.get("messages")
    if "messages" in obj:
        if not isinstance(messages, list) or len(messages) < 2:
            errors.append("field 'messages' must be a list of at least a user and an assistant message")
            return errors
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
                errors.append(f"messages[{i}] must be an object with exactly 'role' and 'content'")
            elif m["role"] not in ROLES:
                errors.append(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}")
            elif not isinstance(m["content"], str) or not m["content"].strip():
                errors.append(f"messages[{i}].content must be a non-empty string")
        if errors:
            return errors
        if messages[-1]["role"] != "assistant":
            errors.append("the last message must be the assistant's")
        if not any(m["role"] == "user" for m in messages):
            errors.append("no user message")
        if check_agl and messages[-1]["role"] == "assistant":
            try:
                parse(messages[-1]["content"])
            except AGLSyntaxError as e:
                errors.append(f"assistant message is not valid AGL: {e}")
    return errors
