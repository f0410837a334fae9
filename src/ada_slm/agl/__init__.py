"""The AGL language: glyphs, parser, templates, generators, the corpus and suite builders."""

MAX_CORPUS_SIZE = 1_000_000  # examples the builder makes at most (checked before any is generated; config too)
