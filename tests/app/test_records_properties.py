"""Property tests of every reader of the files in front of the tool — record.json, eval.jsonl, rounds.json,
spec.json, a study YAML, a suite YAML and a train config YAML — fed random bytes, random JSON/YAML, valid
files with one field replaced or a few bytes mutated, and the hostile cases seen in issue 24 (nesting
thousands deep, integers of 5 000 digits, lone surrogates, NaN, aliases that expand without end, duplicate
keys): every outcome is a valid result or the tool's own UserError, never another exception. A hang would
stop the test (every read here is of a regular file; FIFOs are tested in test_serve)."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ada_slm.analysis import adaptive, analysis
from ada_slm.analysis.arms import UNREADABLE
from ada_slm.analysis.report import decision as report_decision
from ada_slm.analysis.report import doc as report_doc
from ada_slm.analysis.report import writer as report
from ada_slm.app import serve, study_view
from ada_slm.errors import UserError
from ada_slm.files import iter_jsonl, write_json, write_jsonl
from ada_slm.run import records
from ada_slm.run.config import load_config
from ada_slm.run.metrics import METRICS
from ada_slm.run.suites import load_suite
from ada_slm.study.spec import expand, load_study
from tests.app.test_serve import TINY, finished_run

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
STATES = {"pending", "running", "complete", "failed", "interrupted", "unreadable"}


# ------------------------------------------------------------------------------------------ strategies
any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.sampled_from([float("nan"), float("inf"), 10**30, -1, 0, "", "complete", "failed"])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=12
)


def hostile_json(depth: int, digits: int) -> list[str]:
    return [
        "[" * depth + "]" * depth,
        '{"a": ' * depth + "1" + "}" * depth,
        "7" * digits,
        '{"status": {"state": "complete"}, "meta": {"seed": ' + "7" * digits + "}}",
        '{"status": {"state": "complete", "reason": "\\ud800"}, "eval": {"n_items": NaN}}',
        '{"status": {"state": NaN}, "train": {"steps": [{"step": 1, "loss": Infinity}]}}',
        '{"status": {"state": "running"}, "config": {"total_steps": 0}, "train": {"steps": []}}',
    ]


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """`original` with a few bytes cut, inserted or replaced, or truncated."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["cut", "insert", "replace", "truncate"]))
        if op == "cut":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"[", b"{", b'"', b"\xff", b"\n"]))
        elif op == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            del data[at:]
    return bytes(data)


def _slots(tree) -> list[tuple]:
    """Every (container, key) of a JSON/YAML tree: the places one field can be replaced."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            out.append((node, k))
            stack.append(v)
    return out


@st.composite
def one_field_replaced(draw, tree):
    tree = copy.deepcopy(tree)
    container, key = draw(st.sampled_from(_slots(tree)))
    container[key] = draw(json_values)
    return tree


def dumped(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def json_files(valid) -> st.SearchStrategy[bytes]:
    """The contents a JSON file of the tool's can be found with."""
    text = json.dumps(valid).encode()
    return st.one_of(
        st.binary(max_size=300),
        st.builds(dumped, json_values, st.booleans()),
        st.builds(dumped, one_field_replaced(valid), st.booleans()),
        mutated(text),
        st.builds(
            lambda d, n, i: hostile_json(d, n)[i].encode(),
            st.integers(90, 5000),
            st.integers(4000, 6000),
            st.integers(0, 6),
        ),
    )


# ------------------------------------------------------------------------------------------ a study to read
@pytest.fixture(scope="module")
def study_on_disk(tmp_path_factory):
    """tiny-2arm with every run finished (6 items each), read by the properties below."""
    root = tmp_path_factory.mktemp("props")
    study = load_study(TINY)
    specs = [
        s
        for s in expand(study, str(TINY), results_root=root / "results", exports_root=root / "exports")
        if s.arm != "broken"
    ]
    rng = np.random.default_rng(3)
    for s in specs:
        finished_run(s, rng, {"base": 0.0, "r8": 0.1, "r16-b1": 0.3}[s.arm], n_items=6)
    target = next(s for s in specs if s.key == "r8/seed0")
    valid_record = json.loads((target.run_dir / "record.json").read_text())
    valid_rows = [row for _, row in iter_jsonl(target.run_dir / "eval.jsonl")]
    return study, specs, target, valid_record, valid_rows, root / "results"


def _served(view: study_view.StudyView, target) -> None:
    """What `study serve` answers about the target run, rendered as the API would: never an exception."""
    cell = study_view.run_state(target, view.reader, True, time.time())
    assert cell["state"] in STATES
    for content in (view.state(), view.curves(), view.run(target.arm, target.seed)):
        serve.render_json(content)


# ------------------------------------------------------------------------------------------ record.json
RECORD = json.loads(
    json.dumps(
        {
            "config": {"total_steps": 3},
            "status": {"state": "complete", "reason": None},
            "train": {
                "steps": [{"step": 1, "loss": 4.8, "tokens": 400, "sequences": 4, "tokens_per_s": 200.0}],
                "val": [{"step": 1, "loss": 4.5}],
                "final_train_loss": 4.8,
                "final_val_loss": 4.5,
                "wall_s": 6.0,
                "tokens_per_s": 200.0,
            },
            "eval": {
                "suite": "multilang",
                "n_items": 6,
                "generation_s": 2.0,
                "metrics": {"agl_awareness": {"mean": 0.2}},
                "generation": {"mode": "greedy", "max_new_tokens": 6, "batch_size": 8},
            },
            "meta": {"seed": 0},
        }
    )
)


@PROPERTY
@given(content=json_files(RECORD))
def test_record_json_is_a_record_or_one_line(study_on_disk, content):
    study, specs, target, _, _, results = study_on_disk
    path = target.run_dir / "record.json"
    path.write_bytes(content)
    try:
        rec = records.read_record(target.run_dir)
    except records.CorruptRecord as e:
        assert str(path) in str(e) and "\n" not in str(e)
        rec = None
    if rec is not None:
        records.is_complete(rec), records.is_trained(rec)
    arms = analysis.collect(specs)
    assert arms["r8"].states[0] in STATES
    _served(study_view.StudyView(study, specs, None, results), target)
    records.mark_failed(target.run_dir, "property test")  # keeps what it can read, never raises


# ------------------------------------------------------------------------------------------ eval.jsonl
ROW = {
    "id": "item00",
    "lang": "en",
    "category": "certainty",
    "prompt": "p",
    "output": "⊕ self here t₀",
    "metrics": {m: 0.5 for m in METRICS},
}


@st.composite
def eval_files(draw) -> bytes:
    lines = draw(
        st.lists(
            st.one_of(
                st.builds(dumped, one_field_replaced(ROW), st.booleans()),
                st.builds(dumped, json_values, st.booleans()),
                mutated(json.dumps(ROW).encode()),
                st.builds(
                    lambda d, n, i: hostile_json(d, n)[i].encode(),
                    st.integers(90, 3000),
                    st.integers(4000, 5000),
                    st.integers(0, 6),
                ),
            ),
            min_size=1,
            max_size=4,
        )
    )
    good = [json.dumps({**ROW, "id": f"item{i:02d}"}).encode() for i in range(6)]
    return b"\n".join(good[: draw(st.integers(0, 6))] + lines) + b"\n"


@settings(PROPERTY, max_examples=10)
@given(content=eval_files())
def test_eval_jsonl_costs_its_own_run_only(study_on_disk, content):
    study, specs, target, valid_record, valid_rows, results = study_on_disk
    write_json(target.run_dir / "record.json", valid_record)
    path = target.run_dir / "eval.jsonl"
    path.write_bytes(content)
    try:
        list(iter_jsonl(path))
    except UserError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    a = analysis.analyse(study, specs)  # the run is in the analysis or left out with its reason
    assert a.data["r8"].states[0] in ("complete", UNREADABLE)
    assert a.arms["r16-b1"].n_complete == 2 and a.arms["base"].n_complete == 2
    report.summary(a)
    view = study_view.StudyView(study, specs, None, results)
    serve.render_json(view.run(target.arm, target.seed))
    write_jsonl(path, valid_rows)


# ------------------------------------------------------------------------------------------ rounds.json
ROUNDS = {
    "plan": {
        "seeds": [0, 1],
        "seeds_per_round": 1,
        "max_seeds": 3,
        "looks": [2, 3],
        "metric": "agl_awareness",
        "rule": "O'Brien-Fleming",
        "alpha": 0.05,
    },
    "outcome": "decided",
    "rounds": [
        {
            "round": 1,
            "questions": {"rank": {"delta": 0.19, "p": 0.0004, "status": "supported"}},
            "runs_per_arm": {"r8": 2, "r16-b1": 2},
            "threshold": 0.0005,
            "next_arms": [],
        }
    ],
    "answers": {"rank": "supported"},
}


@PROPERTY
@given(content=json_files(ROUNDS))
def test_rounds_json_is_rounds_or_one_line(study_on_disk, content):
    study, specs, _, _, _, results = study_on_disk
    path = results / study.name / "rounds.json"
    path.write_bytes(content)
    try:
        adaptive.read_rounds(path)  # what the runner reads
    except UserError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    rounds, why = study_view.JsonReader().read(path)  # what the page reads
    doc = report_doc.Doc()
    problem = report_decision.render_rounds_or_why(doc, rounds)
    assert (problem is None) or not any(b[0] == "h" and b[2] == "Adaptive rounds" for b in doc.blocks)
    path.unlink()


# ------------------------------------------------------------------------------------------ spec.json
@PROPERTY
@given(data=st.data())
def test_spec_json_never_breaks_the_page(study_on_disk, data):
    study, specs, target, _, _, results = study_on_disk
    valid = {
        "arm": target.arm,
        "seed": target.seed,
        "base": target.base,
        "train": target.train and target.train.model_dump(mode="json"),
        "eval": target.eval,
        "tracking": None,
    }
    path = target.run_dir / "spec.json"
    path.write_bytes(data.draw(json_files(valid)))
    serve.infer_scale(study, str(TINY), results, results.parent / "exports")
    serve.render_json(study_view.StudyView(study, specs, None, results).run(target.arm, target.seed))
    path.unlink()


# ------------------------------------------------------------------------------------------ YAML files
def hostile_yaml(depth: int, digits: int) -> list[str]:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)
    )
    return [
        "name: [" + "[" * depth + "]" * depth + "]\n",
        "name: " + "{a: " * depth + "1" + "}" * depth + "\n",
        f"name: s\nseeds: [{'7' * digits}]\n",
        laughs,
        "a: &a [*a]\n",
        "a: 1\nb: 2\na: 3\n",
        "name: !!binary aGVsbG8=\n",
        "name: !!python/object:os.system x\n",
        "? [a, b]\n: 1\n",
        "name: 2024-01-01\narms: {2024-01-01: {}}\n",
        "--- a\n--- b\n",
        "name: s\n\t- x\n",
        "\ufeffname: s\n",
    ]


def yaml_files(valid_text: str) -> st.SearchStrategy[bytes]:
    valid = yaml.safe_load(valid_text)

    def lines_edited(lines: list[str], i: int, op: str, extra: str) -> bytes:
        i %= len(lines)
        if op == "duplicate":
            lines = lines[: i + 1] + [lines[i]] + lines[i + 1 :]
        elif op == "delete":
            lines = lines[:i] + lines[i + 1 :]
        else:
            lines = lines[:i] + [extra] + lines[i:]
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    def yaml_dumped(tree) -> bytes:
        return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")

    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.builds(
            lines_edited,
            st.just(valid_text.splitlines()),
            st.integers(0, 200),
            st.sampled_from(["duplicate", "delete", "insert"]),
            st.text(max_size=30),
        ),
        mutated(valid_text.encode()),
        one_field_replaced(valid).map(yaml_dumped),
        st.builds(
            lambda d, n, i: hostile_yaml(d, n)[i].encode("utf-8"),
            st.integers(90, 3000),
            st.integers(4000, 6000),
            st.integers(0, 12),
        ),
    )


def _one_line(e: UserError, path) -> None:
    assert str(path) in str(e) and "\n" not in str(e), str(e)


@PROPERTY
@given(content=yaml_files(TINY.read_text()))
def test_study_yaml_is_a_study_or_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_bytes(content)
    try:
        expand(load_study(path), str(path), results_root=path.parent / "r", exports_root=path.parent / "e")
    except UserError as e:
        assert "\n" not in str(e), str(e)


SUITE = (
    'name: two\nitems:\n  - {id: a-1, lang: en, category: certainty, prompt: "How sure?", '
    'expected_certainty: "●"}\n  - {id: a-2, lang: agl, category: temporal, prompt: "t₀ → t₁"}\n'
)
CONFIG = "base: tiny-lfm2\ndata: {size: 60, val_fraction: 0.1}\nlora: {r: 8, alpha: 16}\nbatch: {micro: 2, accum: 2}\n"


@PROPERTY
@given(content=yaml_files(SUITE))
@pytest.mark.slow
def test_suite_yaml_is_a_suite_or_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("suite") / "suite.yaml"
    path.write_bytes(content)
    try:
        load_suite(str(path))
    except UserError as e:
        _one_line(e, path)


@PROPERTY
@given(content=yaml_files(CONFIG))
@pytest.mark.slow
def test_train_config_yaml_is_a_config_or_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("config") / "train.yaml"
    path.write_bytes(content)
    try:
        load_config(path)
    except UserError as e:
        assert "\n" not in str(e), str(e)
