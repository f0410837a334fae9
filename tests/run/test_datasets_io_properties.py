"""Property tests of the readers of user files on the write side (issue 24): the five data formats of
datasets_io.py and the train YAML config. Fed random and mutated bytes, JSON and YAML, every outcome is a valid
result or the tool's own one-line UserError — never another exception. Examples are few and small, so the file
runs in seconds; the `datasets`-backed formats (CSV, Parquet, Arrow) get fewer, being slower per file."""

import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ada_slm.errors import UserError
from ada_slm.run.config import TrainConfig, load_config
from ada_slm.run.data_formats import FORMATS
from ada_slm.run.datasets_io import read_rows, rows_hash
from tests.shared import DATA

SAMPLES = DATA / "formats"  # a file of each format
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Field names the readers look at, so random examples reach past "no known format" into the format code.
FIELDS = sorted(
    {k for keys in FORMATS.values() for k in keys}
    | {
        "role",
        "content",
        "from",
        "value",
        "weight",
        "system",
        "history",
        "input",
        "id",
        "category",
        "lang",
        "chosen",
        "rejected",
    }
)
ROLES = ["user", "assistant", "system", "human", "gpt", "tool"]
any_text = st.text(st.characters(exclude_categories=()), max_size=8)  # lone surrogates included
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.sampled_from(ROLES)
    | st.integers(min_value=0, max_value=1)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | any_text, inner, max_size=5),
    max_leaves=12,
)
examples_ = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)


@pytest.fixture(autouse=True)
def datasets_cache_in_tmp(tmp_path, monkeypatch):
    """`datasets` converts Parquet/CSV into its own cache: keep that out of the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """`original` with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        byte = draw(st.integers(0, 255))
        if action == "replace" and at < len(data):
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        elif action == "delete" and at < len(data):
            del data[at]
        elif action == "truncate":
            del data[at:]
    return bytes(data)


def read_or_user_error(content: bytes, suffix: str, fmt: str = "auto") -> None:
    """Write `content` as a data file and read it: rows that can be hashed (what a run does first with
    them), or a one-line UserError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        try:
            rows, found = read_rows(str(path), fmt)
        except UserError as e:
            assert "\n" not in str(e).strip(), str(e)
            return
        assert rows and found in FORMATS
        rows_hash(rows)


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


JSONL_SAMPLES = b"".join(_sample(n) for n in ("messages.jsonl", "sharegpt.jsonl", "prompt_completion.jsonl"))


@FAST
@given(st.lists(examples_, min_size=1, max_size=4), st.sampled_from(["auto", *FORMATS]))
@example([{"prompt": "q", "completion": "a\ud800"}], "auto")  # lone surrogate
@example([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]}], "auto")
def test_jsonl_of_random_examples(rows, fmt):
    read_or_user_error("".join(json.dumps(r) + "\n" for r in rows).encode(), ".jsonl", fmt)


@FAST
@given(st.binary(max_size=200) | mutated(JSONL_SAMPLES) | mutated(_sample("alpaca.json")))
@example(b"[" * 50_000 + b"]" * 50_000)  # nesting deeper than the parser's recursion limit
@example(b'{"prompt": "q", "completion": "a", "id": ' + b"9" * 5000 + b"}")  # past int's digit limit
def test_jsonl_and_json_of_random_and_mutated_bytes(content):
    read_or_user_error(content, ".jsonl")
    read_or_user_error(content, ".json")


@FAST
@given(st.lists(examples_, max_size=3))
def test_json_array_of_random_examples(rows):
    read_or_user_error(json.dumps(rows).encode(), ".json")


@SLOW
@given(st.binary(max_size=120) | mutated(_sample("questions.csv")))
@example(b"prompt,completion\nq\x00,a\n")  # a NUL byte
@example(b"prompt,prompt\nq,a\n")  # a repeated column
def test_csv_of_random_and_mutated_bytes(content):
    read_or_user_error(content, ".csv")


def _columnar_samples() -> dict[str, bytes]:
    """The same small corpus as one Parquet file and one Arrow file, as bytes to mutate."""
    import datasets

    rows = [{"prompt": "What is 2+2?", "completion": "4"}, {"prompt": "Capital of Italy?", "completion": "Rome"}]
    with tempfile.TemporaryDirectory() as folder:
        ds = datasets.Dataset.from_list(rows)
        ds.to_parquet(f"{folder}/d.parquet")
        ds.save_to_disk(f"{folder}/saved")
        arrow = next(Path(f"{folder}/saved").glob("*.arrow"))
        return {".parquet": Path(f"{folder}/d.parquet").read_bytes(), ".arrow": arrow.read_bytes()}


COLUMNAR = _columnar_samples()


@SLOW
@given(
    st.sampled_from(sorted(COLUMNAR)).flatmap(
        lambda suffix: st.tuples(st.just(suffix), st.binary(max_size=64) | mutated(COLUMNAR[suffix]))
    )
)
@example((".parquet", COLUMNAR[".parquet"]))
@example((".arrow", COLUMNAR[".arrow"]))
def test_parquet_and_arrow_of_random_and_mutated_bytes(case):
    suffix, content = case
    read_or_user_error(content, suffix)


# ------------------------------------------------------------------------------------------------ train YAML
def _schema_keys(model, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys += _schema_keys(annotation, prefix + name + ".")
    return keys


CONFIG_KEYS = _schema_keys(TrainConfig)
yaml_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["auto", "fp32", "default", "linear"])
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _nested(flat: dict) -> dict:
    """{'lora.r': 4} -> {'lora': {'r': 4}} (a key that is also a section keeps the section)."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node.setdefault(last, value)
    return out


def load_or_user_error(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.yaml"
        path.write_bytes(text)
        try:
            cfg = load_config(path)
        except UserError as e:
            assert str(path) in str(e) and "\n" not in str(e).strip(), str(e)
            return
    dumped = cfg.model_dump()
    json.dumps(dumped, allow_nan=False)  # a valid config holds finite numbers only
    assert 0 <= cfg.seed < 2**32 and math.isfinite(cfg.epochs) and cfg.epochs > 0


SAMPLE_CONFIG = yaml.safe_dump(
    {
        "base": "tiny-lfm2",
        "data": {"size": 120, "val_fraction": 0.1},
        "lora": {"r": 4, "alpha": 8},
        "batch": {"micro": 2, "accum": 2},
        "max_steps": 6,
        "lr": 1e-3,
        "seed": 3,
        "epochs": 2.5,
    }
).encode()


@FAST
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), yaml_values, max_size=6))
@example({"epochs": float("inf")})
@example({"seed": -1})
@example({"seed": 2**32})
def test_train_yaml_of_random_values(flat):
    load_or_user_error(yaml.safe_dump(_nested(flat)).encode())


@FAST
@given(st.binary(max_size=120) | mutated(SAMPLE_CONFIG))
@example(b"\x80")  # not UTF-8
@example(b"\x00")  # a character YAML forbids
@example(b"a: " + b"[" * 50_000)  # nesting deeper than the parser's recursion limit
@example(b"seed: " + b"9" * 5000)  # past int's digit limit
@pytest.mark.slow
def test_train_yaml_of_random_and_mutated_bytes(content):
    load_or_user_error(content)
