import json

import pytest

from ada_slm.agl.builder import CATEGORIES, PURE_MIX, allocate, build_corpus, resolve_mix, summarize
from ada_slm.agl.quality import QualityFilter, example_errors, near_duplicate_key
from ada_slm.errors import UserError
from ada_slm.files import write_jsonl


def test_allocate_is_exact_and_proportional():
    counts = allocate(2000, PURE_MIX)
    assert sum(counts.values()) == 2000
    assert counts["certainty"] == 320 and counts["protocol"] == 120
    assert sum(allocate(7, {"edge": 1, "tool": 1, "self": 1}).values()) == 7


def test_same_seed_gives_byte_identical_files(tmp_path):
    paths = []
    for name in ("a", "b"):
        corpus = build_corpus(600, "pure", seed=3, val_fraction=0.1)
        write_jsonl(tmp_path / f"{name}.jsonl", corpus.train + corpus.val)
        paths.append(tmp_path / f"{name}.jsonl")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = build_corpus(600, "pure", seed=4)
    assert [r["id"] for r in other.train] != [
        json.loads(line)["id"] for line in paths[0].read_text().splitlines()[:540]
    ]


def test_pure_mix_covers_every_category_except_polyglot_and_all_rows_are_valid():
    corpus = build_corpus(900, "pure", seed=0)
    assert len(corpus.train) == 900 and corpus.val == []
    assert {r["category"] for r in corpus.train} == set(CATEGORIES) - {"polyglot"}
    for row in corpus.train:
        assert example_errors(row) == []


def test_polyglot_mix_of_200():
    corpus = build_corpus(200, "polyglot", seed=0)
    assert len(corpus.train) == 200
    assert {r["lang"] for r in corpus.train} == {"jbo", "tok", "en"}


@pytest.mark.parametrize("size", [2000, 5000, 20000, pytest.param(50000, marks=pytest.mark.slow)])
def test_sizes_build_and_stay_unique(size):
    corpus = build_corpus(size, "pure", seed=0, val_fraction=0.1)
    rows = corpus.train + corpus.val
    assert len(rows) == size
    responses = [r["messages"][-1]["content"] for r in rows]
    unique_share = len(set(responses)) / len(responses)
    assert unique_share >= 0.90
    # the near-duplicate filter makes answers unique even after folding case and whitespace
    assert len({near_duplicate_key(t) for t in responses}) == len(responses)


def test_val_split_shares_no_template_and_no_answer_with_train():
    corpus = build_corpus(3000, "pure", seed=1, val_fraction=0.1)
    assert 250 <= len(corpus.val) <= 350
    train_templates = {r["template"] for r in corpus.train}
    val_templates = {r["template"] for r in corpus.val}
    assert val_templates and not (train_templates & val_templates)
    assert {r["category"] for r in corpus.val} == {r["category"] for r in corpus.train}
    train_answers = {r["messages"][-1]["content"] for r in corpus.train}
    assert not any(r["messages"][-1]["content"] in train_answers for r in corpus.val)


def test_quality_filter_drops_unparsable_duplicates_and_near_duplicates():
    q = QualityFilter()
    assert q.accept("p", "●rain") is None
    assert q.accept("p", "●rain") == "duplicate"
    assert q.accept("other prompt", "●rain — It Rains") is None
    assert q.accept("third prompt", "●rain — it rains") == "near_duplicate"
    assert q.accept("other prompt", " ●rain  ") == "near_duplicate"
    assert q.accept("p2", "●rain ∧") == "unparsable"
    assert q.accept("p3", "◕rain") is None
    assert dict(q.dropped) == {"duplicate": 1, "near_duplicate": 2, "unparsable": 1}


def test_resolve_mix_yaml_and_errors(tmp_path):
    good = tmp_path / "mix.yaml"
    good.write_text("certainty: 2\ntool: 1\nprotocol: 0\n")
    assert resolve_mix(str(good)) == {"certainty": 2.0, "tool": 1.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("certainty: 1\nsarcasm: 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: unknown category 'sarcasm'"):
        resolve_mix(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("certainty: [1\n")
    with pytest.raises(UserError, match=r"broken.yaml:\d+: invalid YAML"):
        resolve_mix(str(broken))
    neg = tmp_path / "neg.yaml"
    neg.write_text("certainty: -1\n")
    with pytest.raises(UserError, match="must be a number ≥ 0"):
        resolve_mix(str(neg))
    with pytest.raises(UserError, match="unknown mix 'nonsense'"):
        resolve_mix("nonsense")


def test_impossible_sizes_are_user_errors():
    with pytest.raises(UserError, match="positive"):
        build_corpus(0)
    with pytest.raises(UserError, match="val-fraction"):
        build_corpus(10, val_fraction=1.5)


def test_summarize_counts():
    corpus = build_corpus(100, {"tool": 1, "space": 1}, seed=0)
    s = summarize(corpus.train)
    assert s["total"]["examples"] == 100
    assert set(s["groups"]) == {"tool/en", "space/en"}
    assert s["total"]["unique_responses"] == 100
    assert s["total"]["mean_response_tokens"] > 3


def test_example_errors_name_the_field():
    assert "missing field 'lang'" in example_errors({"id": "a", "category": "x", "messages": []})
    row = {
        "id": "a",
        "category": "c",
        "lang": "en",
        "messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "●x"}],
    }
    assert any("messages[1].role" in e for e in example_errors(row))
    row["messages"][1] = {"role": "assistant", "content": "●x ∧"}
    assert any("not valid AGL" in e for e in example_errors(row))
    assert example_errors(row, check_agl=False) == []


def _texts(rows):
    return [(r["id"], r["messages"][0]["content"], r["messages"][-1]["content"]) for r in rows]


def test_fixed_held_out_set_is_identical_for_every_corpus_size():
    small = build_corpus(2000, "pure", seed=0, val_fraction=0.1, val_size=200)
    large = build_corpus(5000, "pure", seed=0, val_fraction=0.1, val_size=200)
    assert len(small.val) == len(large.val) == 200
    assert _texts(small.val) == _texts(large.val)  # same ids, prompts, answers and order
    assert (len(small.train), len(large.train)) == (1800, 4800)
    for corpus in (small, large):  # and still held out: no template, no answer shared with training
        train_templates = {r["template"] for r in corpus.train}
        assert not train_templates & {r["template"] for r in corpus.val}
        assert not {r["messages"][-1]["content"] for r in corpus.train} & {
            r["messages"][-1]["content"] for r in corpus.val
        }
    other_seed = build_corpus(2000, "pure", seed=1, val_fraction=0.1, val_size=200)
    assert _texts(other_seed.val) != _texts(small.val)


def test_fixed_held_out_set_through_the_run_config():
    from ada_slm.run.config import build_config
    from ada_slm.run.datasets_io import load_rows, rows_hash

    cfgs = [build_config({"data": {"size": n, "val_size": 30}}) for n in (150, 400)]
    (train_a, val_a, source), (train_b, val_b, _) = (load_rows(c.data) for c in cfgs)
    assert rows_hash(val_a) == rows_hash(val_b) and len(val_a) == 30 and len(train_a) == 120
    assert "val_size=30" in source


@pytest.mark.parametrize(
    "data, message",
    [
        ({"size": 100, "val_size": 100}, "must be smaller than data.size"),
        ({"size": 100, "val_size": 10, "val_fraction": 0.0}, "needs data.val_fraction > 0"),
        ({"path": "x.jsonl", "val_size": 10}, "builder's fixed held-out set"),
    ],
)
def test_val_size_errors_name_the_field(data, message):
    from ada_slm.run.config import build_config

    with pytest.raises(UserError, match=message):
        build_config({"data": data})
