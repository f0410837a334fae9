"""Training throughput: plain HF Trainer, TRL SFTTrainer and ada-slm on the same job, side by side.

    python bench/train_throughput.py [--base smollm2-135m] [--sequences 64] [--only plain,trl,trl-fp32,ours]

Same base model, same AGL sequences (each seen once: the training set *is* the `--sequences` examples), same
LoRA (r32/α64, all linear layers, dropout 0.05), same optimizer and schedule (AdamW, lr 2e-4, linear decay, 10 %
warmup, clip 1.0), same effective batch (micro × accum = 16 sequences per step). Each trainer runs in a fresh
subprocess (its own imports, its own peak RSS):

  plain     HF `Trainer` + PEFT, fp32, every sequence padded to max_length, prompt masked.
  trl       TRL `SFTTrainer` with its defaults (gradient checkpointing on, bf16 autocast on, pad to the longest
            in the micro-batch), prompt/completion data so that only the answer is trained, as in the others.
  trl-fp32  the same with `bf16=False, gradient_checkpointing=False`: what a user who tuned TRL for this CPU gets.
  ours      `ada-slm train` with its defaults.

All four are scored by the same function (`ada_slm.run.steps.heldout_loss`: mean cross-entropy per answer token on
the same held-out set) and their throughput counts the same tokens (ada-slm's tokenization of the sequences):
tokens/s = real (non-pad) tokens ÷ training wall time; "answer tok/s" counts only the trained tokens. MFU is
model FLOPs utilisation: (2 forward + 2 input-gradient) × non-embedding parameters per real token — the frozen
base needs no weight gradients — over the matmul peak *of the precision that trainer computes in* (bf16 for
ada-slm where `precision: auto` picks it and for TRL's defaults, fp32 otherwise), both measured by
bench/matmul_peak.py in this process. The table names the machine kind (`hardware.machine_kind()`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LR, WARMUP_RATIO, R, ALPHA, DROPOUT = 2e-4, 0.1, 32, 64, 0.05
ARM_SEQUENCES = 5400  # one Phase 14D seed arm: 2,000 examples, 10 % held out, 3 epochs


# --------------------------------------------------------------------------------------------- workers
def _val_and_counts(tokenizer, work: Path, max_length: int):
    from ada_slm.files import iter_jsonl
    from ada_slm.run.datasets_io import tokenize

    train_rows = [obj for _, obj in iter_jsonl(work / "train.jsonl")]
    val_rows = [obj for _, obj in iter_jsonl(work / "val.jsonl")]
    train_set, _ = tokenize(train_rows, tokenizer, max_length)
    val_set, _ = tokenize(val_rows, tokenizer, max_length)
    return train_rows, train_set, val_set


def _score(model, tokenizer, val_set) -> float:
    import torch

    from ada_slm.run.steps import heldout_loss

    device = next(model.parameters()).device
    autocast = torch.bfloat16 if device.type == "cuda" else None
    from ada_slm.run.hardware import execution_defaults

    return heldout_loss(model, val_set, tokenizer.pad_token_id, device, autocast, execution_defaults(device))


def _peft_config():
    from peft import LoraConfig

    return LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules="all-linear", task_type="CAUSAL_LM")


def worker(name: str, args) -> dict:
    import torch

    from ada_slm.run import models

    work = Path(args.work)
    steps = math.ceil(args.sequences / (args.micro * args.accum))
    model, tokenizer, _ = models.load(args.base)
    train_rows, train_set, val_set = _val_and_counts(tokenizer, work, args.max_length)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=work))

    if name == "ours":
        from ada_slm.run.config import build_config
        from ada_slm.run.train import train

        cfg = build_config(
            {
                "base": args.base,
                "data": {"path": str(work / "train.jsonl"), "val_path": str(work / "val.jsonl")},
                "lora": {"r": R, "alpha": ALPHA, "dropout": DROPOUT, "targets": "all-linear"},
                "batch": {"micro": args.micro, "accum": args.accum},
                "max_steps": steps,
                "lr": LR,
                "warmup_ratio": WARMUP_RATIO,
                "max_length": args.max_length,
                "seed": 0,
                "out_dir": str(out),
                "val_every": 10**6,
                "checkpoint_every": 10**6,
            }
        )
        del model
        trained = train(cfg, quiet=True)
        record, model, tokenizer = trained.record, trained.model, trained.tokenizer
        step_s = [s.tokens / s.tokens_per_s for s in record.train.steps]
        wall = sum(step_s)
        precision = record.meta["precision"]
    else:
        from datasets import Dataset
        from transformers import Trainer, TrainingArguments, default_data_collator

        common = dict(
            output_dir=str(out),
            per_device_train_batch_size=args.micro,
            gradient_accumulation_steps=args.accum,
            max_steps=steps,
            learning_rate=LR,
            lr_scheduler_type="linear",
            warmup_steps=int(WARMUP_RATIO * steps),
            weight_decay=0.0,
            max_grad_norm=1.0,
            seed=0,
            report_to="none",
            save_strategy="no",
            logging_steps=10**6,
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
        )
        if name == "plain":
            from peft import get_peft_model

            def padded(e):
                pad = args.max_length - len(e.input_ids)
                return {
                    "input_ids": e.input_ids + [tokenizer.pad_token_id] * pad,
                    "attention_mask": [1] * len(e.input_ids) + [0] * pad,
                    "labels": e.labels + [-100] * pad,
                }

            data = Dataset.from_list([padded(e) for e in train_set])
            trainer = Trainer(
                model=get_peft_model(model, _peft_config()),
                args=TrainingArguments(**common, remove_unused_columns=False),
                train_dataset=data,
                data_collator=default_data_collator,
            )
        else:
            from trl import SFTConfig, SFTTrainer

            data = Dataset.from_list(
                [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in train_rows]
            )
            extra = {} if name == "trl" else {"bf16": False, "gradient_checkpointing": False}
            trainer = SFTTrainer(
                model=model,
                processing_class=tokenizer,
                train_dataset=data,
                args=SFTConfig(**common, max_length=args.max_length, **extra),
                peft_config=_peft_config(),
            )
        precision = "bf16" if trainer.args.bf16 else "fp32"
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
        model = trainer.model

    import resource

    n_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "embed" not in n)
    return {
        "name": name,
        "wall_s": wall,
        "steps": steps,
        "precision": precision,
        "tokens": sum(len(e.input_ids) for e in train_set),
        "target_tokens": sum(sum(1 for t in e.labels[1:] if t != -100) for e in train_set),
        "non_embedding_params": n_params,
        "heldout_loss": _score(model, tokenizer, val_set),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ------------------------------------------------------------------------------------------------ main
LABELS = {
    "plain": "HF Trainer (plain)",
    "trl": "TRL SFTTrainer (defaults)",
    "trl-fp32": "TRL SFTTrainer (fp32, no GC)",
    "ours": "ada-slm train",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--base", default="smollm2-135m", help="smollm2-135m, tiny-lfm2, a local dir (default: %(default)s)"
    )
    ap.add_argument(
        "--sequences", type=int, default=64, help="training sequences, each seen once (default: %(default)s)"
    )
    ap.add_argument("--val", type=int, default=32, help="held-out sequences (default: %(default)s)")
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--only", default="ours,trl-fp32,plain,trl", help="comma-separated subset of " + ",".join(LABELS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args)))
        return

    from ada_slm.agl.builder import build_corpus
    from ada_slm.files import write_jsonl

    sys.path.insert(0, str(HERE))
    from matmul_peak import matmul_gflops

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        ap.error(f"--only: unknown trainer(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")
    import torch

    from ada_slm.run.hardware import machine_kind

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peaks = {
        "fp32": matmul_gflops(torch.float32, seconds=1.0, device=device),
        "bf16": matmul_gflops(torch.bfloat16, seconds=1.0, device=device),
    }
    with tempfile.TemporaryDirectory(prefix="ada-bench-") as tmp:
        work = Path(tmp)
        corpus = build_corpus(args.sequences + args.val + 64, "pure", seed=7, val_fraction=0.1)
        write_jsonl(work / "train.jsonl", corpus.train[: args.sequences])
        write_jsonl(work / "val.jsonl", corpus.val[: args.val])
        results = {}
        for name in names:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--work",
                str(work),
                "--base",
                args.base,
                "--sequences",
                str(args.sequences),
                "--micro",
                str(args.micro),
                "--accum",
                str(args.accum),
                "--max-length",
                str(args.max_length),
            ]
            print(f"running {LABELS[name]} …", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            results[name] = json.loads(lines[-1][len("RESULT ") :])

    if not results:
        sys.exit("no trainer finished")
    any_r = next(iter(results.values()))
    print(
        f"\nbase {args.base}, {args.sequences} sequences × 1 epoch = {any_r['steps']} steps of "
        f"{args.micro} micro × {args.accum} accum = {args.micro * args.accum} sequences, max_length "
        f"{args.max_length}, LoRA r{R}/α{ALPHA} all-linear; {any_r['tokens']} tokens "
        f"({any_r['target_tokens']} answer tokens); machine kind {machine_kind() if device == 'cpu' else device}, "
        f"matmul peak fp32 {peaks['fp32']:.1f} / bf16 {peaks['bf16']:.1f} GFLOP/s (MFU against the peak of "
        f"each trainer's precision); 'arm est.' = one Phase 14D seed arm, {ARM_SEQUENCES} sequences "
        f"(2k × 0.9 train × 3 epochs)"
    )
    head = (
        f"{'trainer':<30}{'prec':>5}{'wall s':>9}{'tok/s':>9}{'answer tok/s':>14}{'MFU':>7}{'peak RSS MB':>13}"
        f"{'held-out loss':>15}{'arm est.':>10}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        tps = r["tokens"] / r["wall_s"]
        mfu = 4 * r["non_embedding_params"] * tps / (peaks[r["precision"]] * 1e9)
        print(
            f"{LABELS[name]:<30}{r['precision']:>5}{r['wall_s']:>9.1f}{tps:>9.1f}"
            f"{r['target_tokens'] / r['wall_s']:>14.1f}"
            f"{mfu:>7.1%}{r['peak_rss_mb']:>13.0f}{r['heldout_loss']:>15.4f}"
            f"{ARM_SEQUENCES * r['wall_s'] / args.sequences / 60:>8.1f} m"
        )
    if "ours" in results:
        ours = results["ours"]
        for name, r in results.items():
            if name == "ours":
                continue
            loss_gap = (ours["heldout_loss"] - r["heldout_loss"]) / r["heldout_loss"]
            print(
                f"ada-slm ÷ {LABELS[name]:<30} speed {r['wall_s'] / ours['wall_s']:6.2f} ×   "
                f"held-out loss {loss_gap:+.2%}"
            )


if __name__ == "__main__":
    main()
