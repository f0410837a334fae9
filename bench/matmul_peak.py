"""Measured matmul peak of this machine in fp32 and bf16 (GFLOP/s), the denominator of model FLOPs utilisation.

    python bench/matmul_peak.py [--size 2048] [--seconds 2]

A square `size × size` product through `torch.nn.functional.linear` (the kernel every projection of the model
uses; on some CPUs `torch.matmul` takes a much slower bf16 path than `linear`) is repeated for about `seconds`;
the best rate over 3 repeats is the peak. On a
CPU without native bf16 (AVX2 only: no avx512_bf16/amx_bf16 in /proc/cpuinfo) bf16 is emulated and is slower
than fp32 — that is why `precision: auto` keeps fp32 there.
"""

from __future__ import annotations

import argparse
import time

import torch

from ada_slm.run.hardware import cpu_flags


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0, device: str = "cpu") -> float:
    """Best of 3 timings of repeated `size × size` products (F.linear), in GFLOP/s (2·n³ FLOPs each)."""
    from torch.nn.functional import linear

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    linear(a, b)  # warm-up (kernel selection, page faults)
    sync()
    start = time.perf_counter()
    linear(a, b)
    sync()
    one = max(time.perf_counter() - start, 1e-6)
    reps = max(1, int(seconds / 3 / one))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            linear(a, b)
        sync()
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    flags = cpu_flags()
    native = sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)
    print(
        f"device {device}"
        + (
            f" ({torch.cuda.get_device_name(0)})"
            if device == "cuda"
            else f", {torch.get_num_threads()} threads, CPU flags: {' '.join(native) or 'none'}"
        )
    )
    fp32 = matmul_gflops(torch.float32, args.size, args.seconds, device)
    bf16 = matmul_gflops(torch.bfloat16, args.size, args.seconds, device)
    print(f"{'fp32 matmul peak':>20}: {fp32:10.1f} GFLOP/s")
    print(f"{'bf16 matmul peak':>20}: {bf16:10.1f} GFLOP/s")
    print(f"{'bf16 ÷ fp32':>20}: {bf16 / fp32:10.2f} ×")


if __name__ == "__main__":
    main()
