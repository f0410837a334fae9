"""Evaluation: suite (data) -> batched greedy generation -> per-item outputs -> metrics with bootstrap CIs.

Every arm of a study is scored the same way: same suite, same generation settings, same eval batch size (the
suite and the settings are suites.py's), and the per-item outputs are kept (eval.jsonl) so comparisons can be
paired by item. The base model without an adapter is scored exactly like a trained arm, so every study can report
the untrained floor.

Generation is greedy with the KV cache, prompts left-padded in batches (sorted by length to waste little
padding) and stopped at the end-of-turn token; the outputs equal one-prompt-at-a-time `generate` (tested).
With an `EvalCache` (eval_cache.py) an evaluation whose generation was already paid for — the base arm's other
seeds, a run re-evaluated after a crash — reuses the stored outputs; `rescore` re-scores stored outputs with
today's metrics without a model (eval_cache.rescore).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ada_slm.errors import UserError
from ada_slm.files import write_json, write_jsonl
from ada_slm.run import models
from ada_slm.run.metrics import METRICS, SEED_METRICS, score, seed_score
from ada_slm.run.suites import GenerationSettings, SuiteItem, load_suite, subset

# Part of every eval-cache key: bump it whenever the code that turns prompts into output ids changes
# (render_prompt, encode_prompts, generate_ids), so outputs of older code are never reused.
GENERATION_VERSION = "1"


# ------------------------------------------------------------------------------------------- generation
def render_prompt(tokenizer, prompt: str | list[dict], chat_template: bool) -> str:
    """A user prompt (or a whole message list) as the text the model continues."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    if chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def encode_prompts(tokenizer, prompts: Sequence[str | list[dict]], chat_template: bool) -> list[list[int]]:
    """The input ids generation continues, one list per prompt."""
    texts = [render_prompt(tokenizer, p, chat_template) for p in prompts]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@torch.no_grad()
def generate(
    model, tokenizer, prompts: list[str], settings: GenerationSettings, progress=None, sample_index: int = 0
) -> list[str]:
    """Completions of `prompts` as text (special tokens removed, whitespace stripped)."""
    ids = generate_ids(model, tokenizer, prompts, settings, progress, sample_index)
    return [tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids]


@torch.no_grad()
def generate_ids(
    model, tokenizer, prompts: list[str], settings: GenerationSettings, progress=None, sample_index: int = 0
) -> list[list[int]]:
    """New-token ids for `prompts` (up to and including end-of-turn), batched `settings.batch_size` at a
    time (left-padded); trailing padding removed."""
    device = next(model.parameters()).device
    encoded = encode_prompts(tokenizer, prompts, settings.chat_template)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    outputs: list[list[int]] = [[] for _ in encoded]
    pad_id = tokenizer.pad_token_id
    for start in range(0, len(order), settings.batch_size):
        batch = order[start : start + settings.batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            mask[row, width - n :] = 1
        sampling = {}
        if settings.mode == "seed":  # seeded per batch, so a rerun draws the same samples
            torch.manual_seed(settings.seed * 1_000_003 + sample_index * 10_007 + start)
            sampling = {
                "do_sample": True,
                "temperature": settings.temperature,
                "repetition_penalty": settings.repetition_penalty,
                "top_k": 0,
                "top_p": 1.0,
            }
        else:
            sampling = {"do_sample": False}
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
            use_cache=True,
            **sampling,
        )
        for row, i in enumerate(batch):
            new = generated[row, width:].tolist()
            if tokenizer.eos_token_id in new:  # after end-of-turn, generate only pads finished rows
                new = new[: new.index(tokenizer.eos_token_id) + 1]
            outputs[i] = new
        if progress:
            progress(len(batch))
    return outputs


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str]) -> float | None:
    """exp(mean next-token negative log-likelihood) over all tokens of the held-out AGL texts."""
    if not texts:
        return None
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
        if ids.size(1) < 2:
            continue
        logits = model(input_ids=ids).logits
        total += torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="sum").item()
        count += ids.size(1) - 1
    return math.exp(total / count) if count else None


# ------------------------------------------------------------------------------------------- summaries
def bootstrap_ci(values: list[float], seed: int = 0, n_resamples: int = 2000) -> tuple[float, float] | None:
    """95 % percentile bootstrap CI of the mean over items (scipy)."""
    from scipy.stats import bootstrap  # heavy: most callers of this module never bootstrap

    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    res = bootstrap(
        (arr,),
        np.mean,
        confidence_level=0.95,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(rows: list[dict], metric_names=METRICS, key: str = "metrics") -> dict:
    """Means with CIs per metric, and per-language means."""
    out: dict[str, dict] = {"metrics": {}, "by_lang": {}}
    for m in metric_names:
        vals = [r[key][m] for r in rows if r[key].get(m) is not None]
        ci = bootstrap_ci(vals)
        out["metrics"][m] = {
            "mean": float(np.mean(vals)) if vals else None,
            "n": len(vals),
            "ci_low": ci[0] if ci else None,
            "ci_high": ci[1] if ci else None,
        }
    for lang in sorted({r["lang"] for r in rows}):
        sub = [r for r in rows if r["lang"] == lang]
        out["by_lang"][lang] = {"n": len(sub)}
        for m in metric_names:
            vals = [r[key][m] for r in sub if r[key].get(m) is not None]
            out["by_lang"][lang][m] = float(np.mean(vals)) if vals else None
    return out


def _average_samples(rows: list[dict]) -> list[dict]:
    """One row per item: metric values averaged over its samples (CIs are then over items)."""
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r)
    out = []
    for group in by_id.values():
        merged = {k: group[0][k] for k in ("id", "lang", "category", "template") if k in group[0]}
        for key in ("metrics", "seed_metrics"):
            merged[key] = {}
            for m in group[0][key]:
                vals = [g[key][m] for g in group if g[key][m] is not None]
                merged[key][m] = float(np.mean(vals)) if vals else None
        out.append(merged)
    return out


def _sampling_spread(rows: list[dict], samples: int) -> dict:
    """Per metric: the suite mean of each sample draw, and their spread — the noise of sampled generation."""
    out: dict[str, dict] = {}
    for key, names in (("metrics", METRICS), ("seed_metrics", SEED_METRICS)):
        out[key] = {}
        for m in names:
            means = []
            for k in range(samples):
                vals = [r[key][m] for r in rows if r.get("sample") == k and r[key][m] is not None]
                means.append(float(np.mean(vals)) if vals else None)
            valid = [v for v in means if v is not None]
            out[key][m] = {
                "per_sample_means": means,
                "sd": float(np.std(valid, ddof=1)) if len(valid) > 1 else None,
                "min": min(valid) if valid else None,
                "max": max(valid) if valid else None,
            }
    return out


def load_model(base: str, adapter: str | None):
    """Base model (+ adapter, merged for speed) and tokenizer, in eval mode."""
    model, tokenizer, _ = models.load(base)
    if adapter:
        from peft import PeftModel  # heavy: only an evaluation with an adapter loads peft

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise UserError(f"--adapter {adapter}: not a PEFT adapter directory (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    return model, tokenizer


def _generate_samples(model, tokenizer, prompts: list[str], settings: GenerationSettings, progress) -> list:
    return [
        generate_ids(model, tokenizer, prompts, settings, progress=progress, sample_index=k)
        for k in range(settings.samples if settings.mode == "seed" else 1)
    ]


def _cached_or_generated(
    model, tokenizer, items: list[SuiteItem], settings: GenerationSettings, out_dir: Path, progress, cache
) -> tuple[list, dict | None, str | None]:
    """(output ids per sample per item, where they came from if the cache had them, cache key)."""
    prompts = [i.prompt for i in items]
    if cache is None:
        return _generate_samples(model, tokenizer, prompts, settings, progress), None, None
    material = cache.material(
        model, tokenizer, [i.id for i in items], encode_prompts(tokenizer, prompts, settings.chat_template), settings
    )
    key = cache.key(material)
    try:
        lock = cache.lock(key)
        lock.acquire()  # a concurrent evaluation of the same key waits for this one, then hits
    except (OSError, UserError) as e:  # the cache is a saving, never a reason to fail an evaluation
        print(f"warning: eval cache {cache.directory} not usable ({e}); generating without it", file=sys.stderr)
        return _generate_samples(model, tokenizer, prompts, settings, progress), None, None
    try:
        entry = cache.load(material, len(tokenizer))
        if entry is not None:
            return (
                entry.outputs,
                {
                    "run": entry.generated_by,
                    "generated_at": entry.generated_at,
                    "generation_s": entry.generation_s,
                    "key": key,
                },
                key,
            )
        start = time.perf_counter()
        outputs = _generate_samples(model, tokenizer, prompts, settings, progress)
        try:
            cache.store(material, outputs, cache.label(out_dir), time.perf_counter() - start)
        except (OSError, UserError) as e:  # a full or read-only cache disk must not lose the outputs just made
            print(f"warning: eval cache {cache.directory}: outputs not kept ({e})", file=sys.stderr)
    finally:
        lock.release()
    return outputs, None, key


def item_row(item: SuiteItem, output: str, sample: int | None) -> dict:
    row: dict[str, Any] = {
        "id": item.id,
        "lang": item.lang,
        "category": item.category,
        "prompt": item.prompt,
        "output": output,
        "metrics": score(output, item.model_dump()),
        "seed_metrics": seed_score(output),
    }
    if item.template is not None:  # the item's cluster in the analysis
        row["template"] = item.template
    if sample is not None:
        row["sample"] = sample
    return row


def score_rows(rows: list[dict], settings: GenerationSettings) -> dict:
    """The summary's metric parts: means and CIs over items (samples averaged), seed scoring, sampling spread."""
    per_item = _average_samples(rows)
    out = {**summarize(per_item), "seed_scoring": summarize(per_item, SEED_METRICS, key="seed_metrics")}
    if settings.mode == "seed" and settings.samples > 1:
        out["sampling"] = _sampling_spread(rows, settings.samples)
    return out


def evaluate(
    base: str,
    adapter: str | None,
    suite_name: str,
    settings: GenerationSettings,
    out_dir: str | Path,
    limit: int | None = None,
    progress=None,
    model_and_tokenizer=None,
    cache=None,
) -> dict:
    """Score one model on a suite; writes <out_dir>/eval.jsonl and <out_dir>/eval_summary.json. With `cache`
    (an eval_cache.EvalCache) the outputs come from it when it holds this exact generation (the summary's
    `cached_from` then names the run that generated them), else they are generated and stored in it."""
    from transformers.utils import logging as hf_logging  # heavy: loaded with the model, not with this module

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    suite, suite_path = load_suite(suite_name)
    items = subset(suite.items, limit)
    model, tokenizer = model_and_tokenizer or load_model(base, adapter)
    model.eval()
    out_dir = Path(out_dir)
    start = time.perf_counter()
    ids, cached_from, key = _cached_or_generated(model, tokenizer, items, settings, out_dir, progress, cache)
    rows = []
    for k, sample in enumerate(ids):
        for item, output in zip(items, sample, strict=True):
            rows.append(
                item_row(
                    item,
                    tokenizer.decode(output, skip_special_tokens=True).strip(),
                    k if settings.mode == "seed" else None,
                )
            )
    gen_s = time.perf_counter() - start  # on a hit: the time this evaluation spent, not the stored generation's
    summary = {
        "suite": suite.name,
        "suite_path": str(suite_path),
        "n_items": len(items),
        "limit": limit,
        "base": base,
        "adapter": adapter,
        "arm": "base" if adapter is None else Path(adapter).parent.name,
        "generation": settings.model_dump(),
        "generation_s": gen_s,
        "items_per_s": None if cached_from else len(rows) / gen_s,
        "cached_from": cached_from,
        "eval_cache": {"dir": str(cache.directory), "key": key} if cache else None,
        "perplexity": perplexity(model, tokenizer, suite.perplexity_texts),
        **score_rows(rows, settings),
    }
    write_jsonl(out_dir / "eval.jsonl", rows)
    write_json(out_dir / "eval_summary.json", summary)
    return summary
