import json
import os
import subprocess

import pytest
import torch

from ada_slm.app import use as inference
from ada_slm.errors import UserError
from ada_slm.run import models
from ada_slm.run.evaluate import generate_ids
from ada_slm.run.suites import GenerationSettings
from tests.shared import CLI


@pytest.fixture(scope="module")
def noisy_model_and_adapter(tmp_path_factory):
    """tiny-lfm2 with large random weights saved as a local base, plus a random non-zero LoRA adapter on it, so
    greedy outputs are varied and the adapter visibly changes them."""
    from peft import LoraConfig, get_peft_model

    tmp = tmp_path_factory.mktemp("inference")
    model, tok, _ = models.load("tiny-lfm2")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(tmp / "base")
    tok.save_pretrained(tmp / "base")
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=models.LFM2_TARGETS, init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp / "adapter")
    return tmp


@pytest.mark.slow
def test_chat_through_stdin_with_reset_and_exit(noisy_model_and_adapter):
    tmp = noisy_model_and_adapter
    script = "hello\nhow are you\n/reset\nmi pilin\n/exit\nnever read\n"
    p = subprocess.run(
        CLI + ["chat", "--base", str(tmp / "base"), "--adapter", str(tmp / "adapter"), "--max-new-tokens", "6"],
        input=script,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("model> ") == 3  # three user turns answered; the line after /exit is never read
    assert "(history cleared)" in p.stdout


def test_chat_history_and_reset():
    model, tok = inference.load("tiny-lfm2", None)
    lines = iter(["one", "two", "/reset", "three", None])
    seen = []
    original = tok.apply_chat_template

    def spy(messages, **kw):
        seen.append([m["content"] for m in messages])
        return original(messages, **kw)

    tok.apply_chat_template = spy
    inference.chat(model, tok, lambda: next(lines), lambda t: None, 3, 0.0, 1.0, 0)
    assert seen[0] == ["one"]
    assert seen[1][0] == "one" and seen[1][-1] == "two" and len(seen[1]) == 3  # user, assistant, user
    assert seen[2] == ["three"]  # history cleared


@pytest.mark.slow
def test_generate_file_is_resumable(noisy_model_and_adapter, tmp_path):
    tmp = noisy_model_and_adapter
    prompts = tmp_path / "p.txt"
    prompts.write_text("first prompt\n\nsecond prompt\n")
    out = tmp_path / "out.jsonl"
    args = CLI + [
        "generate",
        "--base",
        str(tmp / "base"),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--max-new-tokens",
        "5",
    ]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "3"] and rows[0]["prompt"] == "first prompt"
    assert rows[0]["settings"]["max_new_tokens"] == 5 and "agl_awareness" in rows[0]["metrics"]
    p = subprocess.run(args, capture_output=True, text=True)
    assert "0 generated, 2 already" in p.stdout
    prompts.write_text("first prompt\n\nsecond prompt\nthird\n")
    subprocess.run(args, capture_output=True, text=True, check=True)
    assert len(out.read_text().splitlines()) == 3


def test_read_prompts_formats_and_errors(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"id": "a", "prompt": "hi"}\n{"messages": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "●x"}]}\n'
    )
    items = inference.read_prompts(f)
    assert items[0] == {"id": "a", "prompt": "hi"}
    assert items[1]["messages"] == [{"role": "user", "content": "q"}]  # the answer is what gets generated
    f.write_text('{"text": "hi"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:1: expected a non-empty"):
        inference.read_prompts(f)
    with pytest.raises(UserError, match="no such file"):
        inference.read_prompts(tmp_path / "missing.txt")


@pytest.mark.slow
def test_merged_export_loads_plainly_and_matches_base_plus_adapter(noisy_model_and_adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = noisy_model_and_adapter
    out = tmp_path / "merged"
    p = subprocess.run(
        CLI + ["export", "--adapter", str(tmp / "adapter"), "--base", str(tmp / "base"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    merged = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template
    reference, ref_tok = inference.load(str(tmp / "base"), str(tmp / "adapter"))
    base_only, _ = inference.load(str(tmp / "base"), None)
    prompts = ["hello", "Translate into AGL: mi sanji", "Is the river rising?"]
    settings = GenerationSettings(batch_size=3, max_new_tokens=8)
    ids_merged = generate_ids(merged.eval(), tok, prompts, settings)
    assert ids_merged == generate_ids(reference, ref_tok, prompts, settings)
    assert ids_merged != generate_ids(base_only, ref_tok, prompts, settings)  # the adapter matters
    # another base (the adapter's own): not this export, refused; a user's folder: refused; the same pair: replaced
    p = subprocess.run(
        CLI + ["export", "--adapter", str(tmp / "adapter"), "--out", str(out)], capture_output=True, text=True
    )
    assert p.returncode == 1 and "--out" in p.stderr and "not the merged model ada-slm wrote for" in p.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for target in (mine, tmp_path / "notes-file"):
        (tmp_path / "notes-file").write_text("x")
        p = subprocess.run(
            CLI + ["export", "--adapter", str(tmp / "adapter"), "--base", str(tmp / "base"), "--out", str(target)],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert (mine / "notes.txt").read_text() == "precious"
    p = subprocess.run(
        CLI + ["export", "--adapter", str(tmp / "adapter"), "--base", str(tmp / "base"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert {f.stat().st_mode & 0o777 for f in out.iterdir()} == {0o666 & ~umask}  # safetensors too (not 0600)


@pytest.mark.slow
def test_generate_out_that_is_a_folder_is_one_line(noisy_model_and_adapter, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in (
        (tmp_path, "not a regular file"),
        (a_file / "out.jsonl", f"{a_file}: is a file, not a folder"),
    ):
        p = subprocess.run(
            CLI
            + [
                "generate",
                "--prompts",
                str(prompts),
                "--out",
                str(out),
                "--base",
                str(noisy_model_and_adapter / "base"),
                "--max-new-tokens",
                "2",
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 1 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.slow
def test_bad_paths_and_arms_are_one_line_errors(tmp_path):
    for args, message in [
        (["chat", "--adapter", str(tmp_path / "nope")], "no such directory"),
        (["chat", "--run", str(tmp_path)], "no record.json"),
        (["chat", "--study", "phase14d", "--arm", "v9Z", "--results", str(tmp_path)], "--arm 'v9Z': not an arm"),
        (["chat", "--study", "phase14d", "--arm", "v9B", "--results", str(tmp_path)], "no finished run"),
        (["chat", "--arm", "v9B"], "--study and --arm go together"),
        (["export", "--adapter", str(tmp_path), "--out", str(tmp_path / "m")], "not a PEFT adapter directory"),
    ]:
        p = subprocess.run(CLI + args, capture_output=True, text=True, input="")
        assert p.returncode == 1, (args, p.stderr)
        assert message in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
