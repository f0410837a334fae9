"""What differs between arms (`analysis.design`): raw differences of typed configs, grouped into study factors."""

import pytest

from ada_slm.analysis import design
from ada_slm.run.config import TrainConfig


def cfg(**fields) -> TrainConfig:
    return TrainConfig.model_validate(fields)


def test_factor_vocabulary():
    # the seed's v9C vs v9B as designed: rank doubles, split 4×4 → 1×16 at the same effective batch
    fd = design.factors_between(
        {"lora.r": (32, 16), "lora.alpha": (64, 32), "batch.micro": (1, 4), "batch.accum": (16, 4)}
    )
    assert set(fd.factors) == {"rank", "batch split"} and not fd.confounded
    # as it actually ran: micro 4 × accum 16 = 64 → a second real factor
    fd = design.factors_between(
        {
            "lora.r": (32, 16),
            "lora.alpha": (64, 32),
            "batch.micro": (4, 4),
            "batch.accum": (16, 4),
            "batch.effective": (64, 16),
            "optimizer_steps": (87, 339),
        }
    )
    assert set(fd.factors) == {"rank", "effective batch"} and fd.confounded
    assert fd.factors["effective batch"] == ("4×16=64, 87 steps", "4×4=16, 339 steps")
    fd = design.factors_between({"batch.micro": (1, 4), "batch.accum": (16, 4)})
    assert fd.split_only and not fd.confounded
    fd = design.factors_between({"lora.r": (32, 16), "lora.alpha": (32, 32)})  # α/r changes too
    assert set(fd.factors) == {"rank", "lora.alpha"} and fd.confounded
    # the data arm trains on more examples for the same epochs: more optimizer steps too
    fd = design.factors_between({"data.size": (5000, 2000), "optimizer_steps": (846, 339)})
    assert fd.factors == {"data size and steps": ("5000 ex, 846 steps", "2000 ex, 339 steps")}
    fd = design.factors_between({"lora.dropout": (0.0, 0.05), "lora.use_rslora": (True, False)})
    assert set(fd.factors) == {"LoRA dropout", "rsLoRA"} and fd.confounded


def test_factor_names_are_trainconfig_field_paths():
    """Every key of the vocabulary is a leaf field of TrainConfig, found by walking the model (not a dumped
    dict), and the derived paths name values the config computes."""
    paths = design.field_paths(TrainConfig)
    assert "lora.use_rslora" in paths and "data.mix" in paths and "data.columns" in paths and "lora" not in paths
    assert set(design.FACTOR_NAMES) <= set(paths)
    c = cfg(batch={"micro": 2, "accum": 8}, max_steps=7)
    assert design.value_at(c, design.EFFECTIVE_BATCH) == c.effective_batch == 16
    assert design.value_at(c, design.OPTIMIZER_STEPS) == c.optimizer_steps() == 7


@pytest.mark.parametrize("field, label", [("use_rslora", "rsLoRA"), ("use_dora", "DoRA")])
def test_an_rslora_or_dora_arm_is_named_as_such(field, label):
    """An arm that only turns on rsLoRA (or DoRA) differs from the baseline in one factor with its own name,
    not the raw field path."""
    arm, baseline = cfg(lora={field: True}), cfg()
    assert design.differences(arm, baseline) == {f"lora.{field}": (True, False)}
    assert design.factors_between(design.differences(arm, baseline)).factors == {label: (True, False)}


def test_every_difference_is_a_field_path_with_the_configs_values():
    """Each key `differences` gives is a real field path (or a derived value) of TrainConfig, holding the two
    configs' values there — a mapping field such as data.columns is one setting, not one key per entry."""
    a = cfg(
        data={"path": "a.jsonl", "columns": {"prompt": "question"}, "mix": {"en": 1.0}},
        lr=1e-4,
        epochs=2,
        batch={"micro": 1, "accum": 16},
        lora={"targets": ["q_proj"]},
    )
    b = cfg(data={"path": "a.jsonl", "columns": {"prompt": "q", "completion": "a"}}, seed=3, out_dir="elsewhere")
    diffs = design.differences(a, b)
    assert list(diffs) == [
        "batch.accum",
        "batch.micro",
        "data.columns",
        "data.mix",
        "epochs",
        "lora.targets",
        "lr",
        "optimizer_steps",
    ]  # seed and out_dir name a run, not a design
    allowed = set(design.field_paths(TrainConfig)) | {design.EFFECTIVE_BATCH, design.OPTIMIZER_STEPS}
    assert set(diffs) <= allowed
    for path, (va, vb) in diffs.items():
        assert (va, vb) == (design.value_at(a, path), design.value_at(b, path))
    assert diffs["data.columns"] == ({"prompt": "question"}, {"prompt": "q", "completion": "a"})
    assert design.factors_between(diffs).factors == {
        "batch split": ("1×16", "4×4"),
        "training length": diffs["optimizer_steps"],
        "data.columns": diffs["data.columns"],
        "data mix": ({"en": 1.0}, "pure"),
        "LoRA targets": (["q_proj"], "default"),
        "learning rate": (1e-4, 2e-4),
    }


def test_base_model_and_effective_batch():
    """None is the base model: the only difference is the adapter. A different effective batch (and so step
    count) is a real factor, a split at the same effective batch is not."""
    assert design.differences(None, cfg()) == {"adapter": ("none", "LoRA")}
    assert design.factors_between(design.differences(cfg(), None)).factors == {"adapter": ("LoRA", "none")}
    wide, narrow = cfg(batch={"micro": 4, "accum": 16}), cfg()
    diffs = design.differences(wide, narrow)
    assert diffs["batch.effective"] == (64, 16) and diffs["optimizer_steps"] == (wide.optimizer_steps(), 339)
    assert design.factors_between(diffs).factors == {
        "effective batch": (f"4×16=64, {wide.optimizer_steps()} steps", "4×4=16, 339 steps")
    }
    assert design.effective_changes(wide, narrow) and not design.effective_changes(
        cfg(batch={"micro": 1, "accum": 16}), narrow
    )
    assert not design.effective_changes(None, narrow)


def test_factor_labels():
    fd = design.FactorDiff({"rank": (32, 16), "effective batch": ("4×16=64, 87 steps", "4×4=16, 339 steps")})
    assert design.factor_labels(fd) == ["rank 16→32", "effective batch 4×4=16, 339 steps → 4×16=64, 87 steps"]


def test_how_steps_are_executed_is_a_note_not_a_factor():
    """Arms that differ only in config `execution` (how a step's sequences are grouped into passes) train the
    same objective: the difference is noted, never a factor, never confounding."""
    a = cfg(execution={"grouping": "configured"}, lora={"r": 32, "alpha": 64})
    b = cfg(execution={"token_budget": 256})
    fd = design.factors_between(design.differences(a, b))
    assert set(fd.factors) == {"rank"} and not fd.confounded
    assert any("execution.grouping" in n for n in fd.notes) and any("execution.token_budget" in n for n in fd.notes)


def test_arms_that_differ_only_in_the_split_compute_the_same_steps_when_grouped_by_length():
    v9c, v9d = cfg(batch={"micro": 1, "accum": 16}), cfg(batch={"micro": 4, "accum": 4})
    assert design.same_computation(v9c, v9d)
    assert not design.same_computation(v9c, cfg(batch={"micro": 4, "accum": 4}, lora={"r": 32, "alpha": 64}))
    assert not design.same_computation(v9c, cfg(batch={"micro": 4, "accum": 8}))  # another effective batch
    as_written = {"grouping": "configured"}
    assert not design.same_computation(
        cfg(batch={"micro": 1, "accum": 16}, execution=as_written),
        cfg(batch={"micro": 4, "accum": 4}, execution=as_written),
    )
    assert not design.same_computation(v9c, None)


def test_same_objective_is_seen_from_the_configs_and_depends_on_the_loss():
    v9c, v9d = cfg(batch={"micro": 1, "accum": 16}), cfg(batch={"micro": 4, "accum": 4})
    assert design.same_objective(v9c, v9d)
    as_written = {"grouping": "configured"}  # the same objective, computed differently: not the same steps
    a, b = cfg(batch={"micro": 1, "accum": 16}, execution=as_written), cfg(batch={"micro": 4, "accum": 4})
    assert design.same_objective(a, b) and not design.same_computation(a, b)
    per_sequence = {"normalisation": "sequence"}
    assert design.same_computation(
        cfg(batch={"micro": 1, "accum": 16}, loss=per_sequence), cfg(batch={"micro": 4, "accum": 4}, loss=per_sequence)
    )
    seeds = {"normalisation": "micro_batch"}  # the seed's loss: the split weighs tokens differently
    c, d = cfg(batch={"micro": 1, "accum": 16}, loss=seeds), cfg(batch={"micro": 4, "accum": 4}, loss=seeds)
    assert not design.same_objective(c, d) and not design.same_computation(c, d)
    assert c.steps_identity() != d.steps_identity() and v9c.steps_identity() == v9d.steps_identity()
    fd = design.factors_of(cfg(batch={"micro": 1, "accum": 16}, lora={"r": 32, "alpha": 64}, loss=seeds), d)
    assert set(fd.factors) == {"rank", "batch split"} and fd.confounded  # a real factor under micro_batch
    fd = design.factors_of(cfg(batch={"micro": 1, "accum": 16}, lora={"r": 32, "alpha": 64}), v9d)
    assert set(fd.factors) == {"rank", "batch split"} and not fd.confounded  # the same objective: no factor
    assert set(design.factors_of(v9d, d).factors) == {"loss normalisation"}
    assert not design.same_objective(v9d, d)


def test_identity_detection_on_every_shipped_study():
    """Which arms of each shipped study train the same objective (design.same_objective), from the configs at
    every scale: none — phase14d trains under the seed's micro_batch loss, where its split is a real factor."""
    from importlib import resources

    from ada_slm.study.spec import expand, load_study

    studies = resources.files("ada_slm") / "studies"
    checked = 0
    for path in sorted(studies.iterdir()):
        if not path.name.endswith(".yaml") or path.name == "phase14d-reported.yaml":  # the audit's input
            continue
        study = load_study(path)
        for scale in [None, *study.scale]:
            configs = {}
            for s in expand(study, str(path), scale):
                if s.train is not None:
                    configs.setdefault(s.arm, s.train)
            pairs = {
                (a, b) for a in configs for b in configs if a < b and design.same_objective(configs[a], configs[b])
            }
            assert pairs == set(), (path.name, scale, pairs)
            checked += 1
    assert checked >= 10
