"""Your own data: read a corpus in the common fine-tuning formats, normalise every example, mask the loss.

Sources (`data.path`, `data.val_path`):
    .jsonl / .json      read here, line by line, so that every error names FILE:LINE (a .json file may also be
                        one array of objects)
    .parquet / .csv     through `datasets`
    .arrow              one Arrow file (a shard that `save_to_disk` wrote)
    a folder            a `save_to_disk` folder (Dataset or DatasetDict) or a folder of data files (`datasets`
                        finds the splits)
    org/name            a Hub dataset already in the local Hugging Face cache; nothing is downloaded

Formats, detected per file from the fields of its examples (or named by `data.format`):
    messages            {"messages": [{"role": "user", "content": …}, {"role": "assistant", "content": …}, …]}
    sharegpt            {"conversations": [{"from": "human", "value": …}, {"from": "gpt", "value": …}, …]}
    prompt_completion   {"prompt": …, "completion": …}: strings, or message lists as TRL defines them
    alpaca              {"instruction": …, "input": …, "output": …} (+ optional "system", "history")
    text                {"text": …}: language modelling, only when asked for (`data.format: text`)

Every example becomes a row {"id", "category", "lang", "messages", "train_on"}, where `train_on[i]` says whether
message i carries loss, or {"id", "category", "lang", "text"}. Loss is on every assistant turn and its
end-of-turn token, except an assistant message with "weight": 0 (OpenAI's fine-tuning format) and the assistant
turns of a prompt/completion example's *prompt* (TRL trains on the completion only). A plain-string
prompt/completion becomes one user and one assistant turn: ada-slm always trains and evaluates through the chat
template. `id`, `category` and `lang` are optional: a missing id is derived from the content, category and
lang are "unknown".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ada_slm.errors import UserError
from ada_slm.files import iter_jsonl, parse_json, read_utf8

IGNORE = -100
FORMATS = {  # format -> the fields that identify it
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                     "system": "system"}
FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
UNKNOWN = "unknown"


class RowError(ValueError):
    """What is wrong with one example; the caller adds where the example is."""


# ------------------------------------------------------------------------------------------------ sources
def read_records(source: str, split: str = "train", columns: dict | None = None,
                 split_field: str = "data.split") -> list[tuple[str, dict]]:
    """(where, example) for every example of one split of a source, with `columns` renamed to our fields.
    `where` is FILE:LINE for JSON lines, 'SOURCE row N' (1-based) for everything read through `datasets`."""
    path = Path(source).expanduser()
    kind = FILE_KINDS.get(path.suffix.lower())
    if path.is_file():
        if kind is None:
            raise UserError(f"{source}: unknown kind of file '{path.suffix}' (read: {', '.join(FILE_KINDS)}, "
                            "a save_to_disk or data folder, or a Hub dataset id)")
        splits = {"train": None}
    elif path.is_dir():
        splits = _folder_splits(path, source)
    elif path.exists():  # a FIFO, a device such as /dev/zero, a socket: reading it could block or never end
        raise UserError(f"{source}: not a regular file (a FIFO, device or socket); give a data file or folder")
    elif kind is not None or source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise UserError(f"{source}: no such file")
    else:
        splits = _folder_splits(_hub_snapshot(source), source)
    if split not in splits:
        raise UserError(f"{split_field} {split!r}: {source} has no such split (splits: {', '.join(splits)})")
    if splits[split] is not None:
        dataset, name = splits[split], f"{source}[{split}]" if len(splits) > 1 else source
    elif kind == "json":
        return _renamed(_read_json(path), columns or {})
    else:
        dataset, name = _read_file(path, kind), source
    for field, column in (columns or {}).items():
        if column not in dataset.column_names:
            raise UserError(f"{source}: data.columns.{field}: no column {column!r} "
                            f"(columns: {', '.join(dataset.column_names)})")
    return _renamed([(f"{name} row {i}", row) for i, row in enumerate(dataset.to_list(), 1)], columns or {})


def _renamed(records: list[tuple[str, dict]], columns: dict) -> list[tuple[str, dict]]:
    """Each example with field <- column for every `columns` entry (the field's own column, if any, gives way)."""
    if not columns:
        return records
    out = []
    for where, obj in records:
        for field, column in columns.items():
            if column not in obj:
                raise UserError(f"{where}: data.columns.{field}: no field {column!r} "
                                f"(fields: {', '.join(obj) or 'none'})")
        renamed = {k: v for k, v in obj.items() if k not in columns}
        renamed.update({field: obj[column] for field, column in columns.items()})
        out.append((where, renamed))
    return out


def _read_json(path: Path) -> list[tuple[str, dict]]:
    """JSON lines, or (a .json file starting with '[') one array of objects; every way the JSON can fail to
    read (syntax, not UTF-8, deep nesting, huge integers, a lone surrogate) is one line from files.parse_json."""
    text = read_utf8(path) if path.suffix.lower() == ".json" else ""
    if not text.lstrip().startswith("["):
        return [(f"{path}:{lineno}", obj) for lineno, obj in iter_jsonl(path)]
    items = parse_json(text, str(path))
    if not isinstance(items, list):  # '[' begins the file, yet it parsed: '[]' then nothing else is not possible
        raise UserError(f"{path}: expected a JSON array of objects")
    out = []
    for i, obj in enumerate(items, 1):
        if not isinstance(obj, dict):
            raise UserError(f"{path}: item {i}: expected a JSON object, got {type(obj).__name__}")
        out.append((f"{path}: item {i}", obj))
    return out


def _datasets_call(source: str, load):
    """Run a `datasets` loader quietly; its failures become one line naming the source."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        return load(datasets)
    except (datasets.exceptions.DatasetsError, ValueError, OSError, TypeError) as e:
        cause = e.__cause__ or e  # DatasetGenerationError says only "an error occurred"; its cause says what
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UserError(f"{source}: cannot read it ({reason})") from None


def _read_file(path: Path, kind: str):
    if kind == "arrow":
        return _datasets_call(str(path), lambda ds: ds.Dataset.from_file(str(path)))
    if kind == "parquet":
        return _datasets_call(str(path), lambda ds: ds.load_dataset("parquet", data_files=str(path), split="train"))
    text = read_utf8(path)  # pandas would name neither the line nor the byte
    header = next(csv.reader(io.StringIO(text)), [])
    # every cell is text: pandas would turn an answer column of numbers into integers
    return _datasets_call(str(path), lambda ds: ds.load_dataset(
        "csv", data_files=str(path), split="train",
        features=ds.Features({name: ds.Value("string") for name in header})))


def _folder_splits(folder: Path, source: str) -> dict:
    """split name -> Dataset of a save_to_disk folder, or of a folder of data files (a Hub snapshot is one)."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        loaded = _datasets_call(source, lambda ds: ds.load_from_disk(str(folder)))
        return dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
    return dict(_datasets_call(source, lambda ds: ds.load_dataset(str(folder))))


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise UserError(f"{repo_id}: no such file or folder, and not a dataset in the local Hugging Face cache "
                        f"(ada-slm never downloads at run time): fetch it with `hf download --repo-type dataset "
                        f"{repo_id}`") from None


# ------------------------------------------------------------------------------------------------ formats
def detect(obj: dict) -> str:
    """The format whose identifying fields the example has. A `text` field next to another format's fields is
    taken for a rendered copy (many Hub datasets carry one) and ignored."""
    present = {k for k, v in obj.items() if v is not None}
    found = [f for f, keys in FORMATS.items() if all(k in present for k in keys)]
    chat = [f for f in found if f != "text"]
    if len(chat) > 1:
        raise RowError(f"ambiguous: it has the fields of both {chat[0]} and {chat[1]}; set data.format")
    if found:
        return (chat or found)[0]
    if {"chosen", "rejected"} & present:
        raise RowError("preference data (chosen/rejected) is for a preference trainer such as DPO; ada-slm "
                       "trains on demonstrations: keep the chosen answer as the completion")
    for fmt, keys in FORMATS.items():
        have = [k for k in keys if k in present]
        if have:
            missing = next(k for k in keys if k not in present)
            absent = f"'{missing}' is null" if missing in obj else f"no '{missing}'"
            raise RowError(f"has '{have[0]}' but {absent} (the {fmt} format needs both)")
    raise RowError(f"no known format (fields: {', '.join(sorted(present)) or 'none'}); expected messages, "
                   "conversations, prompt + completion, instruction + output, or text with data.format: text (other "
                   "column names: map them with data.columns)")


def _turn(m, label: str) -> tuple[dict, bool]:
    """One message -> ({role, content}, carries loss). Reads role/content, or ShareGPT's from/value."""
    if not isinstance(m, dict):
        raise RowError(f"{label} must be an object with 'role' and 'content'")
    keys = ("from", "value") if m.get("from") is not None else ("role", "content")
    if keys[1] in m and m[keys[1]] is None and keys[0] in m:
        raise RowError(f"{label}.{keys[1]} is null; it must be a string")
    m = {k: v for k, v in m.items() if v is not None}  # Parquet structs give every key, absent ones as null
    extra = sorted(set(m) - {*keys, "weight"})
    if extra or any(k not in m for k in keys):
        got = f", got key '{extra[0]}'" if extra else ""
        raise RowError(f"{label} must be an object with '{keys[0]}' and '{keys[1]}' (and 'weight'){got}")
    role = SHAREGPT_SPEAKERS.get(m["from"]) if keys[0] == "from" else m["role"]
    if role not in ROLES:
        known = "human, gpt, system" if keys[0] == "from" else ", ".join(ROLES)
        raise RowError(f"{label}.{keys[0]} must be one of {known}, got {m[keys[0]]!r}")
    content = m[keys[1]]
    if not isinstance(content, str):
        parts = " (multimodal content parts are not read)" if isinstance(content, list) else ""
        raise RowError(f"{label}.{keys[1]} must be a string{parts}")
    if not content.strip():
        raise RowError(f"{label}: empty {role} turn")
    if "weight" in m and (role != "assistant" or m["weight"] not in (0, 1)):
        raise RowError(f"{label}.weight: 0 or 1, on assistant messages only")
    return {"role": role, "content": content}, role == "assistant" and m.get("weight", 1) == 1


def _turns(value, field: str) -> list[tuple[dict, bool, str]]:
    if isinstance(value, str):
        hint = " (a CSV cell holds text: use JSONL or Parquet for conversations)" if value.startswith("[") else ""
        raise RowError(f"field '{field}' must be a list of messages, got a string{hint}")
    if not isinstance(value, list):
        raise RowError(f"field '{field}' must be a list of messages")
    return [(*_turn(m, f"{field}[{i}]"), f"{field}[{i}]") for i, m in enumerate(value)]


def _text(obj: dict, field: str, optional: bool = False) -> str:
    value = obj.get(field, "" if optional else None)
    if not isinstance(value, str) or not (optional or value.strip()):
        raise RowError(f"field '{field}' must be a{'' if optional else ' non-empty'} string")
    return value


def _system(obj: dict) -> list[tuple[dict, bool, str]]:
    """The optional top-level "system" of ShareGPT and Alpaca files (LLaMA-Factory)."""
    return [({"role": "system", "content": _text(obj, "system")}, False, "system")] if "system" in obj else []


def _conversation(obj: dict, fmt: str) -> list[tuple[dict, bool, str]]:
    """(message, carries loss, label for errors) for every turn of a chat-shaped example."""
    if fmt == "messages":
        return _turns(obj["messages"], "messages")
    if fmt == "sharegpt":
        return _system(obj) + _turns(obj["conversations"], "conversations")
    if fmt == "prompt_completion":
        turns = []
        for field, role in (("prompt", "user"), ("completion", "assistant")):
            value = obj[field]
            if isinstance(value, str):
                parts = [(*_turn({"role": role, "content": value}, field), field)]
            else:
                parts = _turns(value, field)
            turns += [(m, trained and field == "completion", label) for m, trained, label in parts]
        return turns
    history = obj.get("history", [])
    if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
        raise RowError("field 'history' must be a list of [instruction, answer] pairs")
    turns = _system(obj)
    for i, (query, answer) in enumerate(history):
        turns += [(*_turn({"role": "user", "content": query}, f"history[{i}][0]"), f"history[{i}][0]"),
                  (*_turn({"role": "assistant", "content": answer}, f"history[{i}][1]"), f"history[{i}][1]")]
    extra = _text(obj, "input", optional=True)
    prompt = _text(obj, "instruction") + ("\n" + extra if extra.strip() else "")  # LLaMA-Factory's joining
    return turns + [(*_turn({"role": "user", "content": prompt}, "instruction"), "instruction"),
                    (*_turn({"role": "assistant", "content": obj["output"]}, "output"), "output")]


def _check_conversation(turns: list[tuple[dict, bool, str]]) -> None:
    if not turns:
        raise RowError("the conversation is empty")
    roles = [m["role"] for m, _, _ in turns]
    for i, (m, _, label) in enumerate(turns):
        if m["role"] == "system" and i > 0:
            raise RowError(f"{label}: a system message only as the first message")
        if m["role"] == "assistant" and "user" not in roles[:i]:
            raise RowError(f"{label}: an assistant turn before any user turn")
    if roles[-1] != "assistant":
        raise RowError(f"the conversation ends on a {roles[-1]} turn ({turns[-1][2]}); the last must be the "
                       "assistant's")
    if not any(trained for _, trained, _ in turns):
        raise RowError("no assistant turn carries loss (every one has weight 0)")


def normalise(obj: dict, fmt: str) -> dict:
    """One example of format `fmt` -> a row (module docstring); RowError if it is not a valid one."""
    nulls = [k for k in FORMATS[fmt] if k in obj and obj[k] is None]
    if nulls:
        raise RowError(f"field '{nulls[0]}' is null (the {fmt} format needs it)")
    obj = {k: v for k, v in obj.items() if v is not None}
    missing = [k for k in FORMATS[fmt] if k not in obj]
    if missing:
        raise RowError(f"the {fmt} format needs field '{missing[0]}' (fields: {', '.join(sorted(obj)) or 'none'})")
    if fmt == "text":
        body = {"text": _text(obj, "text")}
    else:
        turns = _conversation(obj, fmt)
        _check_conversation(turns)
        body = {"messages": [m for m, _, _ in turns], "train_on": [t for _, t, _ in turns]}
    row = {}
    for key in ("id", "category", "lang"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int)) or value == ""):
            raise RowError(f"field '{key}' must be a non-empty string")
        row[key] = str(value) if value is not None else UNKNOWN
    if "id" not in obj:  # stable: the same content gets the same id wherever it sits in whichever file
        row["id"] = "ex-" + hashlib.sha1(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]
    return {**row, **body}


def examples(records: list[tuple[str, dict]], fmt: str = "auto") -> Iterator[tuple[str, dict | RowError, str]]:
    """(where, row or the RowError that rejects it, format) per record. One format per file: with `auto`,
    the first example's format is the file's, and an example of another is an error."""
    first = None  # (format, where)
    for where, obj in records:
        try:
            found = fmt if fmt != "auto" else detect(obj)
            if found == "text" and fmt == "auto":
                raise RowError("a plain 'text' example: set data.format: text to train on every token "
                               "(language modelling)")
            if first and found != first[0]:
                raise RowError(f"a {found} example in a {first[0]} file ({first[1]}); one format per file")
            first = first or (found, where)
            yield where, normalise(obj, found), found
        except RowError as e:
            yield where, e, fmt


def read_rows(source: str, fmt: str = "auto", columns: dict | None = None, split: str = "train",
              split_field: str = "data.split") -> tuple[list[dict], str]:
    """(rows, format) of one split of a source; the first bad example is a UserError naming where it is."""
    rows, found = [], fmt
    for where, row, found in examples(read_records(source, split, columns, split_field), fmt):
        if isinstance(row, RowError):
            raise UserError(f"{where}: {row}")
        rows.append(row)
    if not rows:
        raise UserError(f"{source}: no examples")
    return rows, found


def validate(source: str, fmt: str = "auto", columns: dict | None = None, split: str = "train",
             check_agl: bool = True) -> tuple[int, list[str], str]:
    """(examples, problems as 'WHERE: reason', what was checked). A corpus of the AGL builder (chat messages,
    every category one of AGL.md's) is held to the builder's schema (id, category, lang) and, with
    `check_agl`, every answer must parse as AGL; any other corpus to the rules of its format. Explicit ids
    must be unique in both."""
    from ada_slm.agl.builder import CATEGORIES
    from ada_slm.agl.quality import example_errors

    records = read_records(source, split, columns, "--split")
    categories = {obj.get("category") for _, obj in records} - {None}
    agl = (fmt == "auto" and not columns and categories and categories <= set(CATEGORIES)
           and all("messages" in obj for _, obj in records))
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
        from ada_slm.agl.builder import build_corpus

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
            raise UserError(f"example {row.get('id')}: the model's chat template does not render an assistant "
                            f"turn as its text followed by {eos!r}, so the loss of turn {i} cannot be masked; "
                            "train this model on single-turn examples")
        context = tokenizer(prefix[len(rendered):], add_special_tokens=False)["input_ids"]
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
