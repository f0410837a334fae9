"""The eval cache: each evaluation's generation is paid once.

An entry holds the generated token ids of one evaluation (every item, every sample), stored under a key made of
everything that decides them, computed from what generation actually consumes rather than from names:

  model        sha256 of every parameter and buffer of the model as evaluated (after an adapter is merged; dtypes
               and shapes included, so the precision of the weights is part of it), its class, its config and
               generation config — a base model is one key whichever seed's run evaluates it, an adapter that
               changes any weight is another
  prompts      the items' ids and the exact input ids of every prompt (suite, `limit` subset, chat template and
               tokenizer all end up here), the end-of-turn and pad ids
  generation   every setting that reaches `generate` (mode, max_new_tokens, batch_size, chat_template; for
               sampled generation also temperature, repetition_penalty, samples, seed)
  device       cpu (machine kind, torch threads) or the CUDA device's name; autocast dtype if one is active
  code         GENERATION_VERSION of evaluate.py (bumped whenever generation code changes) and the torch and
               transformers versions

Outputs are kept as token ids and decoded on every hit by the tokenizer in use; metrics are always recomputed.
`rescore` (`study report --rescore`) goes one step further: it re-scores the outputs a run stored in eval.jsonl
with today's metrics and suite items, with no model at all.
Entries are `<dir>/<key>.json`, written atomically; one that cannot be read or does not match its key exactly is
a miss (said on stderr) and is rewritten. A file lock per key makes a concurrent evaluation of the same key
(two base seeds as Ray tasks) wait for the first and hit.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text, iter_jsonl, read_json, write_json, write_jsonl
from ada_slm.run import evaluate as ev
from ada_slm.run import hardware, records, suites

ENTRY_FORMAT = 1
STUDY_CACHE_DIR = ".eval-cache"  # results/<study>/.eval-cache: a study's evaluations share one cache


def user_cache_dir() -> Path:
    """$ADA_SLM_CACHE/eval-cache (default ~/.cache/ada-slm/eval-cache): the cache of `ada-slm eval`."""
    return Path(os.environ.get("ADA_SLM_CACHE", Path.home() / ".cache" / "ada-slm")) / "eval-cache"


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def weights_sha256(model) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every parameter and buffer (tied tensors once)."""
    h = hashlib.sha256()
    seen: set[tuple] = set()
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        same_tensor = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if same_tensor in seen:  # a tied weight: its name is hashed, its bytes once
            continue
        seen.add(same_tensor)
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # the bytes, not a copy
    return h.hexdigest()


def _config_dict(config) -> dict:
    # not what the model computes: where it was loaded from, and the KV-cache switch training turns off
    # (generation passes use_cache=True explicitly)
    out = config.to_dict()
    for field in ("_name_or_path", "use_cache"):
        out.pop(field, None)
    return out


def model_identity(model) -> dict:
    generation_config = getattr(model, "generation_config", None)
    return {
        "class": type(model).__name__,
        "weights_sha256": weights_sha256(model),
        "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()}),
        "config_sha256": _sha256_json(_config_dict(model.config)),
        "generation_config_sha256": _sha256_json(generation_config.to_dict()) if generation_config else None,
    }


def device_identity(model) -> dict:
    device = next(model.parameters()).device
    out = {"type": device.type}
    if device.type == "cuda":
        out["name"] = torch.cuda.get_device_name(device)
    else:  # fp32 matmul kernels and the split of reductions differ by CPU kind and thread count
        out["machine_kind"] = hardware.machine_kind()
        out["threads"] = torch.get_num_threads()
    out["autocast"] = (
        str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")
        if torch.is_autocast_enabled(device.type)
        else None
    )
    return out


def generation_identity(settings) -> dict:
    """The settings that reach `generate`; the sampling ones only where generation samples."""
    fields = ["mode", "max_new_tokens", "batch_size", "chat_template"]
    if settings.mode == "seed":
        fields += ["temperature", "repetition_penalty", "samples", "seed"]
    return {f: getattr(settings, f) for f in fields}


def library_versions() -> dict:
    import transformers  # heavy: loaded with the model already where generation runs, not for a rescore

    return {"torch": torch.__version__, "transformers": transformers.__version__}


@dataclass
class Entry:
    """A cache hit: the token ids per sample per item, and the run that generated them."""

    key: str
    outputs: list[list[list[int]]]
    generated_by: str
    generated_at: str
    generation_s: float


class EvalCache:
    """Generated outputs under `directory`, keyed as the module docstring says. `code_version` and `libraries`
    default to this process's (GENERATION_VERSION, the installed torch and transformers)."""

    def __init__(self, directory: str | Path, code_version: str | None = None, libraries: dict | None = None):
        self.directory = Path(directory)
        self.code_version = code_version if code_version is not None else ev.GENERATION_VERSION
        self.libraries = libraries if libraries is not None else library_versions()

    def material(self, model, tokenizer, item_ids: list[str], input_ids: list[list[int]], settings) -> dict:
        """Everything the key is made of (stored with the entry and compared in full on every read)."""
        return {
            "format": ENTRY_FORMAT,
            "code": {"generation_version": self.code_version, **self.libraries},
            "model": model_identity(model),
            "device": device_identity(model),
            "prompts": {
                "item_ids_sha256": _sha256_json(item_ids),
                "input_ids_sha256": _sha256_json(input_ids),
                "n": len(item_ids),
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            "generation": generation_identity(settings),
        }

    @staticmethod
    def key(material: dict) -> str:
        return _sha256_json(material)[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def lock(self, key: str):
        """The key's file lock; a cache folder that is a link out of the folder holding it (results/<study>) is
        refused — it is not followed, for reading or writing."""
        home = self.directory.parent.resolve()
        if self.directory.is_symlink() and not self.directory.resolve().is_relative_to(home):
            raise UserError(f"{self.directory}: a link to {self.directory.resolve()}, outside {home}; not followed")
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / f"{key}.lock"))

    def load(self, material: dict, vocab_size: int | None = None) -> Entry | None:
        """The entry for `material`; None when there is none, or it is unreadable (not a regular file, larger
        than MAX_ENTRY_BYTES, a link out of the cache's folder, bad JSON, nested too deep, a huge integer) or not
        exactly this key's, or holds a token id that is not one of the tokenizer's `vocab_size` — a miss with one
        warning line: the caller generates and `store` rewrites it."""
        key = self.key(material)
        path = self.path(key)
        if not os.path.lexists(path):
            return None
        try:
            raw = read_json(path, MAX_ENTRY_BYTES, [self.directory.parent])
            problem = _entry_problem(raw, key, material) if raw is not None else "vanished"
            problem = problem or _token_problem(raw["outputs"], vocab_size)
        except (OSError, UserError) as e:
            problem = f"unreadable ({e})"
        if problem:
            print(f"eval cache: {path}: {problem}; generating again", file=sys.stderr)
            return None
        return Entry(key, raw["outputs"], raw["generated_by"], raw["generated_at"], raw["generation_s"])

    def store(self, material: dict, outputs: list[list[list[int]]], generated_by: str, generation_s: float) -> str:
        key = self.key(material)
        atomic_write_text(
            self.path(key),
            json.dumps(
                {
                    "key": key,
                    "material": material,
                    "generated_by": generated_by,
                    "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    # where it came from: the checksum is not keyed, so an entry is as trustworthy as whoever can write
                    # the folder (docs/guides/safety.md) — the origin says which machine and user wrote it
                    "origin": {"host": platform.node(), "user": _user()},
                    "generation_s": generation_s,
                    "outputs_sha256": _sha256_json(outputs),
                    "outputs": outputs,
                },
                ensure_ascii=False,
            )
            + "\n",
        )
        return key

    def label(self, out_dir: str | Path) -> str:
        """How an entry names the evaluation that generated it: the run's path relative to the folder holding
        the cache (`base/seed0` in a study), else its absolute path."""
        out_dir = Path(out_dir).resolve()
        try:
            return out_dir.relative_to(self.directory.resolve().parent).as_posix()
        except ValueError:
            return str(out_dir)


MAX_ENTRY_BYTES = 256 * 2**20  # far above an entry's size (1,000 items × 150 tokens ≈ 2 MB), far below RAM
MAX_TOKEN_ID = 2**31 - 1  # without the tokenizer's vocabulary: what any tokenizer could hold


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


def _token_problem(outputs, vocab_size: int | None) -> str | None:
    """Why the stored outputs are not token ids of this tokenizer (ints in [0, vocab_size)), or None."""
    top = vocab_size or MAX_TOKEN_ID
    for sample in outputs:
        for ids in sample:
            if not isinstance(ids, list):
                return "an output is not a list of token ids"
            for t in ids:
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < top:
                    return f"token id {t!r} is not one of the tokenizer's {top}"
    return None


def _entry_problem(raw, key: str, material: dict) -> str | None:
    """What is wrong with a stored entry for `key`, or None when it can be trusted."""
    if not isinstance(raw, dict):
        return "not a cache entry"
    if raw.get("key") != key or raw.get("material") != material:
        return "stored for another key"
    if (
        not isinstance(raw.get("generated_by"), str)
        or not isinstance(raw.get("generated_at"), str)
        or not isinstance(raw.get("generation_s"), (int, float))
    ):
        return "incomplete entry"
    outputs = raw.get("outputs")
    samples = material["generation"].get("samples", 1)
    if not isinstance(outputs, list) or len(outputs) != samples:
        return "wrong number of samples"
    for sample in outputs:
        if not isinstance(sample, list) or len(sample) != material["prompts"]["n"]:
            return "wrong number of outputs"
    if raw.get("outputs_sha256") != _sha256_json(outputs):  # an edited or damaged entry
        return "outputs do not match their checksum"
    return None


# ------------------------------------------------------------------------------------ rescoring stored outputs
def rescore(out_dir: str | Path, summary: dict) -> dict:
    """`summary` (an evaluation's, as in its record) recomputed from the outputs stored in <out_dir>/eval.jsonl
    with today's metrics and suite items — nothing is generated, no model is loaded. Rewrites eval.jsonl (and
    eval_summary.json where there is one); returns the new summary."""
    out_dir = Path(out_dir)
    path = out_dir / "eval.jsonl"
    stored = summary.get("suite_path")
    suite, suite_path = suites.load_suite(stored if stored and Path(stored).is_file() else summary["suite"])
    items = {i.id: i for i in suite.items}
    rows = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("output"), str):
            raise UserError(f"{path}:{lineno}: not an evaluated item (needs 'id' and 'output')")
        item = items.get(row["id"])
        if item is None or item.prompt != row.get("prompt"):
            what = "is not in" if item is None else "has another prompt in"
            raise UserError(
                f"{path}:{lineno}: item {row['id']!r} {what} {suite_path} now; its output cannot be "
                "rescored (evaluate the run again)"
            )
        rows.append(ev.item_row(item, row["output"], row.get("sample")))
    if not rows:
        raise UserError(f"{path}: no evaluated items to rescore")
    settings = suites.GenerationSettings.model_validate(summary["generation"])
    new = {
        **summary,
        **ev.score_rows(rows, settings),
        "rescored_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_jsonl(path, rows)
    if (out_dir / "eval_summary.json").is_file():
        write_json(out_dir / "eval_summary.json", new)
    return new


def rescore_runs(specs) -> list[str]:
    """Rescore every evaluated run of a study's `specs` (complete record and eval.jsonl) in place: eval.jsonl and
    the record's eval summary. Returns the keys of the runs rescored."""
    done = []
    for spec in specs:
        record = records.read_record_or_none(spec.run_dir)
        if not records.is_complete(record) or not (spec.run_dir / records.EVAL_ITEMS).is_file():
            continue
        assert record.eval is not None  # is_complete: it holds the evaluation's metrics
        summary = rescore(spec.run_dir, record.eval.model_dump(exclude_unset=True))
        record.eval = records.EvalSection.model_validate(summary)
        records.write_record(spec.run_dir, record)
        done.append(spec.key)
    return done
