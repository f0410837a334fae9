"""A study's defaults, arms, scale presets and rule configs are typed config patches (run.config.ConfigPatch):
every TrainConfig field optional, unknown keys refused, bounds kept — and every config the study can train is
resolved and checked when the file is read, at every scale, skipped arms too."""

import subprocess
import sys
from typing import get_args

import pytest
from pydantic import BaseModel

from ada_slm.errors import UserError
from ada_slm.run.config import TrainConfig, TrainConfigPatch, patch_layer
from ada_slm.study.spec import load_study

STUDY = """name: s
baseline: a0
defaults: {base: tiny-lfm2, data: {size: 60}}
arms:
  a0: {}
  a1: {lora.r: 32}
"""


def _fields(model: type[BaseModel], at: str = "") -> dict[str, type[BaseModel] | None]:
    out: dict[str, type[BaseModel] | None] = {}
    for name, info in model.model_fields.items():
        kinds = [info.annotation, *get_args(info.annotation)]  # a patch's section is Optional[…Patch]
        nested = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        out[at + name] = nested
        if nested is not None:
            out.update(_fields(nested, f"{at}{name}."))
    return out


def test_the_patch_has_every_config_field_and_nothing_is_required():
    config = _fields(TrainConfig)
    assert set(_fields(TrainConfigPatch)) == set(config)
    assert TrainConfigPatch().model_dump(exclude_unset=True) == {}
    assert len(config) > 40  # the sections were walked, not only the top level


def test_a_patch_keeps_types_and_bounds_and_names_every_bad_key():
    assert patch_layer(TrainConfig, {"lora.r": "32", "batch": {"micro": 1}}) == {
        "lora": {"r": 32},
        "batch": {"micro": 1},
    }
    with pytest.raises(ValueError, match=r"lora.alpha: Input should be greater than 0; unknown key 'lora.rr'"):
        patch_layer(TrainConfig, {"lora": {"rr": 32, "alpha": 0}})
    with pytest.raises(ValueError, match=r"^batch: Input should be a valid dictionary$"):
        patch_layer(TrainConfig, {"batch": 3})  # the internal class name (BatchConfigPatch) is not shown
    with pytest.raises(ValueError, match="expected a mapping"):
        patch_layer(TrainConfig, [1, 2])


@pytest.mark.parametrize(
    "extra, where",
    [
        ("  a2: {lora: {rr: 32}}\n", r"arms.a2: unknown key 'lora.rr'"),
        ("scale:\n  cpu: {overrides: {max_step: 5}}\n", r"scale.cpu.overrides: unknown key 'max_step'"),
        (
            "scale:\n  cpu: {arms: {a1: {lr: -1}}, skip: [a1]}\n",
            r"scale.cpu.arms.a1: lr: Input should be greater than 0",
        ),
        ("scale:\n  cpu: {eval: {batchsize: 4}}\n", r"scale.cpu.eval: unknown key 'batchsize'"),
        ("defaults: {epoch: 2}\n", r"defaults: unknown key 'epoch'"),
    ],
)
def test_a_typo_anywhere_in_a_study_is_one_line_when_it_is_read(tmp_path, extra, where):
    path = tmp_path / "s.yaml"
    text = (
        STUDY + extra
        if not extra.startswith("defaults")
        else STUDY.replace("defaults: {base: tiny-lfm2, data: {size: 60}}\n", extra)
    )
    path.write_text(text)
    with pytest.raises(UserError, match=where):
        load_study(path)


def test_a_config_that_only_one_scale_breaks_is_named_with_its_scale(tmp_path):
    """Each patch is valid alone; merged at scale cpu, a1's held-out set is the whole corpus: refused at read, for
    the arm and the scale, although `cpu` is not the scale asked for."""
    path = tmp_path / "s.yaml"
    path.write_text(STUDY + "scale:\n  cpu: {arms: {a1: {data.val_size: 60}}}\n")
    with pytest.raises(UserError, match=r"\(arm a1, scale cpu\): data: data.val_size \(60\) must be smaller"):
        load_study(path)


def test_study_plan_refuses_a_typo_in_one_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY + "  a2: {lora: {rr: 32}}\n")
    out = subprocess.run(
        [sys.executable, "-m", "ada_slm.app.cli", "study", "plan", str(path)], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "arms.a2: unknown key 'lora.rr'" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
