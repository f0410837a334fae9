"""Learning curve: how many optimizer steps until an arm has learnt AGL, and when do the arms separate?

    python bench/learning_curve.py [--study phase14d] [--scale cpu] [--arms v9B,v9D,v9E]
                                   [--steps 0,10,20,40,80] [--seed 0] [--limit N] [--out curve.json]

Each arm is the study's arm at that scale (its rank, split, corpus, generation budget), trained ONCE up to the
largest step count with the schedule of that whole run; at every listed step the adapter as it is then is
evaluated on the suite (full suite and the preset's generation budget unless --limit) and the held-out loss
is read from the run (val_every = the steps' common divisor). Step 0 is the base model. So the points of one
arm are stages of one run, not separate runs with their own shorter schedules — the curve says where learning
shows, and the preset is then sized (and checked) as a whole run.

Prints, per arm and step: held-out loss, agl_awareness / well_formed / certainty_match / translation_chrf with
their 95 % item-bootstrap CIs, and the training seconds spent so far on this machine (its kind is printed).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from functools import reduce
from pathlib import Path

MAIN = ("agl_awareness", "well_formed", "certainty_match", "translation_chrf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="phase14d")
    ap.add_argument("--scale", default="cpu", help="Scale preset ('none': the study's defaults).")
    ap.add_argument("--arms", default="v9B,v9D,v9E")
    ap.add_argument("--steps", default="0,10,20,40,80")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="Only N suite items (default: the preset's).")
    ap.add_argument("--out", default=None, help="Also write the points as JSON here.")
    args = ap.parse_args()

    import torch

    from ada_slm.app.cli import study_path
    from ada_slm.run import hardware
    from ada_slm.run.config import TrainConfig
    from ada_slm.run.evaluate import evaluate
    from ada_slm.run.suites import GenerationSettings
    from ada_slm.run.train import run
    from ada_slm.study.spec import expand, load_study

    steps = sorted({int(s) for s in args.steps.split(",")})
    study_file = study_path(args.study)
    study = load_study(study_file)
    work = Path(tempfile.mkdtemp(prefix="ada-curve-"))
    scale = None if args.scale == "none" else args.scale
    specs = {
        s.arm: s
        for s in expand(
            study, str(study_file), scale, seeds=[args.seed], results_root=work / "r", exports_root=work / "e"
        )
    }
    arms = args.arms.split(",")
    for arm in arms:
        if arm not in specs or specs[arm].train is None:
            sys.exit(f"--arms {arm}: not a trained arm of {study.name}")
    any_spec = specs[arms[0]]
    settings = GenerationSettings(
        batch_size=any_spec.eval["batch_size"], max_new_tokens=any_spec.eval["max_new_tokens"]
    )
    limit = args.limit or any_spec.eval["limit"]
    print(
        f"machine: {hardware.machine_kind()} CPU, {hardware.threads()} threads, "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}; study {study.name} scale {args.scale}; "
        f"suite {any_spec.eval['suite']} ({'all items' if not limit else f'{limit} items'}, "
        f"{settings.max_new_tokens} new tokens)",
        flush=True,
    )

    points = []

    def add_point(arm: str, step: int, summary: dict, val: float | None, train_s: float, eval_s: float):
        m = summary["metrics"]
        points.append(
            {
                "arm": arm,
                "step": step,
                "heldout_loss": val,
                "train_s": train_s,
                "eval_s": eval_s,
                **{
                    k: {"mean": m[k]["mean"], "low": m[k]["ci_low"], "high": m[k]["ci_high"], "n": m[k]["n"]}
                    for k in MAIN
                },
            }
        )
        print(row(points[-1]), flush=True)

    print(header(), flush=True)
    if 0 in steps:
        t = time.perf_counter()
        base = evaluate(any_spec.base, None, any_spec.eval["suite"], settings, work / "base", limit=limit)
        add_point("base", 0, base, None, 0.0, time.perf_counter() - t)
    for arm in arms:
        spec = specs[arm]
        targets = [s for s in steps if s > 0]
        if not targets:
            break
        cfg = TrainConfig.model_validate(
            {**spec.train, "max_steps": max(targets), "val_every": reduce(math.gcd, targets), "checkpoint_every": 10**6}
        )
        train_clock = {"start": time.perf_counter(), "eval": 0.0}
        pending = []

        def at_step(
            step: int, model, tokenizer, arm=arm, pending=pending, targets=targets, spec=spec, train_clock=train_clock
        ):
            if step not in targets:
                return
            t = time.perf_counter()
            merged = copy.deepcopy(model).merge_and_unload()  # evaluated as a study does: merged, fp32
            summary = evaluate(
                spec.base,
                None,
                spec.eval["suite"],
                settings,
                work / arm / f"step{step}",
                limit=limit,
                model_and_tokenizer=(merged, tokenizer),
            )
            del merged
            eval_s = time.perf_counter() - t
            train_s = time.perf_counter() - train_clock["start"] - train_clock["eval"]
            train_clock["eval"] += eval_s
            pending.append((step, summary, train_s, eval_s))

        record = run(cfg, quiet=True, on_step=at_step)
        val = {v["step"]: v["loss"] for v in record["train"]["val"]}
        for step, summary, train_s, eval_s in pending:
            add_point(arm, step, summary, val.get(step), train_s, eval_s)
    if args.out:
        Path(args.out).write_text(json.dumps(points, indent=2))
    return 0


def header() -> str:
    return f"{'arm':<8}{'step':>5}{'held-out':>9}" + "".join(f"{k:>24}" for k in MAIN) + f"{'train s':>9}{'eval s':>8}"


def row(p: dict) -> str:
    def ci(m):
        if m["mean"] is None:
            return f"{'—':>24}"
        if m["low"] is None:
            return f"{m['mean']:>8.3f} (n={m['n']})".rjust(24)
        return f"{m['mean']:>8.3f} [{m['low']:.3f}, {m['high']:.3f}]".rjust(24)

    val = f"{p['heldout_loss']:.3f}" if p["heldout_loss"] is not None else "—"
    return (
        f"{p['arm']:<8}{p['step']:>5}{val:>9}"
        + "".join(ci(p[k]) for k in MAIN)
        + f"{p['train_s']:>9.0f}{p['eval_s']:>8.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
