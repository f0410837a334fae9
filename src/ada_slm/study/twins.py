"""Runs of a study that compute the same optimizer steps, trained once.

Two configs that differ only in micro × accum, with the loss normalised per target token over the step and the
steps executed grouped by length (config `execution`), compute the same passes: the same seed gives the same
adapter, number for number, on one machine kind (measured: phase14d's v9C and v9D, all three seeds). A study
run whose steps another finished run of the study computed takes that run's adapter and training record
instead of training again; its record says so (meta.computed_by) and its evaluation is its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ada_slm.errors import UserError
from ada_slm.run import records, runlock
from ada_slm.study.spec import read_spec_file


def find_twin(spec, run_dir: Path) -> tuple[Path, records.RunRecord] | None:
    """A trained run of the same study whose config computes exactly this run's optimizer steps
    (TrainConfig.steps_identity: the same fields and seed, the split aside, grouped by length) on this machine
    kind, in this precision and with these threads, whose adapter is in place: (its folder, its record)."""
    from ada_slm.run import hardware  # imports torch: only a run's own process gets here

    identity = spec.train.steps_identity()
    if identity is None:
        return None
    device = hardware.default_device()
    here = {
        "precision": hardware.resolve_precision(spec.train.precision, device)[0],
        "torch_threads": hardware.threads(),
        "machine_kind": hardware.machine_kind(),
    }
    for other in sorted(run_dir.parent.parent.glob("*/seed*")):
        if other == run_dir or other.is_symlink() or not other.is_dir():
            continue
        try:
            other_spec = read_spec_file(other)
            rec = records.read_record(other)
        except (UserError, records.CorruptRecord):
            continue  # a damaged neighbour is its own run's problem, never this one's
        if other_spec.train is None or other_spec.train.steps_identity() != identity or not records.is_trained(rec):
            continue
        meta = rec.meta or {}
        ran = {
            "precision": meta.get("precision"),
            "torch_threads": meta.get("torch_threads"),
            "machine_kind": (meta.get("precision_choice") or {}).get("machine_kind", here["machine_kind"]),
        }
        adapter = Path(rec.train.adapter_dir) if rec.train and rec.train.adapter_dir else None
        # only the adapter the twin's own spec exports: a record pointing elsewhere is not copied from
        if (
            ran == here
            and adapter is not None
            and adapter.resolve() == other_spec.train.adapter_dir().resolve()
            and (adapter / "adapter_config.json").is_file()
        ):
            return other, rec
    return None


def reuse_twin(cfg, twin_dir: Path, twin: records.RunRecord) -> records.RunRecord:
    """This run's record and adapter from a twin that computed the same steps (find_twin): the twin's adapter
    files copied into this run's export folder (written whole, as train.py writes it), the twin's record with
    this run's config, split and folders, and where the numbers came from in meta.computed_by."""

    from ada_slm.run import exports
    from ada_slm.run.train import export_owner

    adapter = records.adapter_dir(twin)
    assert adapter is not None  # find_twin: the twin's adapter is there
    source = Path(adapter)

    def fill(folder: Path) -> None:
        for f in sorted(source.iterdir()):
            if f.name != exports.MARKER and f.is_file() and not f.is_symlink():
                shutil.copyfile(f, folder / f.name)

    exports.write_folder(cfg.adapter_dir(), "adapter", export_owner(cfg), "export_dir", fill, sweep=True)
    record = twin.model_copy(deep=True)
    record.config = cfg
    assert record.facts is not None and record.train is not None  # a trained run's record (find_twin) has both
    record.facts.batch_arithmetic = cfg.batch_arithmetic()
    passes = tuple(record.facts.executed_passes) if record.facts.executed_passes else None
    record.facts.executed_split = cfg.executed_split(passes)
    record.train.adapter_dir = str(cfg.adapter_dir())
    record.train.merged_dir = None
    record.meta = {
        **(twin.meta or {}),
        "seed": cfg.seed,
        "computed_by": f"{twin_dir.parent.name}/{twin_dir.name}: the same optimizer steps (the same "
        "config and seed but for micro × accum, executed grouped by length), trained "
        "once and reused — not trained again",
    }
    record.eval = None
    record.status = records.Status(state=records.COMPLETE, reason=None)
    runlock.check(cfg.out_dir)
    records.write_record(cfg.out_dir, record)
    return record
