"""Wall time of a study subset under two versions of ada-slm, one after the other on this machine, and their ratio.

    git worktree add /tmp/ada-baseline <ref>          # the baseline's source tree (e.g. the previous main)
    python bench/study_ratio.py --baseline-src /tmp/ada-baseline/src [--study phase14d] [--scale cpu] \
        [--only v9B,v9C] [--seeds 0] [--jobs-ours N] [--versions baseline,ours]

Each version runs `ada-slm study run STUDY --scale SCALE --only ONLY --seeds SEEDS --no-report` in a fresh
process (`python -m ada_slm.app.cli`, PYTHONPATH = that version's src) into its own empty results and exports
folders, so nothing is skipped as done and no eval cache is shared. The embedded model is converted before either
is timed. The table names the machine kind, the matmul peak (bench/matmul_peak.py) and the load average before and
after each run: a timing taken while anything else runs is not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS_SRC = HERE.parent / "src"


def study_wall(src: Path, args, extra: list[str], work: Path, name: str) -> dict:
    results, exports = work / f"{name}-results", work / f"{name}-exports"
    cmd = [
        sys.executable,
        "-m",
        "ada_slm.app.cli",
        "study",
        "run",
        args.study,
        "--scale",
        args.scale,
        "--only",
        args.only,
        "--seeds",
        args.seeds,
        "--no-report",
        "--results",
        str(results),
        "--exports",
        str(exports),
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(src), ADA_SLM_THROUGHPUT=str(work / f"{name}-throughput.json"))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], file=sys.stderr)
        raise SystemExit(f"{name}: study run failed (exit {proc.returncode})")
    runs = {}
    for record in sorted(results.glob("*/*/*/record.json")):
        rec = json.loads(record.read_text())
        train = rec.get("train") or {}
        runs[f"{record.parent.parent.name}/{record.parent.name}"] = {
            "train_s": train.get("wall_s"),
            "generation_s": (rec.get("eval") or {}).get("generation_s"),
            "heldout": train.get("final_val_loss"),
            "agl_awareness": ((rec.get("eval") or {}).get("metrics") or {}).get("agl_awareness", {}).get("mean"),
        }
    return {"wall_s": wall, "load_before": load_before, "load_after": os.getloadavg()[0], "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", type=Path, required=True, help="src/ folder of the baseline version")
    ap.add_argument("--study", default="phase14d")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--only", default="v9B,v9C")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--jobs-ours", type=int, default=None, help="--jobs for ours (default: its own default)")
    ap.add_argument(
        "--versions",
        default="baseline,ours",
        help="which to time: baseline,ours (default both), or one of them (a measurement taken alone before the other)",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="write the studies' results into this new folder and "
        "keep them (default: a temporary folder, removed at the end)",
    )
    args = ap.parse_args()

    sys.path.insert(0, str(OURS_SRC))
    import torch

    from ada_slm.run import hardware, models

    sys.path.insert(0, str(HERE))
    from matmul_peak import matmul_gflops

    models.resolve("smollm2-135m")  # converted once, before anything is timed
    kind = hardware.machine_kind()
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(
        f"machine kind {kind}, {os.cpu_count()} CPUs, matmul peak fp32 {fp32:.0f} / bf16 {bf16:.0f} GFLOP/s, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    out = {
        "kind": kind,
        "peak_fp32": fp32,
        "peak_bf16": bf16,
        "study": args.study,
        "scale": args.scale,
        "only": args.only,
        "seeds": args.seeds,
    }
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
    with tempfile.TemporaryDirectory(prefix="study-ratio-") as tmp:
        work = args.keep or Path(tmp)
        if "baseline" in args.versions:
            out["baseline"] = study_wall(args.baseline_src.resolve(), args, [], work, "baseline")
            print(f"baseline: {out['baseline']['wall_s']:.0f} s", flush=True)
        if "ours" in args.versions:
            extra = ["--jobs", str(args.jobs_ours)] if args.jobs_ours else []
            out["ours"] = study_wall(OURS_SRC, args, extra, work, "ours")
            print(f"ours:     {out['ours']['wall_s']:.0f} s", flush=True)
    print(f"\n{'version':<10} {'wall s':>8} {'load before/after':>18}  runs (train s, generation s, held-out)")
    for name in ("baseline", "ours"):
        if name in out:
            r = out[name]
            runs = "; ".join(
                f"{k} {v['train_s'] or 0:.0f}/{v['generation_s'] or 0:.0f}/"
                f"{v['heldout'] if v['heldout'] is None else round(v['heldout'], 4)}"
                for k, v in r["runs"].items()
            )
            print(f"{name:<10} {r['wall_s']:>8.0f} {r['load_before']:>8.2f} / {r['load_after']:<7.2f}  {runs}")
    if "baseline" in out and "ours" in out:
        print(f"\nours ÷ baseline wall time: {out['ours']['wall_s'] / out['baseline']['wall_s']:.2f}×  (goal ≤ 0.40×)")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
