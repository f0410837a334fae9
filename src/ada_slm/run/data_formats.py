"""Your own data, read: a corpus in the common fine-tuning formats, every example normalised to a row with its loss
mask. datasets_io turns the rows into a training corpus and tokens.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ada_slm.errors import UserError
from ada_slm.files import iter_jsonl, parse_json, read_utf8

FORMATS = {  # format -> the fields that identify it
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
UNKNOWN = "unknown"


class RowError(ValueError):
    """What is wrong with one example; the caller adds where the example is."""


# ------------------------------------------------------------------------------------------------ sources
def read_records(
    source: str, split: str = "train", columns: dict | None = None, split_field: str = "data.split"
) -> list[tuple[str, dict]]:
    """(where, example) for every example of one split of a source, with `columns` renamed to our fields.
    `where` is FILE:LINE for JSON lines, 'SOURCE row N' (1-based) for everything read through `datasets`."""
    path = Path(source).expanduser()
    kind = FILE_KINDS.get(path.suffix.lower())
    if path.is_file():
        if kind is None:
            raise UserError(
                f"{source}: unknown kind of file '{path.suffix}' (read: {', '.join(FILE_KINDS)}, "
                "a save_to_disk or data folder, or a Hub dataset id)"
            )
        splits: dict[str, Any] = {"train": None}  # None: the file itself
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
        assert kind is not None  # only a file's split is None, and a file of no known kind was refused above
        dataset, name = _read_file(path, kind), source
    for field, column in (columns or {}).items():
        if column not in dataset.column_names:
            raise UserError(
                f"{source}: data.columns.{field}: no column {column!r} (columns: {', '.join(dataset.column_names)})"
            )
    return _renamed([(f"{name} row {i}", row) for i, row in enumerate(dataset.to_list(), 1)], columns or {})


def _renamed(records: list[tuple[str, dict]], columns: dict) -> list[tuple[str, dict]]:
    """Each example with field <- column for every `columns` entry (the field's own column, if any, gives way)."""
    if not columns:
        return records
    out = []
    for where, obj in records:
        for field, column in columns.items():
            if column not in obj:
                raise UserError(
                    f"{where}: data.columns.{field}: no field {column!r} (fields: {', '.join(obj) or 'none'})"
                )
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
    import datasets  # heavy (pandas, pyarrow): only a parquet, csv, arrow or folder source pays for it

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
    return _datasets_call(
        str(path),
        lambda ds: ds.load_dataset(
            "csv",
            data_files=str(path),
            split="train",
            features=ds.Features({name: ds.Value("string") for name in header}),
        ),
    )


def _folder_splits(folder: Path, source: str) -> dict:
    """split name -> Dataset of a save_to_disk folder, or of a folder of data files (a Hub snapshot is one)."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        loaded = _datasets_call(source, lambda ds: ds.load_from_disk(str(folder)))
        return dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
    return dict(_datasets_call(source, lambda ds: ds.load_dataset(str(folder))))


def _hub_snapshot(repo_id: str) -> Path:
    # only an org/name source reads the Hugging Face cache; a local file need not import the Hub client
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise UserError(
            f"{repo_id}: no such file or folder, and not a dataset in the local Hugging Face cache "
            f"(ada-slm never downloads at run time): fetch it with `hf download --repo-type dataset "
            f"{repo_id}`"
        ) from None


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
        raise RowError(
            "preference data (chosen/rejected) is for a preference trainer such as DPO; ada-slm "
            "trains on demonstrations: keep the chosen answer as the completion"
        )
    for fmt, keys in FORMATS.items():
        have = [k for k in keys if k in present]
        if have:
            missing = next(k for k in keys if k not in present)
            absent = f"'{missing}' is null" if missing in obj else f"no '{missing}'"
            raise RowError(f"has '{have[0]}' but {absent} (the {fmt} format needs both)")
    raise RowError(
        f"no known format (fields: {', '.join(sorted(present)) or 'none'}); expected messages, "
        "conversations, prompt + completion, instruction + output, or text with data.format: text (other "
        "column names: map them with data.columns)"
    )


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
        turns += [
            (*_turn({"role": "user", "content": query}, f"history[{i}][0]"), f"history[{i}][0]"),
            (*_turn({"role": "assistant", "content": answer}, f"history[{i}][1]"), f"history[{i}][1]"),
        ]
    extra = _text(obj, "input", optional=True)
    prompt = _text(obj, "instruction") + ("\n" + extra if extra.strip() else "")  # LLaMA-Factory's joining
    return turns + [
        (*_turn({"role": "user", "content": prompt}, "instruction"), "instruction"),
        (*_turn({"role": "assistant", "content": obj["output"]}, "output"), "output"),
    ]


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
        raise RowError(
            f"the conversation ends on a {roles[-1]} turn ({turns[-1][2]}); the last must be the assistant's"
        )
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
        body: dict[str, Any] = {"text": _text(obj, "text")}
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
                raise RowError(
                    "a plain 'text' example: set data.format: text to train on every token (language modelling)"
                )
            if first and found != first[0]:
                raise RowError(f"a {found} example in a {first[0]} file ({first[1]}); one format per file")
            first = first or (found, where)
            yield where, normalise(obj, found), found
        except RowError as e:
            yield where, e, fmt
