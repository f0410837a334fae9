"""Property tests of compare's readers: random lm-eval results and samples structures (valid files with fields
replaced by random JSON), random Inspect-like JSON logs, random CSV and JSONL tables, random bytes — every outcome
is an ImportedRun (or a list of them) or the tool's own UserError, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ada_slm.analysis.compare.readers import read_inspect, read_lm_eval, read_runs, read_table
from ada_slm.errors import UserError

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
any_text = st.text(st.characters(exclude_categories=()), max_size=10)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.sampled_from([float("nan"), float("inf"), 10**30, -1, 0, "", "acc", "../x", "t"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(any_text | st.sampled_from(["acc", "t", "metrics", "doc_id"]), inner, max_size=4)
    ),
    max_leaves=12,
)

RESULTS = {
    "results": {"t": {"acc,none": 1.0}},
    "configs": {"t": {"task": "t", "num_fewshot": 0}},
    "versions": {"t": 1},
    "n-shot": {"t": 0},
    "higher_is_better": {"t": {"acc": True}},
    "config": {"model": "hf", "model_args": "pretrained=x", "random_seed": 0},
}
SAMPLE = {"doc_id": 0, "doc_hash": "h", "filter": "none", "metrics": ["acc"], "acc": 1.0}


def _ok_or_user_error(read, *args):
    try:
        out = read(*args)
    except UserError as e:
        assert str(e) and "\n" not in str(e).strip(), str(e)
        return None
    return out


def _write(path: Path, text: str | bytes) -> Path:
    (
        path.write_bytes
        if isinstance(text, bytes)
        else lambda t: path.write_text(t, encoding="utf-8", errors="surrogatepass")
    )(text)
    return path


@PROPERTY
@given(
    field=st.sampled_from(sorted(RESULTS)),
    value=json_values,
    sample_field=st.sampled_from(sorted(SAMPLE)),
    sample_value=json_values,
)
def test_lm_eval_with_any_field_replaced(field, value, sample_field, sample_value):
    with tempfile.TemporaryDirectory() as d:
        results = {**RESULTS, field: value}
        _write(Path(d) / "results_2026.json", json.dumps(results, allow_nan=True))
        sample = {**SAMPLE, sample_field: sample_value}
        _write(Path(d) / "samples_t_2026.jsonl", json.dumps(sample, allow_nan=True) + "\n")
        _ok_or_user_error(read_lm_eval, Path(d) / "results_2026.json")


@PROPERTY
@given(value=json_values)
def test_any_json_as_results_or_inspect_log(value):
    with tempfile.TemporaryDirectory() as d:
        text = json.dumps(value, allow_nan=True)
        _ok_or_user_error(read_lm_eval, _write(Path(d) / "results_x.json", text))
        _ok_or_user_error(read_inspect, _write(Path(d) / "log.json", text))
        _ok_or_user_error(read_runs, _write(Path(d) / "t.jsonl", text + "\n"))


@PROPERTY
@given(
    rows=st.lists(
        st.lists(any_text | st.sampled_from(["r1", "q1", "acc", "1", "0.5", "nan", "1e308"]), min_size=0, max_size=6),
        max_size=6,
    ),
    header=st.sampled_from(["run,item,metric,score", "arm,run,item,metric,score", "run,item", ""]),
)
def test_any_csv_table(rows, header):
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow(row)
    with tempfile.TemporaryDirectory() as d:
        _ok_or_user_error(read_table, _write(Path(d) / "t.csv", header + "\n" + buf.getvalue()))


@PROPERTY
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".jsonl", ".json", ".eval", ".parquet"]))
def test_random_bytes_under_any_name(data, suffix):
    with tempfile.TemporaryDirectory() as d:
        name = "results_x.json" if suffix == ".json" else f"t{suffix}"
        _ok_or_user_error(read_runs, _write(Path(d) / name, data))
