"""Where the time of one training step goes: torch.profiler over one optimizer step, grouped into categories.

    python bench/profile_step.py [--base smollm2-135m] [--micro 4] [--accum 4] [--precision bf16,fp32]
                                 [--dropout 0.05] [--fp32-base] [--threads N]

The step is `ada_slm.run.train`'s own (length-grouped micro-batches, `accumulate_step`, clipping, AdamW) on the
first step's sequences of the 2k builder corpus, LoRA r16/α32 on the default targets — what `ada-slm train`
runs with its defaults. One step warms up (kernel selection), the next is profiled. The table groups the
profiler's *self* times (time inside an op, not its children) so nothing is counted twice:

  base matmuls      mm/addmm/bmm whose shapes carry no LoRA rank (the frozen projections, the LM head)
  LoRA matmuls      mm/addmm whose shapes carry the LoRA rank
  weight casts      dtype copies of 2-D tensors: autocast re-casting weights (frozen ones on every call)
  activation casts  the other dtype copies
  dropout           (native_)dropout, bernoulli and their backward
  attention         scaled_dot_product_attention kernels and their backward
  elementwise       the rest of the aten ops: RMSNorm, SiLU, rotary, residual adds, loss, gradient sums
  optimizer         AdamW + gradient clipping (everything under those calls)
  Python/other      step wall time not inside any aten op: module calls, PEFT/HF dispatch, collation

`--fp32-base` turns off the bf16 frozen base (`hold_frozen_linears_in`) to show what autocast alone costs.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from ada_slm.agl.builder import build_corpus
from ada_slm.run import models
from ada_slm.run.datasets_io import tokenize
from ada_slm.run.steps import (
    accumulate_step,
    hold_frozen_linears_in,
    micro_batches,
    restore_frozen_linears,
    step_indices,
)

CATEGORIES = [
    "base matmuls",
    "LoRA matmuls",
    "weight casts",
    "activation casts",
    "dropout",
    "attention",
    "elementwise",
    "optimizer",
    "Python/other",
]


def category(name: str, shapes: list, rank: int) -> str:
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return "LoRA matmuls" if any(rank in s for s in shapes if s) else "base matmuls"
    if name in ("aten::copy_", "aten::_to_copy"):
        return "weight casts" if shapes and len(shapes[0]) == 2 else "activation casts"
    if "dropout" in name or "bernoulli" in name:
        return "dropout"
    if "scaled_dot_product" in name or "flash_attention" in name or "efficient_attention" in name:
        return "attention"
    return "elementwise"


def profile_one_step(model, chosen, micro, pad_id, autocast_dtype, rank, optimizer, trainable) -> dict:
    def step():
        accumulate_step(model, micro_batches(chosen, micro), pad_id, torch.device("cpu"), autocast_dtype)
        with record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: kernel selection and allocation for these shapes
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    seconds = defaultdict(float)
    events = prof.events()
    optimizer_event = next(e for e in events if e.name == "optimizer")
    lo, hi = optimizer_event.time_range.start, optimizer_event.time_range.end
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        inside_optimizer = lo <= e.time_range.start <= hi
        key = "optimizer" if inside_optimizer else category(e.name, e.input_shapes, rank)
        seconds[key] += e.self_cpu_time_total / 1e6
    seconds["Python/other"] = max(0.0, wall - sum(seconds.values()))
    return {"wall": wall, **seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--precision", default="bf16,fp32", help="comma-separated: bf16 (autocast), fp32")
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--fp32-base", action="store_true", help="keep the frozen base in fp32 under bf16 autocast")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model

    base, tok, _ = models.load(args.base)
    torch.manual_seed(0)
    model = get_peft_model(
        base,
        LoraConfig(
            r=args.rank,
            lora_alpha=2 * args.rank,
            lora_dropout=args.dropout,
            target_modules=models.default_targets(base),
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    examples, _ = tokenize(build_corpus(2000, "pure", seed=0).train, tok, args.max_length)
    chosen = [examples[i] for i in step_indices(len(examples), args.micro * args.accum, 0, 0)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    tokens = sum(len(e.input_ids) for e in chosen)
    print(
        f"{args.base}, LoRA r{args.rank}/α{2 * args.rank} default targets, dropout {args.dropout}, "
        f"{args.micro} × {args.accum} = {len(chosen)} sequences ({tokens} tokens), {torch.get_num_threads()} "
        f"threads"
    )
    columns = {}
    for name in args.precision.split(","):
        dtype = torch.bfloat16 if name == "bf16" else None
        originals = {} if args.fp32_base else hold_frozen_linears_in(model, dtype)
        label = name + (" (fp32 base)" if dtype and args.fp32_base else " (bf16 base)" if dtype else "")
        columns[label] = profile_one_step(
            model, chosen, args.micro, tok.pad_token_id, dtype, args.rank, optimizer, trainable
        )
        restore_frozen_linears(originals)
    head = f"{'category':<20}" + "".join(f"{label:>24}" for label in columns)
    print(head + "\n" + "-" * len(head))
    for cat in CATEGORIES:
        print(
            f"{cat:<20}"
            + "".join(f"{c.get(cat, 0.0) / c['wall']:>17.1%} {c.get(cat, 0.0):5.1f}s" for c in columns.values())
        )
    print(f"{'step wall time':<20}" + "".join(f"{c['wall']:>23.1f}s" for c in columns.values()))


if __name__ == "__main__":
    main()
