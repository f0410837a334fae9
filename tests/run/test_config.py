import pytest

from ada_slm.errors import UserError
from ada_slm.run.config import load_config


def test_defaults_and_batch_arithmetic():
    cfg = load_config(None, ["batch.micro=1", "batch.accum=16", "lora.r=32", "lora.alpha=64"])
    assert cfg.batch.effective == 16
    assert cfg.batch_arithmetic() == "micro 1 × accum 16 = 16 sequences/step"
    assert cfg.lora.r == 32 and cfg.lora.alpha == 64


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("base: tiny-lfm2\nlora:\n  r: 8\nbatch:\n  micro: 2\n")
    cfg = load_config(f, ["lora.targets=[q_proj, v_proj]", "lr=1e-3"])
    assert cfg.base == "tiny-lfm2" and cfg.lora.r == 8 and cfg.batch.micro == 2
    assert cfg.lora.targets == ["q_proj", "v_proj"] and cfg.lr == 1e-3


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("lora:\n  rank: 8\n", [], "unknown key 'lora.rank'"),
        ("batchsize: 4\n", [], "unknown key 'batchsize'"),
        ("batch:\n  micro: 0\n", [], "batch.micro: Input should be greater than 0"),
        ("lr: -1\n", [], "lr: Input should be greater than 0"),
        ("lora: [1\n", [], "invalid YAML"),
        ("- a\n- b\n", [], "expected a mapping"),
        ("", ["lora.r"], "expected key.sub=value"),
        ("", ["lora.r.x=3"], "lora.r"),
        ("precision: fp8\n", [], "precision"),
    ],
)
def test_bad_configs_name_file_and_field(tmp_path, text, overrides, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(f, overrides)
    assert message in str(info.value)
    if not overrides:
        assert str(f) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=.inf", "epochs: Input should be a finite number"),
        ("epochs=.nan", "epochs: Input should be a finite number"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("seed=4294967296", "seed: Input should be less than 4294967296"),
        ("lr=.inf", "lr: Input should be a finite number"),
        ("lr=.nan", "lr: Input should be a finite number"),
        ("weight_decay=.inf", "weight_decay: Input should be a finite number"),
        ("max_grad_norm=.inf", "max_grad_norm: Input should be a finite number"),
        ("warmup_ratio=.nan", "warmup_ratio: Input should be a finite number"),
        ("lora.alpha=.inf", "lora.alpha: Input should be a finite number"),
        ("lora.dropout=.nan", "lora.dropout: Input should be a finite number"),
        ("lora.r=-4", "lora.r: Input should be greater than 0"),
        ("data.val_fraction=.nan", "data.val_fraction: Input should be a finite number"),
        ("data.size=-1", "data.size: Input should be greater than 0"),
        ("data.mix={certainty: .inf}", "data.mix.dict[str,float].certainty: Input should be a finite number"),
        ("max_steps=-3", "max_steps: Input should be greater than 0"),
        ("max_length=-1", "max_length: Input should be greater than 8"),
    ],
)
def test_numbers_out_of_bounds_are_one_line_naming_the_field(override, message):
    with pytest.raises(UserError) as info:
        load_config(None, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_largest_seed_is_accepted():
    assert load_config(None, ["seed=4294967295"]).seed == 2**32 - 1


def test_mix_file_weights_must_be_finite(tmp_path):
    from ada_slm.agl.builder import resolve_mix

    f = tmp_path / "mix.yaml"
    f.write_text("certainty: .inf\n")
    with pytest.raises(UserError, match="must be a number ≥ 0 and finite"):
        resolve_mix(str(f))
