"""Batched vs one-prompt-at-a-time greedy generation over an eval suite, same model, same process.

    python bench/eval_throughput.py [--base smollm2-135m] [--suite multilang] [--limit N] [--batch-size 8]

Prints wall time of each, the speed-up, and whether the outputs are identical (they must be).
"""

import argparse
import time

from ada_slm.evaluate import GenerationSettings, generate_ids, load_model, load_suite


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--suite", default="multilang")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    model, tok = load_model(args.base, None)
    suite, _ = load_suite(args.suite)
    prompts = [i.prompt for i in suite.items][: args.limit]
    results = {}
    for label, bs in (("sequential (batch 1)", 1), (f"batched (batch {args.batch_size})", args.batch_size)):
        settings = GenerationSettings(batch_size=bs, max_new_tokens=args.max_new_tokens)
        start = time.perf_counter()
        ids = generate_ids(model, tok, prompts, settings)
        results[label] = (time.perf_counter() - start, ids)
    (seq_label, (seq_s, seq_ids)), (bat_label, (bat_s, bat_ids)) = results.items()
    same = sum(a == b for a, b in zip(seq_ids, bat_ids))
    print(f"model {args.base}, suite {args.suite}, {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}")
    print(f"{seq_label:>24}: {seq_s:8.1f} s  ({len(prompts) / seq_s:.2f} prompts/s)")
    print(f"{bat_label:>24}: {bat_s:8.1f} s  ({len(prompts) / bat_s:.2f} prompts/s)")
    print(f"{'speed-up':>24}: {seq_s / bat_s:8.2f} ×")
    print(f"{'identical outputs':>24}: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
