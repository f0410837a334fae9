"""The corpora a seed builds are fixed: sha256 of the files `ada-slm data build` / `data suite` write, recorded
on main before the templates moved from Python into agl/templates.yaml (issue 25). A change to a template, a
generator or the builder that alters any byte of a seeded corpus fails here; if the change is meant, record the
new hashes in the same commit and say why (studies that reuse a corpus name then train on other data)."""

import hashlib
import json
import random
from importlib import resources

import pytest

from ada_slm.agl.builder import build_corpus
from ada_slm.agl.generators import GENERATORS, default_templates
from ada_slm.agl.suite_builder import build_heldout_suite
from ada_slm.files import write_jsonl

SHIPPED_SUITE = resources.files("ada_slm") / "suites" / "agl-heldout.jsonl"

# (size, mix, seed, val_fraction, val_size) -> (sha256 of the train file, of the held-out file or None)
CORPORA = {
    (2000, "pure", 0, 0.0, None): ("c5d2028e894592cc5b2a2c624f159ce1b38e60edb9a91895023130c9cb9beff6", None),
    (5000, "pure", 1, 0.1, None): (
        "856dab979a448028e82b44889d0442fe9b78d9346496a289b65c669f1496197e",
        "9dc17bec76cc0e97b19d945a2a22c824fb234be6e01fb2b127d1f3e349501080",
    ),
    # val_size: the same held-out file for every corpus size of one seed
    (2000, "pure", 0, 0.1, 300): (
        "ad231f46ca3a9bd94ff2c4a4762860e66380887e543f858e0fb56fb7ec6b0524",
        "9e343ba105eef8fb3c7c4860110a614cbd0bd5827da12d1d96cfd7d26c3a3edb",
    ),
    (5000, "pure", 0, 0.1, 300): (
        "43719a5c7f9d7b8dd1b24e18f77f21d89257134e369ec14ef80fd58867dd50e0",
        "9e343ba105eef8fb3c7c4860110a614cbd0bd5827da12d1d96cfd7d26c3a3edb",
    ),
    (20000, "pure", 0, 0.1, 2000): (
        "47ec980dc778055236fecba12b5d0ba2c8baa2686e4a9a5e9bc655e10678f032",
        "c075bca0ad9b84db057ce940a71bbd2f60c73d3f233ef792f69a96046fa928d4",
    ),
    (200, "polyglot", 0, 0.0, None): ("e8ea258665c1728493e75e016d5c5429ae9e813e53d2ae976b8677928e17251b", None),
    (1000, "polyglot", 2, 0.2, None): (
        "9d36743b5e59ac0a495058d7b787bb44d7238d035c59c0af5ccb6f86dde0fb6e",
        "4303937f056988c2713d77e4233ec033e04b7b81bac55f6631e1a79a573ae2e5",
    ),
    (800, "polyglot", 0, 0.1, 100): (
        "7a8ee1fa7ddba25cb742842433ae358737c71397588ddac425d79e459c26a6f5",
        "0e2d3819c21c45964268a7c241bf5a8b117280d9a27131077d63fdfc24c67205",
    ),
}
# suites/agl-heldout.jsonl: `ada-slm data suite` with its defaults (100 per category, seed 0)
SUITE_SHA256 = "6f6197cffd5a7a0da8cb88bf8a276505b2e7e8871a00daa48cf23124031c1e12"
SMALL_SUITE_SHA256 = "cd617028685de118f07d9910e59dbf22519d3a6ef0d85287d8bb5d88d4e8fb75"  # 12 per category, seed 3
# 15 samples of every training and held-out template of every category
EVERY_TEMPLATE_SHA256 = "a7f28a41a07aca1cad77f479620b6267185a4b6633ae81d4c99156e51798fc4a"


def _sha256(path) -> str:  # a Path or an importlib.resources Traversable
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(tmp_path, name, rows):
    path = tmp_path / name
    write_jsonl(path, rows)  # the CLI's writer: the bytes a user gets
    return _sha256(path)


@pytest.mark.parametrize("args", list(CORPORA), ids=lambda a: "-".join(map(str, a)))
def test_seeded_corpus_bytes_are_unchanged(args, tmp_path):
    size, mix, seed, val_fraction, val_size = args
    corpus = build_corpus(size, mix, seed, val_fraction, val_size=val_size)
    train = _write(tmp_path, "train.jsonl", corpus.train)
    val = _write(tmp_path, "val.jsonl", corpus.val) if corpus.val else None
    assert (train, val) == CORPORA[args]


def test_held_out_suite_bytes_are_unchanged(tmp_path):
    assert _sha256(SHIPPED_SUITE) == SUITE_SHA256
    assert _write(tmp_path, "suite.jsonl", build_heldout_suite()) == SUITE_SHA256
    assert _write(tmp_path, "small.jsonl", build_heldout_suite(12, seed=3)) == SMALL_SUITE_SHA256


def test_every_template_gives_the_same_samples():
    lines = []
    for category, generate in GENERATORS.items():
        rng = random.Random(f"every:{category}")
        templates = default_templates().categories[category]
        for template in range(len(templates.templates) + len(templates.held_out)):
            for _ in range(15):
                s = generate(rng, [template])
                lines.append(json.dumps([s.prompt, s.response, s.template, s.lang, s.extra], ensure_ascii=False))
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == EVERY_TEMPLATE_SHA256
