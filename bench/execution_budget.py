"""Training throughput by how a step's sequences are executed: the configured splits against token budgets.

    python bench/execution_budget.py [--base smollm2-135m] [--steps 3] [--budgets 256,512,1024,2048,4096]
                                     [--precision auto] [--threads N]

The steps are the cpu-scale study's (2k builder corpus, 16 sequences per optimizer step, LoRA r32/α64 on the
default targets, dropout 0.05, max_length 256): the same optimizer steps (seed 0's first ones) under every
execution, after one warm-up step each. `configured M×A` executes micro-batches of M sequences (longest first);
`budget B` sorts the step by length and cuts it into passes of at most B padded tokens, minimising padded tokens +
the kind's pass cost × passes (config `execution`, the default). tokens/s counts real (non-pad) tokens over the timed
steps' wall time. The winner is what
`hardware.EXECUTION_TOKEN_BUDGET` holds for this machine kind (printed beside it).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from ada_slm.run import hardware, models
from ada_slm.run.config import TrainConfig
from ada_slm.run.datasets_io import load_rows, tokenize
from ada_slm.run.steps import accumulate_step, hold_frozen_linears_in, micro_batches, step_indices, token_budget_passes
from ada_slm.run.train import attach_adapter, choose_precision, make_optimizer


def padded_tokens(passes) -> int:
    return sum(len(p) * max(len(e.input_ids) for e in p) for p in passes)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per execution")
    ap.add_argument("--budgets", default="256,512,1024,2048,4096")
    ap.add_argument("--configured", default="4x4,1x16,16x1")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--pass-overhead", type=int, default=None, help="pass cost in tokens (default: the kind's)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig.model_validate(
        {
            "base": args.base,
            "data": {"size": 2000, "val_size": 200},
            "lora": {"r": 32, "alpha": 64, "dropout": 0.05},
            "precision": args.precision,
            "batch": {"micro": 4, "accum": 4},
            "max_length": 256,
        }
    )
    device = hardware.default_device()
    precision, autocast_dtype, _ = choose_precision(cfg, device)
    model, tokenizer, _ = models.load(cfg.base)
    train_rows, _, _ = load_rows(cfg.data)
    train_set, _ = tokenize(train_rows, tokenizer, cfg.max_length)
    torch.manual_seed(0)
    model = attach_adapter(cfg, model).to(device)
    hold_frozen_linears_in(model, autocast_dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer, _ = make_optimizer(cfg, trainable, 100)
    model.train()
    steps = [[train_set[i] for i in step_indices(len(train_set), 16, 0, k)] for k in range(args.steps + 1)]
    executions = [
        (f"configured {c}", lambda chosen, m=int(c.split("x")[0]): micro_batches(chosen, m))  # noqa: B008 (binds m now)
        for c in args.configured.split(",")
        if c
    ]
    overhead = args.pass_overhead if args.pass_overhead is not None else hardware.execution_defaults(device)[1]
    executions += [
        (f"budget {b}", lambda chosen, b=int(b): token_budget_passes(chosen, b, overhead))
        for b in args.budgets.split(",")
        if b
    ]
    kind = hardware.machine_kind()
    print(
        f"machine kind {kind}, {torch.get_num_threads()} threads, {precision}, load average "
        f"{os.getloadavg()[0]:.2f}; table value for this kind (budget, pass cost): "
        f"{hardware.execution_defaults(device)}; pass cost used here {overhead}"
    )
    print(f"{'execution':<18}{'passes/step':>12}{'padded/real':>12}{'tok/s':>9}")
    pad_id = tokenizer.pad_token_id
    for name, cut in executions:
        real = padded = n_passes = 0
        elapsed = 0.0
        for k, chosen in enumerate(steps):
            passes = cut(chosen)
            start = time.perf_counter()
            accumulate_step(model, passes, pad_id, device, autocast_dtype)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if k == 0:  # warm-up: kernel selection and allocations at these shapes
                continue
            elapsed += time.perf_counter() - start
            real += sum(len(e.input_ids) for e in chosen)
            padded += padded_tokens(passes)
            n_passes += len(passes)
        print(f"{name:<18}{n_passes / args.steps:>12.1f}{padded / real:>12.2f}{real / elapsed:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
