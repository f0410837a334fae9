import pytest

from ada_slm.errors import UserError
from ada_slm.run import models


def test_tiny_lfm2_is_lfm2_with_chat_template():
    model, tok, path = models.load("tiny-lfm2")
    assert model.config.model_type == "lfm2"
    assert set(model.config.layer_types) == {"conv", "full_attention"}
    assert models.default_targets(model) == models.LFM2_TARGETS
    text = "●rain ∧ t₀: ◕x — gloss"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"
    # seeded: the same weights every time it is built
    assert models.weights_hash(path) == models.weights_hash(models.resolve("tiny-lfm2"))


def test_embedded_smollm2_converts_once_and_loads():
    path = models.resolve("smollm2-135m")
    assert (path / "config.json").is_file() and (path / ".complete").is_file()
    assert models.resolve("smollm2-135m") == path
    model, tok, _ = models.load("smollm2-135m")
    assert model.config.model_type == "llama"
    assert "quantization_config" not in model.config.to_dict()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert tok.eos_token == "<|im_end|>"


def test_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*hf download"):
        models.resolve("nobody-has/this-model-xyz")
    with pytest.raises(UserError, match="no such GGUF file"):
        models.resolve(str(tmp_path / "x.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        models.resolve(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not a known name"):
        models.resolve("smollm3")


def test_cache_folder_that_ada_slm_did_not_write_is_never_deleted(tmp_path, monkeypatch):
    """An incomplete folder at a cache path used to be deleted and rebuilt, whoever wrote it (ADA_SLM_CACHE
    may point anywhere): now only this tool's own marked folder for the same model is replaced."""
    import json

    from ada_slm.run.exports import MARKER

    monkeypatch.setenv("ADA_SLM_CACHE", str(tmp_path))
    target = tmp_path / "models" / models.TINY_LFM2
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="model cache folder .*not the model ada-slm wrote for tiny-lfm2"):
        models.resolve(models.TINY_LFM2)
    assert (target / "notes.txt").read_text() == "precious"
    # this tool's own folder for the same model (left incomplete), and a temp folder of a killed build: replaced
    (target / "notes.txt").unlink()
    (target / MARKER).write_text(json.dumps({"tool": "ada-slm", "kind": "model", "owner": models.TINY_LFM2}))
    stale = tmp_path / "models" / f".{models.TINY_LFM2}.killed.tmp"
    stale.mkdir()
    (stale / MARKER).write_text((target / MARKER).read_text())
    path = models.resolve(models.TINY_LFM2)
    assert path == target and (target / ".complete").is_file() and (target / "config.json").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == [models.TINY_LFM2, f"{models.TINY_LFM2}.lock"]
    assert models.load(models.TINY_LFM2)[0].config.model_type == "lfm2"
