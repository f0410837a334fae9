"""Batched vs one-prompt-at-a-time greedy generation over an eval suite, same model, same process.

    python bench/eval_throughput.py [--base smollm2-135m] [--suite multilang] [--limit N] [--batch-sizes 8,16]

Prints the wall time of one-at-a-time generation and of each batch size, the speed-ups, and whether the outputs
are identical to one-at-a-time (they must be). Goal: ≥ 5× with identical outputs.
"""

import argparse
import time

from ada_slm.run.evaluate import generate_ids, load_model
from ada_slm.run.suites import GenerationSettings, load_suite, subset


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--suite", default="multilang")
    ap.add_argument("--limit", type=int, default=None, help="N prompts spread over the suite (default: all)")
    ap.add_argument("--batch-sizes", default="8,16", help="comma-separated batch sizes to compare with batch 1")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    model, tok = load_model(args.base, None)
    suite, _ = load_suite(args.suite)
    prompts = [i.prompt for i in subset(suite.items, args.limit)]
    sizes = [1] + [int(b) for b in args.batch_sizes.split(",") if int(b) != 1]
    results = {}
    for bs in sizes:
        settings = GenerationSettings(batch_size=bs, max_new_tokens=args.max_new_tokens)
        start = time.perf_counter()
        ids = generate_ids(model, tok, prompts, settings)
        results[bs] = (time.perf_counter() - start, ids)
    seq_s, seq_ids = results[1]
    print(f"model {args.base}, suite {args.suite}, {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}")
    print(f"{'batch':>8}{'wall s':>10}{'prompts/s':>12}{'speed-up':>10}{'identical to batch 1':>24}")
    for bs, (secs, ids) in results.items():
        same = sum(a == b for a, b in zip(seq_ids, ids, strict=True))
        print(f"{bs:>8}{secs:>10.1f}{len(prompts) / secs:>12.2f}{seq_s / secs:>9.2f}×{same:>18}/{len(prompts)}")


if __name__ == "__main__":
    main()
