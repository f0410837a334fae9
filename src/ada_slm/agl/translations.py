"""Source sentences of the polyglot category and their AGL: Lojban, Toki Pona and English sentences built from
vocab.py's word lists, each with the word-for-word AGL translation, correct by construction (AGL.md §3.6).
All randomness comes from the `rng` passed in, in a fixed order, so a seed fixes every pair."""

from __future__ import annotations

import random

from ada_slm.agl import glyphs as G
from ada_slm.agl import vocab as V

LANG_NAMES = {"tok": "Toki Pona", "jbo": "Lojban", "en": "English"}  # the {lang_name} of polyglot prompts


def _agl_translation(
    level: str, subject: str, predicate: str, obj: str | None, tense: int | None, modifier: str | None = None
) -> str:
    target = f"{predicate}({obj})" if obj else predicate
    if modifier:
        target = f"{target} ∧ {modifier}"
    if tense is None:
        return f"{level}{subject} → {target}"
    args = f"{subject}, {obj}" if obj else subject
    return f"{G.time_token(tense)}: {level}{predicate}({args})"


def toki_pona(rng: random.Random) -> tuple[str, str]:
    """A Toki Pona sentence and its AGL."""
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
    return sentence, _agl_translation(
        V.TOKI_CERTAINTY[cert_words], V.TOKI_SUBJECTS[subj], V.TOKI_VERBS[verb], obj_term, tense
    )


def lojban(rng: random.Random) -> tuple[str, str]:
    """A Lojban sentence and its AGL."""
    subj = rng.choice(tuple(V.LOJBAN_SUBJECTS))
    verb = rng.choice(tuple(V.LOJBAN_VERBS))
    obj = None if verb in V.LOJBAN_INTRANSITIVE else rng.choice(tuple(V.LOJBAN_OBJECTS))
    tense_word = rng.choice((None, None) + tuple(V.LOJBAN_TENSE))
    cert_word = rng.choice(tuple(V.LOJBAN_CERTAINTY))
    cu = " cu" if subj.startswith("lo ") else ""
    parts = [w for w in (cert_word, subj) if w]
    sentence = " ".join(parts) + cu + (f" {tense_word}" if tense_word else "") + f" {verb}" + (f" {obj}" if obj else "")
    tense = V.LOJBAN_TENSE[tense_word] if tense_word else None
    return sentence, _agl_translation(
        V.LOJBAN_CERTAINTY[cert_word],
        V.LOJBAN_SUBJECTS[subj],
        V.LOJBAN_VERBS[verb],
        V.LOJBAN_OBJECTS[obj] if obj else None,
        tense,
    )


def english(rng: random.Random) -> tuple[str, str]:
    """An English sentence and its AGL."""
    subj = rng.choice(tuple(V.ENGLISH_SUBJECTS))
    verb = rng.choice(tuple(V.ENGLISH_VERBS))
    obj = rng.choice(tuple(V.ENGLISH_OBJECTS))
    adverb = rng.choice(tuple(V.ENGLISH_CERTAINTY))
    when = rng.choice((None, None) + tuple(V.ENGLISH_TENSE))
    third_person = subj not in ("I", "you", "they")
    form = V.ENGLISH_VERBS[verb][0] if third_person else verb
    if when == "yesterday":
        form = {"see": "saw", "hear": "heard", "find": "found", "understand": "understood", "know": "knew"}.get(
            verb, (verb.split()[0] + ("d" if verb.split()[0].endswith("e") else "ed")) + verb[len(verb.split()[0]) :]
        )
    elif when == "tomorrow":
        form = f"will {verb}"
    words = [subj] + ([adverb] if adverb else []) + [form, obj] + ([when] if when else [])
    sentence = " ".join(words)
    sentence = sentence[0].upper() + sentence[1:] + "."
    tense = V.ENGLISH_TENSE[when] if when else None
    return sentence, _agl_translation(
        V.ENGLISH_CERTAINTY[adverb], V.ENGLISH_SUBJECTS[subj], V.ENGLISH_VERBS[verb][1], V.ENGLISH_OBJECTS[obj], tense
    )


# language code -> a (source sentence, AGL translation) maker
SENTENCE_MAKERS = {"jbo": lojban, "tok": toki_pona, "en": english}
