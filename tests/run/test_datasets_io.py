import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ada_slm.agl.builder import build_corpus
from ada_slm.app.cli import app
from ada_slm.errors import UserError
from ada_slm.files import write_jsonl
from ada_slm.run import models
from ada_slm.run.config import build_config
from ada_slm.run.datasets_io import IGNORE, hold_out, load_rows, read_rows, rows_hash, tokenize
from ada_slm.run.train import run
from tests.shared import DATA

FORMATS = DATA / "formats"
EOT = "<|im_end|>"
# The hand-written files and, per example, the assistant turns that must carry loss (each + end-of-turn).
TRAINED = {
    "messages.jsonl": ("auto", {}, [["Hi!"], ["4", "6"], ["Red."]]),  # 3rd: the first answer has weight 0
    "sharegpt.jsonl": ("auto", {}, [["Blue."], ["Hello!", "Bye!"]]),
    "prompt_completion.jsonl": ("auto", {}, [[" Paris."], ["4"]]),  # 2nd: the prompt's own "2" is context
    "alpaca.json": ("auto", {}, [["chat"], ["large"], ["Hello.", "1 2 3"]]),  # 3rd: history is trained too
    "questions.csv": ("auto", {"prompt": "question", "completion": "answer", "category": "topic"}, [["4"], ["Rome"]]),
}
runner = CliRunner()


@pytest.fixture(autouse=True)
def datasets_cache_in_tmp(tmp_path, monkeypatch):
    """`datasets` converts Parquet/CSV into its own cache: keep that out of the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return models.load("tiny-lfm2")[1]


def spans(example) -> list[list[int]]:
    """The runs of consecutive tokens that carry loss."""
    out, current = [], []
    for label in example.labels + [IGNORE]:
        if label != IGNORE:
            current.append(label)
        elif current:
            out, current = out + [current], []
    return out


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_every_trained_assistant_turn_and_only_those_carry_loss(name, tiny_tokenizer):
    fmt, columns, expected = TRAINED[name]
    rows, _ = read_rows(str(FORMATS / name), fmt, columns)
    examples, dropped = tokenize(rows, tiny_tokenizer, max_length=512)
    assert dropped == 0 and len(examples) == len(expected)
    for row, example, answers in zip(rows, examples, expected, strict=True):
        assert [tiny_tokenizer.decode(s) for s in spans(example)] == [a + EOT for a in answers]
        assert example.labels[0] == IGNORE and len(example.labels) == len(example.input_ids)
        assert all(label in (IGNORE, token) for label, token in zip(example.labels, example.input_ids, strict=True))
        if row["train_on"][-1]:  # the whole sequence is the template's rendering of the conversation
            rendered = tiny_tokenizer.apply_chat_template(row["messages"], tokenize=False)
            assert tiny_tokenizer.decode(example.input_ids) == rendered.removesuffix("\n")


def test_plain_text_trains_on_every_token_when_asked(tiny_tokenizer):
    rows, fmt = read_rows(str(FORMATS / "text.jsonl"), "text")
    assert fmt == "text" and rows[0]["text"] == "Once upon a time there was a tiny model."
    examples, _ = tokenize(rows, tiny_tokenizer, max_length=512)
    for row, example in zip(rows, examples, strict=True):
        assert example.labels == example.input_ids
        assert tiny_tokenizer.decode(example.input_ids) == row["text"] + EOT
    with pytest.raises(UserError, match=r"text.jsonl:1: a plain 'text' example: set data.format: text"):
        read_rows(str(FORMATS / "text.jsonl"))


def test_ids_categories_and_langs_are_optional():
    rows, _ = read_rows(str(FORMATS / "messages.jsonl"))
    assert [(r["category"], r["lang"]) for r in rows] == [("greeting", "en"), ("unknown", "unknown")] + [
        ("unknown", "unknown")
    ]
    assert rows[0]["id"] == "greet" and rows[1]["id"].startswith("ex-")
    again, _ = read_rows(str(FORMATS / "messages.jsonl"))
    assert [r["id"] for r in again] == [r["id"] for r in rows]  # derived from content: stable
    assert len({r["id"] for r in rows}) == 3


def reference_tokenize(rows, tokenizer, max_length):
    """The recipe's tokenization before user formats existed (final assistant message only), kept verbatim
    as the reference the builder's corpus must still match token for token."""
    eos = tokenizer.eos_token_id
    out = []
    for row in rows:
        messages = row["messages"]
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [eos]
        ids = (prompt_ids + answer_ids)[:max_length]
        labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
        if not all(label == IGNORE for label in labels[1:]):
            out.append((ids, labels))
    return out


def reference_rows_hash(rows):
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r["messages"], ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("base", ["tiny-lfm2", "smollm2-135m"])
def test_builder_corpus_tokenizes_and_hashes_exactly_as_before(base, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.resolve(base))
    tokenizer.chat_template = tokenizer.chat_template or models.CHATML_TEMPLATE
    rows = build_corpus(60, "pure", seed=3).train + build_corpus(20, "polyglot", seed=3).train
    for max_length in (512, 40):  # 40 truncates some answers and drops others
        new, _ = tokenize(rows, tokenizer, max_length)
        assert [(e.input_ids, e.labels) for e in new] == reference_tokenize(rows, tokenizer, max_length)
    assert rows_hash(rows) == reference_rows_hash(rows)
    write_jsonl(tmp_path / "agl.jsonl", rows)  # the same corpus read back from a file: same rows, same hash
    from_file, _ = read_rows(str(tmp_path / "agl.jsonl"))
    assert rows_hash(from_file) == rows_hash(rows)
    assert [r["messages"] for r in from_file] == [r["messages"] for r in rows]


def test_multi_turn_pieces_tokenize_like_the_whole_conversation():
    """On a real BPE tokenizer (SmolLM2, whose template adds a default system prompt), the masked/target
    pieces joined are exactly the tokens of the rendered conversation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.resolve("smollm2-135m"))
    rows, _ = read_rows(str(FORMATS / "sharegpt.jsonl"))
    (one, two), _ = tokenize(rows, tokenizer, max_length=512)
    for row, example in zip(rows, (one, two), strict=True):
        whole = tokenizer.apply_chat_template(row["messages"], tokenize=False).removesuffix("\n")
        assert example.input_ids == tokenizer(whole, add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode(s) for s in spans(two)] == ["Hello!" + EOT, "Bye!" + EOT]


def test_sources_through_datasets(tmp_path):
    """Parquet, Arrow, a save_to_disk DatasetDict (with its splits) and a folder of files read like JSONL."""
    import datasets

    reference, _ = read_rows(str(FORMATS / "messages.jsonl"))
    raw = [json.loads(line) for line in (FORMATS / "messages.jsonl").read_text().splitlines()]
    for row in raw:  # Parquet stores one struct type per column: absent keys come back as null
        row.setdefault("id", None)
        row.setdefault("category", None)
        row.setdefault("lang", None)
    table = datasets.Dataset.from_list(raw)
    table.to_parquet(tmp_path / "chat.parquet")
    assert read_rows(str(tmp_path / "chat.parquet"))[0] == reference
    datasets.DatasetDict({"train": table, "test": table.select([0])}).save_to_disk(tmp_path / "saved")
    assert read_rows(str(tmp_path / "saved"))[0] == reference
    assert read_rows(str(tmp_path / "saved"), split="test")[0] == reference[:1]
    arrow = next((tmp_path / "saved" / "train").glob("*.arrow"))
    assert read_rows(str(arrow))[0] == reference
    with pytest.raises(UserError, match=r"data.split 'dev': .*saved has no such split \(splits: train, test\)"):
        read_rows(str(tmp_path / "saved"), split="dev")
    (tmp_path / "folder" / "data").mkdir(parents=True)
    (tmp_path / "folder" / "data" / "train.jsonl").write_text((FORMATS / "sharegpt.jsonl").read_text())
    assert len(read_rows(str(tmp_path / "folder"))[0]) == 2


def test_hub_dataset_from_the_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "datasets--someone--chat" / "snapshots" / "0123abc"
    (snapshot / "data").mkdir(parents=True)
    (snapshot / "data" / "train.jsonl").write_text((FORMATS / "prompt_completion.jsonl").read_text())
    (snapshot / "data" / "test.jsonl").write_text((FORMATS / "prompt_completion.jsonl").read_text())
    (tmp_path / "hub" / "datasets--someone--chat" / "refs").mkdir()
    (tmp_path / "hub" / "datasets--someone--chat" / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = build_config({"data": {"path": "someone/chat", "val_split": "test"}})
    train, val, source = load_rows(cfg.data)
    assert len(train) == len(val) == 2 and source == "someone/chat (prompt_completion; held out: split test)"
    with pytest.raises(UserError) as e:
        read_rows("someone/missing")
    assert "hf download --repo-type dataset someone/missing" in str(e.value) and "\n" not in str(e.value)


def test_held_out_examples(tmp_path):
    rows = [{"text": str(i)} for i in range(20)]
    train, val = hold_out(rows, 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15 and sorted(train + val, key=lambda r: int(r["text"])) == rows
    assert hold_out(rows, 0.25, seed=1) == (train, val) and hold_out(rows, 0.25, seed=2) != (train, val)
    assert hold_out(rows[:3], 0.1, seed=1) == (rows[:3], [])  # rounds to none: nothing held out
    corpus = tmp_path / "chat.jsonl"
    corpus.write_text((FORMATS / "messages.jsonl").read_text() * 4)
    cfg = build_config({"data": {"path": str(corpus), "val_fraction": 0.25}})
    train, val, source = load_rows(cfg.data)
    assert (len(train), len(val)) == (9, 3) and "held out: 3 drawn with seed 0" in source
    (tmp_path / "chat.val.jsonl").write_text((FORMATS / "sharegpt.jsonl").read_text())  # a sibling wins
    train, val, source = load_rows(cfg.data)
    assert (len(train), len(val)) == (12, 2) and source.endswith(f"held out: {tmp_path / 'chat.val.jsonl'})")


@pytest.mark.parametrize(
    "name, fmt, message",
    [
        ("bad-unknown.jsonl", "auto", r"bad-unknown.jsonl:1: no known format \(fields: answer, question\)"),
        (
            "bad-mixed.jsonl",
            "auto",
            r"bad-mixed.jsonl:2: a messages example in a prompt_completion file "
            r"\(.*bad-mixed.jsonl:1\); one format per file",
        ),
        ("bad-empty-turn.jsonl", "auto", r"bad-empty-turn.jsonl:2: messages\[1\]: empty assistant turn"),
        (
            "bad-ends-on-user.jsonl",
            "auto",
            r"bad-ends-on-user.jsonl:1: the conversation ends on a user turn "
            r"\(conversations\[2\]\)",
        ),
        ("messages.jsonl", "alpaca", r"messages.jsonl:1: the alpaca format needs field 'instruction'"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_line(name, fmt, message):
    with pytest.raises(UserError, match=message) as e:
        read_rows(str(FORMATS / name), fmt)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ({"prompt": "q"}, "has 'prompt' but no 'completion'"),
        ({"prompt": "q", "chosen": "a", "rejected": "b"}, r"preference data \(chosen/rejected\)"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "x"}]},
            r"messages\[1\].role must be one of system, user, assistant, got 'tool'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]},
            r"messages\[0\].content must be a string \(multimodal content parts are not read\)",
        ),
        ({"messages": [{"role": "assistant", "content": "a"}]}, r"messages\[0\]: an assistant turn before any user"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
            "no assistant turn carries loss",
        ),
        (
            {"conversations": [{"from": "observation", "value": "x"}]},
            r"conversations\[0\].from must be one of human, gpt, system, got 'observation'",
        ),
        ({"prompt": "q", "completion": "a", "messages": []}, "ambiguous: .* messages and prompt_completion"),
        ({"instruction": "q", "output": ""}, r"output: empty assistant turn"),
        ({"prompt": "q", "completion": "a", "id": ["x"]}, "field 'id' must be a non-empty string"),
    ],
)
def test_bad_examples(tmp_path, line, message):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError, match=f"one.jsonl:1: {message}"):
        read_rows(str(path))


def test_bad_sources(tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "ok", "completion": "ok"}\n{"prompt": "caf\xe9"}\n')
    (tmp_path / "latin1.csv").write_bytes(b"prompt,completion\nq,caf\xe9\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    cases = [
        ("latin1.jsonl", {}, r"latin1.jsonl:2: not UTF-8 text \(byte 0xe9 at column 16\)"),
        ("latin1.csv", {}, r"latin1.csv:2: not UTF-8 text \(byte 0xe9 at column 6\)"),
        ("notes.txt", {}, r"notes.txt: unknown kind of file '.txt'"),
        ("empty.jsonl", {}, r"empty.jsonl: no examples"),
        ("nope.parquet", {}, r"nope.parquet: no such file"),
    ]
    for name, columns, message in cases:
        with pytest.raises(UserError, match=message):
            read_rows(str(tmp_path / name), columns=columns)
    with pytest.raises(
        UserError,
        match=r"questions.csv: data.columns.prompt: no column 'q' "
        r"\(columns: question, answer, topic\)",
    ):
        read_rows(str(FORMATS / "questions.csv"), columns={"prompt": "q", "completion": "answer"})
    with pytest.raises(UserError, match=r"prompt_completion.jsonl:1: data.columns.prompt: no field 'question'"):
        read_rows(str(FORMATS / "prompt_completion.jsonl"), columns={"prompt": "question"})


def test_data_config_checks():
    cfg = build_config({"data": {"path": "x.jsonl", "columns": {"prompt": "question"}}})
    assert cfg.data.columns == {"prompt": "question"}
    for raw, message in [
        ({"columns": {"prompt": "q"}}, "data.columns needs data.path"),
        ({"format": "text"}, "data.format needs data.path"),
        ({"path": "x", "val_split": "train"}, "data.val_split 'train' is the training split"),
        ({"path": "x", "val_split": "test", "val_path": "y"}, "val_path or data.val_split"),
        ({"path": "x", "columns": {"promt": "q"}}, "data.columns.promt"),
        ({"path": "x", "format": "chatml"}, "data.format"),
    ]:
        with pytest.raises(UserError, match=message):
            build_config({"data": raw})


def _one_step(tmp_path, name, **data):
    cfg = build_config(
        {
            "base": "tiny-lfm2",
            "data": {"path": str(FORMATS / name), **data},
            "lora": {"r": 2, "alpha": 4},
            "batch": {"micro": 2, "accum": 2},
            "max_steps": 1,
            "max_length": 200,
            "out_dir": str(tmp_path / name),
        }
    )
    return run(cfg, quiet=True)


@pytest.mark.parametrize("name", sorted(TRAINED) + ["text.jsonl"])
def test_tiny_model_trains_one_step_on_each_format(name, tmp_path):
    fmt, columns, expected = TRAINED.get(name, ("text", {}, None))
    record = _one_step(tmp_path, name, format=fmt, columns=columns)
    assert record["status"]["state"] == "complete"
    step = record["train"]["steps"][0]
    rows, _ = read_rows(str(FORMATS / name), fmt, columns)
    assert step["sequences"] == len(rows) == record["meta"]["train_examples"]  # one step sees the whole file
    # the tiny tokenizer has one token per character: the loss counts exactly the expected characters
    if expected is None:
        assert step["target_tokens"] == sum(len(r["text"]) for r in rows)  # + end-of-text − the first token
    else:
        assert step["target_tokens"] == sum(len(a) + 1 for answers in expected for a in answers)
    assert record["meta"]["data_sha256"] == rows_hash(rows)
    assert record["meta"]["data_source"].startswith(str(FORMATS / name))


def test_user_corpus_keeps_held_out_loss_and_data_hash(tmp_path):
    import datasets

    rows = [json.loads(line) for line in (FORMATS / "sharegpt.jsonl").read_text().splitlines()]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows * 3), "test": datasets.Dataset.from_list(rows)}
    ).save_to_disk(tmp_path / "chat")
    cfg = build_config(
        {
            "base": "tiny-lfm2",
            "data": {"path": str(tmp_path / "chat"), "val_split": "test"},
            "lora": {"r": 2, "alpha": 4},
            "batch": {"micro": 2, "accum": 1},
            "max_steps": 2,
            "max_length": 200,
            "val_every": 1,
            "out_dir": str(tmp_path / "run"),
        }
    )
    record = run(cfg, quiet=True)
    assert [v["step"] for v in record["train"]["val"]] == [1, 2] and record["train"]["final_val_loss"] > 0
    assert (record["meta"]["train_examples"], record["meta"]["val_examples"]) == (6, 2)
    assert record["meta"]["val_sha256"] == rows_hash(read_rows(str(tmp_path / "chat"), split="test")[0])


def test_cli_validate_and_show_every_format():
    for name, (_fmt, columns, expected) in TRAINED.items():
        args = [f"--column={k}={v}" for k, v in columns.items()]
        result = runner.invoke(app, ["data", "validate", str(FORMATS / name), *args])
        turns = sum(len(a) for a in expected)
        assert result.exit_code == 0, result.output
        assert f"{len(expected)} examples, all valid" in result.output
        assert f"{turns} assistant turns carry loss" in result.output
    result = runner.invoke(app, ["data", "validate", str(FORMATS / "text.jsonl"), "--format", "text"])
    assert result.exit_code == 0 and "text; loss on every token" in result.output
    result = runner.invoke(app, ["data", "show", str(FORMATS / "messages.jsonl"), "--summary"])
    assert result.exit_code == 0, result.output
    assert "greet · greeting · en" in result.output and "· unknown · unknown" in result.output
    assert "unknown/unknown" in result.output and "greeting/en" in result.output  # the per-category table
    assert "(context: no loss)" in result.output
    result = runner.invoke(
        app,
        [
            "data",
            "show",
            str(FORMATS / "questions.csv"),
            "--column",
            "prompt=question",
            "--column",
            "completion=answer",
            "--column",
            "category=topic",
            "--category",
            "math",
        ],
    )
    assert result.exit_code == 0 and "What is 2+2?" in result.output and "Rome" not in result.output


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from ada_slm.app.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.mark.slow
def test_cli_reports_every_problem_and_train_writes_nothing_on_bad_data(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((FORMATS / "bad-empty-turn.jsonl").read_text() + (FORMATS / "bad-ends-on-user.jsonl").read_text())
    p = _cli("data", "validate", str(bad))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{bad}:2: messages[1]: empty assistant turn" in p.stderr
    assert f"{bad}:3: a sharegpt example in a messages file ({bad}:1)" in p.stderr
    assert f"{bad}: 2 problem(s) in 3 examples" in p.stderr
    p = _cli("train", "--quiet", "base=tiny-lfm2", f"data.path={bad}", f"out_dir={tmp_path / 'run'}")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert [line for line in p.stderr.splitlines() if line.strip()] == [
        f"error: {bad}:2: messages[1]: empty assistant turn"
    ]
    assert not (tmp_path / "run" / "record.json").exists()


def test_a_study_can_train_on_a_user_corpus(tmp_path):
    """`defaults.data` of a study names a user corpus with a column mapping; every arm's resolved run config
    reads it (each run then goes through train.run, tested above)."""
    from ada_slm.study.spec import expand, load_study

    study = tmp_path / "mine.yaml"
    study.write_text(
        f"name: mine\nbaseline: a\nseeds: [0]\n"
        f"defaults: {{base: tiny-lfm2, data: {{path: {FORMATS / 'questions.csv'}, "
        "columns: {prompt: question, completion: answer, category: topic}}}\n"
        "arms:\n  a: {}\n  b: {lora: {r: 4}}\n"
    )
    specs = {s.arm: s for s in expand(load_study(study), str(study), results_root=tmp_path)}
    for arm in ("a", "b"):
        data = specs[arm].train.data
        assert data.columns == {"prompt": "question", "completion": "answer", "category": "topic"}
        assert [r["category"] for r in load_rows(data)[0]] == ["math", "geography"]


def test_cli_error_keeps_its_brackets(tmp_path):
    """Rich markup must not eat '[test]' (a split) from an error line."""
    import datasets

    good = [json.loads(line) for line in (FORMATS / "bad-empty-turn.jsonl").read_text().splitlines()]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(good[:1]), "test": datasets.Dataset.from_list(good[1:])}
    ).save_to_disk(tmp_path / "saved")
    assert runner.invoke(app, ["data", "show", str(tmp_path / "saved")]).exit_code == 0
    result = runner.invoke(app, ["data", "show", str(tmp_path / "saved"), "--split", "test"])
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'saved'}[test] row 1: messages[1]: empty assistant turn" in result.output


@pytest.mark.parametrize(
    "line, message",
    [
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]},
            r"messages\[1\].content is null; it must be a string",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": None}]},
            r"conversations\[1\].value is null; it must be a string",
        ),
        ({"prompt": "q", "completion": None}, "has 'prompt' but 'completion' is null"),
    ],
)
def test_null_content_is_reported_as_null_not_missing(tmp_path, line, message):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError, match=f"one.jsonl:1: {message}"):
        read_rows(str(path))


def test_null_field_of_a_named_format_is_reported_as_null(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": None}) + "\n")
    with pytest.raises(UserError, match=r"one.jsonl:1: field 'completion' is null"):
        read_rows(str(path), "prompt_completion")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_lone_surrogate_is_one_line_naming_the_line(tmp_path, suffix):
    """JSON's "\\ud800" escape parses to a lone surrogate, which no tokenizer or file can take."""
    good = '{"prompt": "q", "completion": "a"}'
    bad = '{"prompt": "q", "completion": "a\\ud800"}'  # valid JSON text, not valid Unicode
    path = tmp_path / f"data{suffix}"
    path.write_text(f"{good}\n{bad}\n")
    with pytest.raises(
        UserError, match=r"data.jsonl?:2: invalid JSON \(a string holds a lone surrogate such as \\ud800"
    ) as e:
        read_rows(str(path))
    assert "\n" not in str(e.value)
    if suffix == ".json":  # one array of objects
        path.write_text(f"[{good},\n{bad}]")
        with pytest.raises(UserError, match=r"data.json: invalid JSON \(a string holds a lone surrogate"):
            read_rows(str(path))


def test_deep_nesting_and_huge_numbers_are_one_line_naming_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "q", "completion": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(UserError, match=r"data.jsonl:2: invalid JSON \(nested deeper than 100 levels\)"):
        read_rows(str(path))
    path.write_text('{"prompt": "q", "completion": "a", "id": ' + "9" * 5000 + "}\n")
    with pytest.raises(UserError, match=r"data.jsonl:1: invalid JSON \(Exceeds the limit"):
        read_rows(str(path))


def test_fifo_and_device_are_not_regular_files(tmp_path):
    import os

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    for source in (str(fifo), "/dev/zero"):
        with pytest.raises(UserError, match=f"{source}: not a regular file"):
            read_rows(source)
