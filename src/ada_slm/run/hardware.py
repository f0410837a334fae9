"""What this machine computes with: device, precision and threads — decided by fixed rules, never a stopwatch.

A seeded run must compute the same numbers wherever it runs on the same machine kind (the local executor, a
Ray task, a resumed process). So `precision: auto` is a pure function of the device's capabilities:

  CUDA                          bf16 where the GPU supports it, else fp32
  CPU with AMX (amx_bf16)       bf16 — matmuls run on the AMX tiles: measured 965 GFLOP/s vs 174 fp32 on 2 cores
                                (bench/matmul_peak.py)
  any other CPU                 fp32 — AVX2-only CPUs emulate bf16 (measured 0.23× fp32); AVX-512-BF16 without
                                AMX is not measured here, so it keeps the safe default (ask for `bf16` to try)

An earlier version timed a 0.3 s matmul at start-up: under load two runs of one config could then differ in
precision (and the Ray and local executors gave different adapters on an AMX machine).
"""

from __future__ import annotations

import os

import torch

# CPU flags (as /proc/cpuinfo names them) under which `auto` picks bf16 on a CPU.
BF16_CPU_FLAGS = frozenset({"amx_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_kind(flags: set[str] | None = None) -> str:
    """'amx' | 'avx512' | 'avx2' | 'other': the CPU kinds the performance tables (docs/performance.md) are measured
    on."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


# How a step's sequences are cut into forward/backward passes when grouped by length (config `execution`), per
# machine kind: (padded tokens per pass at most, what one more pass costs in padded-token equivalents). Measured
# by bench/execution_budget.py on the cpu-scale study's steps (docs/performance.md); a fixed table, never a
# stopwatch at run time, so a seeded run executes the same passes wherever it runs on one kind.
#   avx512: 1 × 16 103 tok/s, 4 × 4 159, 16 × 1 101 (fp32, 2 threads): a pass costs ≈ 80 tokens; one pass of
#           all 16 sequences is slower per token (1.48× padding, and large activations), hence the cap
#   amx:    1 × 16 167 tok/s, 4 × 4 279, 16 × 1 205 (bf16, bench/execution_budget.py): ≈ 100 tokens a pass
#   avx2, other: not measured; the AVX-512 values (a cap of 512 keeps a pass from the slow one-pass extreme)
EXECUTION = {"amx": (512, 100), "avx512": (512, 80), "avx2": (512, 80), "other": (512, 80), "cuda": (16384, 2048)}


def execution_defaults(device: torch.device, flags: set[str] | None = None) -> tuple[int, int]:
    """This machine kind's (token budget, pass overhead) of EXECUTION."""
    if device.type == "cuda":
        return EXECUTION["cuda"]
    return EXECUTION[machine_kind(flags)]


# Runs a local study executes at once (`study run --jobs`), each with its share of the threads: measured per
# machine kind on cpu-scale runs (2 runs × 1 thread against 1 run × 2 threads, docs/performance.md). One run at a
# time on a GPU: it holds the device.
STUDY_JOBS = {"amx": 2, "avx512": 2, "avx2": 1, "other": 1, "cuda": 1}


def default_jobs(flags: set[str] | None = None) -> int:
    """This machine kind's concurrent runs (STUDY_JOBS), never more than its threads."""
    if torch.cuda.is_available():
        return STUDY_JOBS["cuda"]
    return max(1, min(STUDY_JOBS[machine_kind(flags)], threads()))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> tuple[str, dict]:
    """(precision name 'fp32' | 'bf16', how it was chosen). Deterministic: the same machine gives the same answer."""
    why: dict = {"requested": requested, "rule": "fixed"}
    if requested != "auto":
        return requested, why
    if device.type == "cuda":
        why["cuda_bf16_supported"] = bool(torch.cuda.is_bf16_supported())
        return ("bf16" if why["cuda_bf16_supported"] else "fp32"), why
    flags = cpu_flags() if flags is None else flags
    why["cpu_bf16_flags"] = sorted(flags & BF16_CPU_FLAGS)
    why["machine_kind"] = machine_kind(flags)
    return ("bf16" if why["cpu_bf16_flags"] else "fp32"), why


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name (None: plain fp32)."""
    return torch.bfloat16 if precision == "bf16" else None


def threads() -> int:
    """Intra-op threads a run uses: OMP_NUM_THREADS where set (Ray sets it to a task's CPUs), else the CPUs this
    process may run on. Both executors set it the same way, so reductions are split the same way."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads() -> int:
    n = threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
