"""Word lists the generators draw from: English terms for AGL claims, and real Lojban / Toki Pona vocabulary
for the polyglot pairs. Each foreign word carries the English term it translates to, so a translation pair
is built from its parts and is correct by construction.
"""

from __future__ import annotations

# Things a claim can be about (AGL terms are lower-case ASCII identifiers).
NOUNS = (
    "rain", "light", "signal", "memory", "pattern", "river", "storm", "seed", "bridge", "market", "engine",
    "garden", "city", "answer", "question", "tide", "fire", "door", "path", "star", "cloud", "forest",
    "voice", "code", "network", "wave", "dream", "clock", "letter", "road", "mountain", "harbor", "lamp",
    "winter", "song", "map", "stone", "window", "orbit", "bell", "candle", "field", "tower", "ship", "key",
    "mirror", "echo", "root", "current", "frost", "ember", "thread", "compass", "lantern", "valley", "island",
    "archive", "circuit", "signal_tower", "weather", "harvest", "sensor", "pulse", "horizon", "glacier",
)
STATES = (
    "rising", "falling", "stable", "growing", "fading", "open", "closed", "hidden", "present", "absent",
    "warm", "cold", "bright", "dark", "moving", "still", "broken", "whole", "near", "far", "quiet", "loud",
    "full", "empty", "changing", "returning", "true", "false", "awake", "resting",
)
PLACES = (
    "box", "room", "house", "valley", "sky", "sea", "forest", "city", "field", "cave", "shelf", "drawer",
    "bag", "tower", "garden", "harbor", "orbit", "river", "library", "station",
)
TOOLS = ("search", "calculate", "lookup", "translate", "measure", "read", "map", "clock", "sensor", "archive")
EXISTENTIAL_PREDICATES = ("witness", "being", "exists", "remains", "persists", "begins", "ends", "returns")
SELF_OBJECTS = (
    "attention", "memory", "awareness", "moment", "question", "signal", "breath", "silence", "pattern",
    "thought", "doubt", "change", "presence", "listening",
)

# Evidence statements for each certainty level: the prompt states the evidence, the answer's glyph must fit.
EVIDENCE = {
    "●": (
        "it was measured directly",
        "three independent sources confirmed it",
        "you watched it happen yourself",
        "the record shows it beyond doubt",
        "it was verified twice today",
        "the instrument reading is unambiguous",
    ),
    "◕": (
        "most reports agree on it",
        "the evidence leans strongly toward it",
        "it has held in nine of the last ten cases",
        "two good sources say so and none disagree",
        "the trend points clearly that way",
    ),
    "◑": (
        "the evidence is split evenly",
        "it is a coin flip",
        "half the reports say yes and half say no",
        "the signs point both ways",
        "nobody can tell which way it will go",
    ),
    "◔": (
        "only a single rumour suggests it",
        "the evidence for it is weak",
        "one unreliable witness mentioned it",
        "it happened once, long ago",
        "most signs point against it",
    ),
    "○": (
        "there is no information at all",
        "nothing has been observed yet",
        "no one has checked",
        "the data is missing entirely",
        "there is no evidence either way and no way to look",
    ),
}

# -- polyglot ------------------------------------------------------------------------------------------
# Toki Pona (pu vocabulary). Subjects map to AGL subjects; "mi" is the speaker, λ(self).
TOKI_SUBJECTS = {"mi": "λ(self)", "sina": "other", "ona": "they", "jan": "person", "soweli": "animal",
                 "waso": "bird", "kili": "fruit"}
TOKI_VERBS = {  # verb -> AGL predicate
    "pilin": "feel", "sona": "know", "lukin": "see", "kute": "hear", "toki": "speak", "tawa": "go",
    "moku": "eat", "lape": "sleep", "pali": "make", "alasa": "search", "kepeken": "use", "olin": "love",
    "awen": "wait", "kama": "arrive", "open": "begin", "pini": "finish", "lon": "exist",
}
TOKI_OBJECTS = {"ma": "land", "telo": "water", "tomo": "house", "ilo": "tool", "lipu": "document",
                "seli": "fire", "suno": "sun", "mun": "moon", "kiwen": "stone", "nasin": "path",
                "kalama": "sound", "sitelen": "picture", "toki": "language", "tenpo": "time"}
TOKI_ADJECTIVES = {"pona": "good", "ike": "bad", "suli": "big", "lili": "small", "sin": "new", "wawa": "strong"}
TOKI_PLACES = {"insa": "⊂", "sewi": "↑", "anpa": "↓"}  # "lon insa tomo" = inside the house
TOKI_TENSE = {"tenpo pini la": 0, "tenpo ni la": 1, "tenpo kama la": 2}  # past / now / future
TOKI_CERTAINTY = {"": "●", "ken la": "◑"}  # plain statement = asserted; "ken la" = maybe

# Lojban (gismu). Subjects: mi (I), do (you), ko'a (it, he, she).
LOJBAN_SUBJECTS = {"mi": "λ(self)", "do": "other", "ko'a": "they", "lo prenu": "person", "lo mlatu": "cat",
                   "lo gerku": "dog", "lo cipni": "bird"}
LOJBAN_VERBS = {
    "sanji": "aware", "djuno": "know", "viska": "see", "tirna": "hear", "tavla": "speak", "klama": "go",
    "citka": "eat", "sipna": "sleep", "gunka": "work", "sisku": "search", "pilno": "use", "prami": "love",
    "denpa": "wait", "zasti": "exist", "jimpe": "understand", "morji": "remember",
}
LOJBAN_INTRANSITIVE = {"sanji", "sipna", "zasti", "gunka", "denpa"}
LOJBAN_OBJECTS = {"lo tcadu": "city", "lo cmana": "mountain", "lo xamsi": "sea", "lo tricu": "tree",
                  "lo cukta": "book", "lo tutci": "tool", "lo zdani": "house", "lo djacu": "water",
                  "lo solri": "sun", "lo lunra": "moon", "lo rokci": "stone", "lo pluta": "path"}
LOJBAN_TENSE = {"pu": 0, "ca": 1, "ba": 2}  # past / present / future
LOJBAN_CERTAINTY = {"": "●", "ju'o": "●", "la'a": "◕", "ju'o cu'i": "◑", "la'a nai": "◔"}

# English source sentences for English → AGL.
ENGLISH_SUBJECTS = {"I": "λ(self)", "you": "other", "they": "they", "the person": "person", "the cat": "cat",
                    "the bird": "bird", "the observer": "⊙(observer)"}
ENGLISH_VERBS = {  # base form, third person, AGL predicate
    "know": ("knows", "know"), "see": ("sees", "see"), "hear": ("hears", "hear"), "remember": ("remembers", "remember"),
    "search for": ("searches for", "search"), "use": ("uses", "use"), "love": ("loves", "love"),
    "understand": ("understands", "understand"), "find": ("finds", "find"), "watch": ("watches", "see"),
}
ENGLISH_OBJECTS = {"the city": "city", "the mountain": "mountain", "the sea": "sea", "the tree": "tree",
                   "the book": "book", "the tool": "tool", "the house": "house", "the water": "water",
                   "the sun": "sun", "the moon": "moon", "the path": "path", "the answer": "answer"}
ENGLISH_CERTAINTY = {"": "●", "certainly": "●", "probably": "◕", "maybe": "◑", "doubtfully": "◔"}
ENGLISH_TENSE = {"yesterday": 0, "now": 1, "tomorrow": 2}
