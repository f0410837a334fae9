"""Write a randomly initialised model with LFM2-350M's published shape, for throughput measurements offline.

    python bench/lfm2_350m_shaped.py OUT_DIR [--tokenizer DIR]

Throughput does not depend on the weights, only on the shape: 16 layers (10 short-convolution blocks, 6
grouped-query attention blocks at layers 2, 5, 8, 10, 12, 14), hidden 1024, 16 heads / 8 KV heads, FFN 6656
(auto-adjusted as in the release), vocabulary 65,536, tied embeddings — about 354 M parameters. The tokenizer
is SmolLM2's (BPE, 49,152 entries, a subset of the vocabulary), from the embedded model or --tokenizer, so
sequence lengths are those of a real subword tokenizer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Lfm2Config

LFM2_350M = dict(
    vocab_size=65536,
    hidden_size=1024,
    intermediate_size=6656,
    num_hidden_layers=16,
    num_attention_heads=16,
    num_key_value_heads=8,
    max_position_embeddings=128_000,
    block_auto_adjust_ff_dim=True,
    block_ffn_dim_multiplier=1.0,
    block_multiple_of=256,
    full_attn_idxs=[2, 5, 8, 10, 12, 14],
    tie_word_embeddings=True,
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--tokenizer", help="tokenizer directory (default: the embedded SmolLM2's)")
    args = ap.parse_args()
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from ada_slm.run import models

        tokenizer = AutoTokenizer.from_pretrained(models.resolve("smollm2-135m"))
    config = Lfm2Config(
        **LFM2_350M,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(args.out_dir)
    tokenizer.save_pretrained(args.out_dir)
    print(f"{args.out_dir}: LFM2-350M-shaped, {n / 1e6:.0f} M parameters, random weights")


if __name__ == "__main__":
    main()
