"""Use what you trained: pick a model (base + adapter, a run, or a study arm), chat with it, run it over a file
of prompts, or export a merged standalone model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ada_slm.errors import UserError
from ada_slm.files import check_writable_dir, iter_jsonl
from ada_slm.run import records
from ada_slm.run.evaluate import generate, load_model
from ada_slm.run.exports import check_target, write_folder
from ada_slm.run.metrics import score
from ada_slm.study.spec import expand, load_study, record_of


def from_run(run_dir: str | Path) -> tuple[str, str | None]:
    """(base, adapter dir) of a finished training or study run."""
    record = records.read_record(run_dir)
    if record is None:
        raise UserError(f"--run {run_dir}: no record.json (not a run directory)")
    if not records.is_trained(record):
        raise UserError(f"--run {run_dir}: run is not complete")
    base = records.base_model(record)
    if base is None:
        raise UserError(f"--run {run_dir}: the record names no base model")
    return base, records.adapter_dir(record)


def _metric_mean(record: records.RunRecord, metric: str) -> float:
    assert record.eval is not None  # a complete record holds its evaluation
    return record.eval.metrics[metric]["mean"] or 0.0


def from_study(
    study_file: str, arm: str, seed: int | None, scale: str | None, results: Path, exports: Path
) -> tuple[str, str | None, int]:
    """(base, adapter dir, seed) of a study arm: the given seed, or the seed with the best decision metric."""
    study = load_study(study_file)
    specs = expand(study, study_file, scale, None, None, results, exports)
    arms = sorted({s.arm for s in specs})
    chosen = [s for s in specs if s.arm == arm]
    if not chosen:
        raise UserError(f"--arm {arm!r}: not an arm of {study.name} ({', '.join(arms)})")
    done = [(s, r) for s in chosen if records.is_complete(r := record_of(s))]
    if seed is not None:
        done = [(s, r) for s, r in done if s.seed == seed]
    if not done:
        raise UserError(
            f"{study.name}/{arm}: no finished run"
            + (f" for seed {seed}" if seed is not None else "")
            + " (run `ada-slm study run` first)"
        )
    metric = study.decision.metric if study.decision else "agl_awareness"
    spec, record = max(done, key=lambda sr: (_metric_mean(sr[1], metric), -sr[0].seed))
    return spec.base, records.adapter_dir(record), spec.seed


def load(base: str, adapter: str | None):
    if adapter is not None and not Path(adapter).is_dir():
        raise UserError(f"--adapter {adapter}: no such directory")
    return load_model(base, adapter)


def sampling_kwargs(temperature: float, top_p: float) -> dict:
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


@torch.no_grad()
def chat(model, tokenizer, read_line, write, max_new_tokens: int, temperature: float, top_p: float, seed: int):
    """A multi-turn chat. `read_line()` returns the next user line or None at the end; `write(text)` prints.
    Commands: /reset clears the history, /exit ends."""
    from transformers import TextStreamer  # heavy: only chat streams

    class _Stream(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            write(text + ("\n" if stream_end else ""))

    torch.manual_seed(seed)
    history: list[dict] = []
    device = next(model.parameters()).device
    while True:
        line = read_line()
        if line is None or line.strip() == "/exit":
            break
        line = line.strip()
        if not line:
            continue
        if line == "/reset":
            history.clear()
            write("(history cleared)\n")
            continue
        history.append({"role": "user", "content": line})
        text = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
        streamer = _Stream(tokenizer, skip_prompt=True, skip_special_tokens=True)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
            **sampling_kwargs(temperature, top_p),
        )
        answer = tokenizer.decode(out[0, ids.size(1) :], skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": answer})


def read_prompts(path: str | Path) -> list[dict]:
    """[{id, prompt | messages}] from a .txt (one prompt per line) or .jsonl ({"prompt"} or {"messages"}) file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {path}: no such file")
    out = []
    if path.suffix == ".jsonl":
        for lineno, obj in iter_jsonl(path):
            item_id = str(obj.get("id", lineno))
            if isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
                out.append({"id": item_id, "prompt": obj["prompt"]})
            elif isinstance(obj.get("messages"), list) and obj["messages"]:
                messages = obj["messages"]
                if messages[-1].get("role") == "assistant":
                    messages = messages[:-1]  # a training example: generate the answer
                out.append({"id": item_id, "messages": messages})
            else:
                raise UserError(f'{path}:{lineno}: expected a non-empty "prompt" or "messages"')
    else:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                out.append({"id": str(lineno), "prompt": line.strip()})
    if not out:
        raise UserError(f"--prompts {path}: no prompts")
    ids = [p["id"] for p in out]
    if len(set(ids)) != len(ids):
        raise UserError(f"--prompts {path}: duplicate ids")
    return out


def generate_file(model, tokenizer, prompts: list[dict], out: Path, settings, progress=None) -> int:
    """Append one line per prompt not yet in `out` (resumable); returns how many were generated."""
    if out.exists() and not out.is_file():
        raise UserError(f"--out {out}: not a regular file (a folder, FIFO or device); give a .jsonl file")
    check_writable_dir(out.parent, "--out")
    done = set()
    if out.is_file():
        for _, obj in iter_jsonl(out):
            done.add(str(obj.get("id")))
    todo = [p for p in prompts if p["id"] not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), settings.batch_size):
            chunk = todo[start : start + settings.batch_size]
            inputs = [p.get("messages") or p["prompt"] for p in chunk]
            outputs = generate(model, tokenizer, inputs, settings)
            for p, text in zip(chunk, outputs, strict=True):
                row = {**p, "output": text, "settings": settings.model_dump(), "metrics": score(text)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()  # every finished batch survives a kill
            if progress:
                progress(len(chunk))
    return len(todo)


def export_merged(base: str, adapter: str, out: Path) -> Path:
    """Base + adapter merged into a standalone HF model directory (weights, tokenizer, chat template)."""
    owner = f"{Path(adapter).resolve()} on {base}"  # an earlier merge of the same pair may be replaced, nothing else
    check_target(out, "merged model", owner, "--out")  # before loading: refuse someone else's folder
    model, tokenizer = load(base, adapter)  # load_model merges the adapter

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_folder(out, "merged model", owner, "--out", fill)
    return out
