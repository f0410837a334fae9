import copy
import json
import subprocess
from pathlib import Path

import pytest

from ada_slm.run import records
from ada_slm.run.config import TrainConfig
from ada_slm.study.spec import RunSpec, state_of
from tests.shared import CLI, DATA


def test_read_write_and_states(tmp_path):
    assert records.read_record(tmp_path) is None
    records.write_record(tmp_path, records.RunRecord.model_validate({"status": {"state": "complete"}, "eval": None}))
    rec = records.read_record(tmp_path)
    assert records.is_trained(rec) and not records.is_complete(rec)  # trained, not yet evaluated
    rec.eval = records.EvalSection(metrics={})
    assert not records.is_complete(rec)  # an empty summary is not an evaluation
    rec.eval = records.EvalSection(metrics={"agl_awareness": {"mean": 0.1}})
    assert records.is_complete(rec)
    steps = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}]
    records.write_record(
        tmp_path, records.RunRecord.model_validate({"status": {"state": "running"}, "train": {"steps": steps}})
    )
    failed = records.mark_failed(tmp_path, "boom")
    assert failed.status == records.Status(state="failed", reason="boom")
    assert json.loads((tmp_path / "record.json").read_text()) == {
        "status": {"state": "failed", "reason": "boom"},
        "train": {"steps": steps},
    }
    paths = records.RunPaths(tmp_path / "results", tmp_path / "exports", "s", "v9B", 2)
    assert paths.run_dir == tmp_path / "results" / "s" / "v9B" / "seed2"
    assert paths.export_dir == tmp_path / "exports" / "s" / "v9B" / "seed2" and paths.key == "v9B/seed2"


BASELINE = Path("/work/baseline/res/tiny")  # records written by the previous version of the tool, if kept here
OLD_TRAINED = {  # record.json of a trained run as the version before RunRecord wrote it (steps and eval shortened)
    "config": {
        "base": "tiny-lfm2",
        "data": {
            "path": None,
            "val_path": None,
            "format": "auto",
            "columns": {},
            "split": "train",
            "val_split": None,
            "size": 60,
            "mix": "pure",
            "seed": 0,
            "val_fraction": 0.1,
            "val_size": None,
        },
        "lora": {
            "r": 8,
            "alpha": 16.0,
            "dropout": 0.0,
            "targets": "default",
            "use_rslora": False,
            "use_dora": False,
            "init_adapter": None,
        },
        "batch": {"micro": 2, "accum": 2},
        "epochs": 3.0,
        "max_steps": 3,
        "lr": 0.001,
        "schedule": "linear",
        "warmup_ratio": 0.1,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_length": 200,
        "seed": 1,
        "precision": "auto",
        "val_every": 3,
        "checkpoint_every": 2,
        "log_every": 10,
        "out_dir": "res/tiny/r8/seed1",
        "export_dir": "exp/tiny/r8/seed1",
        "effective_batch": 4,
        "batch_arithmetic": "micro 2 × accum 2 = 4 sequences/step",
        "total_steps": 3,
        "steps_per_epoch": 14,
        "resolved_lora": {"r": 8, "alpha": 16.0, "targets": ["in_proj", "w1"], "use_rslora": False, "use_dora": False},
    },
    "status": {"state": "complete", "reason": None},
    "train": {
        "loss_normalisation": "mean per target token over the optimizer step",
        "steps": [
            {
                "step": 1,
                "loss": 5.02,
                "grad_norm": 0.48,
                "lr": 0.001,
                "sequences": 4,
                "target_tokens": 150,
                "tokens": 547,
                "tokens_per_s": 4421.9,
                "target_tokens_per_s": 1212.6,
            }
        ],
        "val": [{"step": 3, "loss": 4.97}],
        "trainable_params": 31744,
        "last_checkpoint_step": 2,
        "wall_s": 0.4,
        "final_train_loss": 4.98,
        "mean_train_loss": 5.0,
        "final_val_loss": 4.97,
        "tokens_per_s": 5611.6,
        "target_tokens_per_s": 1888.1,
        "peak_rss_mb": 387.6,
        "peak_gpu_mb": None,
        "adapter_dir": "exp/tiny/r8/seed1",
        "adapter_bytes": 133008,
        "final_adapter_sha256": "410c",
    },
    "eval": {
        "suite": "multilang",
        "n_items": 12,
        "limit": 12,
        "base": "tiny-lfm2",
        "adapter": "exp/tiny/r8/seed1",
        "arm": "r8",
        "generation": {"mode": "greedy", "max_new_tokens": 6, "batch_size": 8},
        "generation_s": 0.19,
        "items_per_s": 62.7,
        "cached_from": None,
        "perplexity": 146.7,
        "metrics": {"agl_awareness": {"mean": 0.0, "n": 12, "ci_low": 0.0, "ci_high": 0.0}},
    },
    "meta": {"base": "tiny-lfm2", "seed": 1, "arm": "r8"},
}
OLD_BASE = {
    "config": {"base": "tiny-lfm2", "arm": "base"},
    "status": {"state": "complete", "reason": None},
    "train": None,
    "eval": {
        "suite": "multilang",
        "n_items": 12,
        "adapter": None,
        "generation_s": 0.3,
        "cached_from": {"run": "base/seed0", "key": "93a7"},
        "metrics": {"agl_awareness": {"mean": 0.0, "n": 12}},
    },
    "meta": {"seed": 1, "arm": "base"},
}


def _key_tree(value):
    """A JSON value's keys in their order and its leaves' types: what a rewrite must keep, besides the values."""
    if isinstance(value, dict):
        return [(k, _key_tree(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_tree(v) for v in value]
    return type(value).__name__


@pytest.mark.parametrize("old", [OLD_TRAINED, OLD_BASE], ids=["trained", "base arm"])
def test_a_record_of_the_previous_version_is_read_and_written_back_unchanged(tmp_path, old):
    (tmp_path / "record.json").write_text(json.dumps(old, ensure_ascii=False, indent=2) + "\n")
    rec = records.read_record(tmp_path)
    assert isinstance(rec, records.RunRecord)
    if old is OLD_TRAINED:
        assert isinstance(records.config_of(rec), TrainConfig)
        assert rec.config.lora.r == 8 and rec.config.seed == 1 and rec.config.batch.effective == 4
        assert rec.facts.total_steps == 3 and rec.facts.resolved_lora.targets == ["in_proj", "w1"]
        assert rec.train.steps[0].tokens == 547 and rec.eval.generation.max_new_tokens == 6
        assert records.adapter_dir(rec) == "exp/tiny/r8/seed1" and records.base_model(rec) == "tiny-lfm2"
    else:
        assert records.config_of(rec) is None and rec.train is None  # the base arm trained nothing
        assert records.base_model(rec) == "tiny-lfm2" and records.adapter_dir(rec) is None
    assert records.is_complete(rec)
    records.write_record(tmp_path, rec)  # what mark_failed, `eval` and rescoring do: the same keys and values
    assert (tmp_path / "record.json").read_text() == json.dumps(old, ensure_ascii=False, indent=2) + "\n"


@pytest.mark.skipif(not BASELINE.is_dir(), reason="no baseline study kept on this machine")
def test_the_baseline_studys_records_read_and_round_trip_byte_for_byte():
    paths = sorted(BASELINE.glob("*/seed*/record.json"))
    assert paths
    for path in paths:
        rec = records.read_record(path.parent)
        assert rec.to_json() == path.read_text(), path
        assert (records.config_of(rec) is None) == (path.parent.parent.name == "base")


@pytest.mark.parametrize(
    "field, value, where",
    [
        (("config", "lora", "r"), "eight", "config.lora.r: Input should be a valid integer"),
        (("config", "total_steps"), "3", "config.total_steps: Input should be a valid integer"),
        (("train", "steps", 0, "tokens"), [547], "train.steps.0.tokens: list [547], not a number"),
        (("train", "steps", 0, "loss"), "5.02", "train.steps.0.loss: str '5.02', not a number"),
        (("train", "adapter_dir"), 7, "train.adapter_dir: Input should be a valid string"),
        (("eval", "n_items"), 12.5, "eval.n_items: Input should be a valid integer"),
        (("status", "state"), ["complete"], "status.state: Input should be a valid string"),
    ],
)
def test_a_wrong_typed_field_is_one_line_naming_the_file_and_field(tmp_path, field, value, where):
    broken = copy.deepcopy(OLD_TRAINED)
    node = broken
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    (tmp_path / "record.json").write_text(json.dumps(broken))
    with pytest.raises(records.CorruptRecord) as e:
        records.read_record(tmp_path)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'record.json'}: not a run record ({where}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"status": {"state": "comp', "corrupt run record (invalid JSON (Unterminated string"),
        (
            b'{"status": {"state": "failed"}, "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "corrupt run record (invalid JSON (nested deeper than",
        ),
        (
            b'{"status": {"state": "failed"}, "meta": {"seed": ' + b"7" * 5000 + b"}}",
            "corrupt run record (invalid JSON (Exceeds the limit (4300 digits)",
        ),
        (
            b'{"status": {"state": "complete"}, "train": {"steps": [{"step": 1, "loss": "low"}]}}',
            "not a run record (train.steps.0.loss: ",
        ),
        (b'{"status": {"state": "complete"}, "eval": [1]}', "not a run record (eval: "),
        (b"\xff\xfe\x00garbage", "corrupt run record (not UTF-8 text (byte 0xff at offset 0))"),
        (b"[1, 2]", "not a run record"),
        (b'{"config": {}}', "not a run record"),
    ],
)
def test_a_corrupt_record_is_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / "record.json").write_bytes(content)
    with pytest.raises(records.CorruptRecord) as e:
        records.read_record(tmp_path)
    assert str(tmp_path / "record.json") in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)
    assert records.read_record_or_none(tmp_path) is None


def test_a_record_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "record.json")  # opened for reading the usual way, this blocks until a writer comes
    with pytest.raises(records.CorruptRecord, match=r"record.json: corrupt run record \(not a regular file \(a FIFO\)"):
        records.read_record(tmp_path)


@pytest.mark.slow
def test_study_status_and_eval_report_a_corrupt_record_without_a_traceback(tmp_path):
    paths = records.RunPaths(tmp_path / "results", tmp_path / "exp", "s", "a", 0)
    run_dir = paths.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text('{"status": {"state": "complete"}, "train": {"adapter_di')
    p = subprocess.run(CLI + ["eval", str(run_dir)], capture_output=True, text=True)
    assert p.returncode == 1 and "corrupt run record" in p.stderr and str(run_dir) in p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    spec = RunSpec(paths, None, "tiny-lfm2", {})
    assert state_of(spec) == "corrupt"


def test_study_status_shows_a_record_that_parses_badly_as_corrupt(tmp_path):
    run_dir = tmp_path / "results" / "tiny2" / "r8" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text('{"status": {"state": "complete"}, "meta": {"seed": ' + "7" * 5000 + "}}")
    deep = tmp_path / "results" / "tiny2" / "r8" / "seed1"
    deep.mkdir(parents=True)
    (deep / "record.json").write_text('{"status": {"state": "complete"}, "meta": ' + "[" * 5000 + "]" * 5000 + "}")
    study = DATA / "tiny-2arm.yaml"
    p = subprocess.run(
        CLI + ["study", "status", str(study), "--results", str(tmp_path / "results")], capture_output=True, text=True
    )  # on main: a ValueError / RecursionError traceback
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.count("corrupt") >= 2 and "4300 digits" in p.stdout and "nested deeper" in p.stdout


def test_the_config_of_a_record_has_the_adapter_peft_built():
    """With init_adapter the continued adapter's shape wins (facts.resolved_lora): a run configured r 16 on an r 4
    adapter is r 4 in every label and factor the analysis derives from its config."""
    from ada_slm.run.records import RunRecord, config_of

    rec = RunRecord.model_validate(
        {
            "config": {
                "lora": {"r": 16, "alpha": 32, "init_adapter": "exports/x"},
                "resolved_lora": {"r": 4, "alpha": 8, "use_dora": False},
            },
            "status": {"state": "complete"},
        }
    )
    cfg = config_of(rec)
    assert (cfg.lora.r, cfg.lora.alpha) == (4, 8) and cfg.label().startswith("r4/α8")
    assert rec.config.lora.r == 16  # the record itself keeps what was configured
    plain = RunRecord.model_validate(
        {
            "config": {"lora": {"r": 16, "alpha": 32}, "resolved_lora": {"r": 16, "alpha": 32}},
            "status": {"state": "complete"},
        }
    )
    assert config_of(plain) is plain.config
