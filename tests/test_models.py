import pytest

from ada_slm import models
from ada_slm.errors import UserError


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
