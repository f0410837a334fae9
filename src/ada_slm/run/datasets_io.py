"""Your own data, used: one split of a source as rows (data_formats reads and normalises them), a corpus checked
for `data validate`, the training and held-out rows of a DataConfig, their hash, and tokens with the loss mask.

Every row is {"id", "category", "lang", "messages", "train_on"}, where `train_on[i]` says whether message i carries
loss, or {"id", "category", "lang", "text"} (see data_formats for the formats and the loss rules).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ada_slm.agl.builder import CATEGORIES, build_corpus
from ada_slm.agl.quality import example_errors
from ada_slm.errors import UserError
from ada_slm.run.data_formats import RowError, examples, read_records

IGNORE = -100


def read_rows(
    source: str, fmt: str = "auto", columns: dict | None = None, split: str = "train", split_field: str = "data.split"
) -> tuple[list[dict], str]:
    """(rows, format) of one split of a source; the first bad example is a UserError naming where it is."""
    rows, found = [], fmt
    for where, row, row_format in examples(read_records(source, split, columns, split_field), fmt):
        if isinstance(row, RowError):
            raise UserError(f"{where}: {row}")
        rows.append(row)
        found = row_format  # what auto detected: the format of the examples read
    if not rows:
        raise UserError(f"{source}: no examples")
    return rows, found


def validate(
    source: str, fmt: str = "auto", columns: dict | None = None, split: str = "train", check_agl: bool = True
) -> tuple[int, list[str], str]:
    """(examples, problems as 'WHERE: reason', what was checked). A corpus of the AGL builder (chat messages,
    every category one of AGL.md's) is held to the builder's schema (id, category, lang) and, with
    `check_agl`, every answer must parse as AGL; any other corpus to the rules of its format. Explicit ids
    must be unique in both."""
    records = read_records(source, split, columns, "--split")
    categories = {obj.get("category") for _, obj in records} - {None}
    agl = (
        fmt == "auto"
        and not columns
        and categories
        and categories <= set(CATEGORIES)
        and all("messages" in obj for _, obj in records)
    )
    problems, trained, formats = [], 0, set()
    if agl:
        for where, obj in records:
            problems += [f"{where}: {e}" for e in example_errors(obj, check_agl=check_agl)]
        what = "AGL corpus: builder schema" + (", every answer parses as AGL" if check_agl else "")
    else:
        for where, row, found in examples(records, fmt):
            if isinstance(row, RowError):
                problems.append(f"{where}: {row}")
            else:
                formats.add(found)
                trained += sum(row.get("train_on", ()))
        kind = "/".join(sorted(formats)) or fmt
        what = f"{kind}; {trained} assistant turns carry loss" if kind != "text" else "text; loss on every token"
    first_seen: dict[str, str] = {}
    for where, obj in records:
        if isinstance(obj.get("id"), (str, int)) and not isinstance(obj["id"], bool):
            if str(obj["id"]) in first_seen:
                problems.append(f"{where}: duplicate id {str(obj['id'])!r} (first at {first_seen[str(obj['id'])]})")
            first_seen.setdefault(str(obj["id"]), where)
    return len(records), problems, what


# ------------------------------------------------------------------------------------------------ corpus
def sibling_val_path(path: str) -> str | None:
    """data/chat.jsonl -> data/chat.val.jsonl, if that file exists (what `data build --val-fraction` writes)."""
    p = Path(path)
    if not p.is_file() or not p.suffix:
        return None
    sibling = p.with_name(f"{p.stem}.val{p.suffix}")
    return str(sibling) if sibling.is_file() else None


def hold_out(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): round(fraction × n) examples drawn with `seed`, both sides in file order. Nothing is
    held out when that rounds to 0 or would leave no training example."""
    n_val = round(len(rows) * fraction)
    if n_val == 0 or n_val >= len(rows):
        return rows, []
    chosen = set(random.Random(f"{seed}:held-out").sample(range(len(rows)), n_val))
    return [r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen]


def load_rows(data) -> tuple[list[dict], list[dict], str]:
    """(train rows, held-out rows, description of the source) for a DataConfig: the builder's corpus, or
    `data.path` in any format above with its held-out rows from val_split, val_path, the <name>.val.<ext>
    sibling or, failing those, val_fraction of its examples."""
    if data.path is None:
        corpus = build_corpus(data.size, data.mix, data.seed, data.val_fraction, val_size=data.val_size)
        fixed = f", val_size={data.val_size}" if data.val_size else ""
        return corpus.train, corpus.val, f"builder(size={data.size}, mix={data.mix}, seed={data.seed}{fixed})"
    train, fmt = read_rows(data.path, data.format, data.columns, data.split)
    val_path = data.val_path or (sibling_val_path(data.path) if data.val_split is None else None)
    if data.val_split is not None:
        val, _ = read_rows(data.path, data.format, data.columns, data.val_split, "data.val_split")
        held = f"split {data.val_split}"
    elif val_path:
        val, _ = read_rows(val_path, data.format, data.columns)
        held = val_path
    else:
        train, val = hold_out(train, data.val_fraction, data.seed)
        held = f"{len(val)} drawn with seed {data.seed}" if val else "none"
    split = f"[{data.split}]" if data.split != "train" else ""
    return train, val, f"{data.path}{split} ({fmt}; held out: {held})"


def default_train_on(messages: list[dict]) -> list[bool]:
    return [m["role"] == "assistant" for m in messages]


def rows_hash(rows: list[dict]) -> str:
    """sha256 of what is trained on: the messages (and a loss mask other than 'every assistant turn'), or the
    text. Builder rows hash exactly as before user formats existed."""
    h = hashlib.sha256()
    for r in rows:
        if "messages" not in r:
            h.update(json.dumps({"text": r["text"]}, ensure_ascii=False).encode())
            continue
        h.update(json.dumps(r["messages"], ensure_ascii=False, sort_keys=True).encode())
        if r.get("train_on", default_train_on(r["messages"])) != default_train_on(r["messages"]):
            h.update(json.dumps({"train_on": r["train_on"]}).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ tokens
@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss; the token itself where the model learns to predict it


def chat_tokens(row: dict, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids and labels of a conversation. For each assistant turn up to the last one that carries loss:
    the chat template's rendering of everything before it (with the generation prompt) is context, masked; the
    turn's content + the end-of-turn token carry loss if `train_on` says so. Each piece is the template's text
    after the previous turn's end-of-turn, so the template must render an assistant turn as its content then
    the eos token (ChatML and LFM2 do); a template that does not is an error, not a silent mis-mask. A
    single-turn example gives exactly what the recipe gave before multi-turn support."""
    messages = row["messages"]
    train_on = row.get("train_on") or default_train_on(messages)
    last = max(i for i, trained in enumerate(train_on) if trained)
    eos_id, eos = tokenizer.eos_token_id, tokenizer.eos_token
    ids, labels, rendered = [], [], ""
    for i in (i for i in range(last + 1) if messages[i]["role"] == "assistant"):
        prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        if not prefix.startswith(rendered):
            raise UserError(
                f"example {row.get('id')}: the model's chat template does not render an assistant "
                f"turn as its text followed by {eos!r}, so the loss of turn {i} cannot be masked; "
                "train this model on single-turn examples"
            )
        context = tokenizer(prefix[len(rendered) :], add_special_tokens=False)["input_ids"]
        answer = tokenizer(messages[i]["content"], add_special_tokens=False)["input_ids"] + [eos_id]
        ids += context + answer
        labels += [IGNORE] * len(context) + (answer if train_on[i] else [IGNORE] * len(answer))
        rendered = prefix + messages[i]["content"] + eos
    return ids, labels


def text_tokens(text: str, tokenizer) -> tuple[list[int], list[int]]:
    """Language modelling: the tokenizer's own special tokens (a BOS where it adds one) + end-of-text; every
    token is a target (the first predicts nothing: no position precedes it)."""
    ids = tokenizer(text)["input_ids"]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids = ids + [tokenizer.eos_token_id]
    return ids, list(ids)


def tokenize(rows: list[dict], tokenizer, max_length: int) -> tuple[list[Example], int]:
    """Every row as token ids + labels, cut at max_length. Returns (examples, number dropped because not one
    target token fit in max_length)."""
    out, dropped = [], 0
    for row in rows:
        ids, labels = chat_tokens(row, tokenizer) if "messages" in row else text_tokens(row["text"], tokenizer)
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels[1:]):
            dropped += 1
            continue
        out.append(Example(ids, labels))
    return out, dropped
