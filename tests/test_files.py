import os
from pathlib import Path

import pytest

from ada_slm.analysis.audit import load_reported
from ada_slm.errors import UserError
from ada_slm.files import UnreadableFile, iter_jsonl, load_yaml, parse_json, read_json, read_regular
from ada_slm.run.config import load_config
from ada_slm.run.suites import load_suite
from ada_slm.study.spec import load_study


# ------------------------------------------------------------------------------------------ JSON
@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 5000 + "]" * 5000, "nested deeper than 100 levels"),  # RecursionError on main
        ('{"a": ' * 150 + "1" + "}" * 150, "nested deeper than 100 levels"),
        ('{"seed": ' + "7" * 5000 + "}", "Exceeds the limit (4300 digits)"),  # ValueError on main
        ('{"reason": "\\ud800"}', "lone surrogate"),  # unwritable as UTF-8 by every writer after it
        ('{"a": 1', "invalid JSON (Expecting ',' delimiter at column 8)"),
    ],
)
def test_json_that_parses_badly_is_one_line_naming_the_place(text, message):
    with pytest.raises(UnreadableFile) as e:
        parse_json(text, "results/s/a/seed0/record.json")
    assert str(e.value).startswith("results/s/a/seed0/record.json: invalid JSON (") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_what_the_tool_writes_still_reads():
    assert parse_json('{"loss": NaN, "emoji": "\\ud83d\\ude00", "glyph": "●"}', "x")["emoji"] == "😀"
    assert parse_json("[" * 100 + "]" * 100, "x") is not None


def test_jsonl_names_the_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"id": 1}\n' + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(UserError, match=r"eval.jsonl:2: invalid JSON \(nested deeper than 100 levels\)"):
        list(iter_jsonl(path))


# ------------------------------------------------------------------------------------------ which files are read
def test_only_regular_files_are_read_and_never_block(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")  # open() for reading would wait for a writer forever
    for path in (tmp_path / "fifo.json", Path("/dev/zero"), tmp_path):
        with pytest.raises(UnreadableFile, match="not a regular file"):
            read_json(path)
    with pytest.raises(UserError, match=r"fifo.json: not a regular file \(a FIFO\)"):
        list(iter_jsonl(tmp_path / "fifo.json"))
    assert read_json(tmp_path / "missing.json") is None


def test_a_symlink_out_of_the_folder_is_not_followed_and_size_is_capped(tmp_path):
    inside, outside = tmp_path / "results", tmp_path / "home"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text('{"token": "x"}')
    (inside / "record.json").symlink_to(outside / "secret.json")
    (inside / "ok.json").write_text('{"a": 1}')
    (inside / "link-inside.json").symlink_to(inside / "ok.json")
    with pytest.raises(UnreadableFile, match="outside .*results; not followed"):
        read_json(inside / "record.json", within=[inside])
    assert read_json(inside / "link-inside.json", within=[inside]) == {"a": 1}
    assert read_json(inside / "record.json") == {"token": "x"}  # no `within`: the user's own path
    (inside / "big.json").write_bytes(b" " * 2048)
    with pytest.raises(UnreadableFile, match=r"too large"):
        read_regular(inside / "big.json", limit=1024)


# ------------------------------------------------------------------------------------------ YAML
def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\narms:\n  a: {}\n  b:\n    lr: 1\n    lr: 2\n")
    with pytest.raises(UserError, match=r"s.yaml:6: key 'lr' given twice \(first at line 5\)"):
        load_yaml(path)
    path.write_text("defaults: &d {lr: 1, r: 8}\narm: {<<: *d, lr: 2}\n")  # a merge key may be overridden
    assert load_yaml(path)["arm"] == {"lr": 2, "r": 8}


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [\n", ":2: invalid YAML"),
        ("a: b: c\n", ":1: invalid YAML (mapping values are not allowed here)"),
        ("a: [" + "[" * 3000 + "]" * 3000 + "]\n", "nested too deeply"),  # RecursionError on main
        ("a: " + "7" * 5000 + "\n", "4300 digits"),  # ValueError on main
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)),
            "expand to more than",
        ),
        ("a: &a [*a]\n", "refer to themselves"),
        ("a: !!python/object:os.system x\n", ":1: invalid YAML (could not determine a constructor"),
    ],
)
def test_malformed_yaml_is_one_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_yaml(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)


def test_not_utf8_and_fifo_yaml(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"name: s\ndescription: caf\xe9\n")
    with pytest.raises(UserError, match=r"latin1.yaml:2: not UTF-8 text"):
        load_yaml(tmp_path / "latin1.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(UserError, match=r"fifo.yaml: not a regular file \(a FIFO\)"):
        load_yaml(tmp_path / "fifo.yaml")


@pytest.mark.parametrize(
    "loader, text",
    [
        (load_study, "name: s\nbaseline: a\narms:\n  a: {}\n  a: {lora: {r: 16}}\n"),
        (load_config, "lr: 1.0e-3\nlora: {r: 8}\nlr: 2.0e-3\n"),
        (
            lambda p: load_suite(str(p)),
            "name: t\nitems:\n  - {id: a, lang: en, category: certainty, prompt: p, lang: de}\n",
        ),
        (load_reported, "name: t\nsource: s\nname: u\n"),
    ],
)
def test_every_yaml_the_tool_reads_refuses_duplicate_keys(tmp_path, loader, text):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"f.yaml:\d+: key '\w+' given twice \(first at line \d+\)"):
        loader(path)
