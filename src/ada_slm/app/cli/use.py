"""`ada-slm chat`, `generate` and `export`: use what you trained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import Progress

from ada_slm.app.cli.common import SCALE_HELP, app, console, err_console, study_path, user_errors
from ada_slm.errors import UserError
from ada_slm.run.suites import GenerationSettings


def _pick_model(base, adapter, run, study, arm, seed, scale, results, exports):
    from ada_slm.app import use as inference  # loads torch: `ada-slm --help` and the other commands don't pay for it

    if run is not None:
        return inference.from_run(run)
    if study is not None or arm is not None:
        if study is None or arm is None:
            raise UserError("--study and --arm go together")
        b, a, s = inference.from_study(str(study_path(study)), arm, seed, scale, results, exports)
        err_console.print(f"{arm}: seed {s}, adapter {a}", highlight=False)
        return b, a
    return base, str(adapter) if adapter else None


@app.command("chat")
@user_errors
def chat_cmd(
    base: str = typer.Option("smollm2-135m", "--base", help="Base model."),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter directory."),
    run: Path | None = typer.Option(None, "--run", help="A finished run directory (its base and adapter)."),
    study: str | None = typer.Option(None, "--study", help="Study YAML; with --arm, chat with that arm."),
    arm: str | None = typer.Option(None, "--arm", help="Study arm (its best seed unless --seed)."),
    seed: int | None = typer.Option(None, "--seed", help="Study seed; also seeds sampling."),
    scale: str | None = typer.Option(None, "--scale", help=SCALE_HELP),
    results: Path = typer.Option(Path("results"), "--results", help="Results root of the study."),
    exports: Path = typer.Option(Path("exports"), "--exports", help="Adapter root of the study."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy (default); > 0 samples."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass when sampling."),
):
    """Chat in the terminal (streamed; /reset clears the history, /exit or Ctrl-D ends)."""
    from ada_slm.app import use as inference  # loads torch: see _pick_model

    base, adapter_dir = _pick_model(base, adapter, run, study, arm, seed, scale, results, exports)
    model, tokenizer = inference.load(base, adapter_dir)
    interactive = sys.stdin.isatty()
    err_console.print(
        f"chatting with {base}"
        + (f" + {adapter_dir}" if adapter_dir else "")
        + " — /reset clears the history, /exit ends",
        highlight=False,
    )

    def read_line():
        try:
            return input("you> ") if interactive else next(sys.stdin)
        except (EOFError, StopIteration):
            return None

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    def read_and_label():
        line = read_line()
        if line is not None and line.strip() and not line.strip().startswith("/"):
            write("model> ")
        return line

    inference.chat(model, tokenizer, read_and_label, write, max_new_tokens, temperature, top_p, seed or 0)


@app.command("generate")
@user_errors
def generate_cmd(
    prompts: Path = typer.Option(
        ..., "--prompts", help='Prompts: .txt (one per line) or .jsonl with {"prompt": …} or {"messages": […]} lines.'
    ),
    out: Path = typer.Option(..., "--out", help="Output JSONL; prompts already in it are skipped (resumable)."),
    base: str = typer.Option("smollm2-135m", "--base", help="Base model."),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter directory."),
    run: Path | None = typer.Option(None, "--run", help="A finished run directory (its base and adapter)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generation batch."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens per answer (greedy decoding)."),
):
    """Greedy, batched generation over a file of prompts; each output line carries its prompt, settings and
    AGL metrics."""
    from ada_slm.app import use as inference  # loads torch: see _pick_model

    if batch_size <= 0 or max_new_tokens <= 0:
        raise UserError("--batch-size and --max-new-tokens must be positive")
    items = inference.read_prompts(prompts)
    base, adapter_dir = _pick_model(base, adapter, run, None, None, None, None, Path("."), Path("."))
    model, tokenizer = inference.load(base, adapter_dir)
    settings = GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("generating", total=len(items))
        n = inference.generate_file(model, tokenizer, items, out, settings, progress=lambda k: bar.advance(task, k))
    console.print(f"{n} generated, {len(items) - n} already in {out}")


@app.command("export")
@user_errors
def export_cmd(
    adapter: Path = typer.Option(..., "--adapter", help="PEFT adapter directory to merge."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: the adapter's own base)."),
    out: Path = typer.Option(..., "--out", help="New directory for the merged model."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Merge the adapter into the weights (required)."),
):
    """Write a merged, standalone HF model directory (weights + tokenizer + chat template)."""
    from ada_slm.app import use as inference  # loads torch: see _pick_model

    if not merge:
        raise UserError("only merged export is supported: the adapter directory itself is the unmerged export")
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise UserError(f"--adapter {adapter}: not a PEFT adapter directory (no adapter_config.json)")
    if base is None:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
        if not base:
            raise UserError(f"{config}: names no base model; pass --base")
    path = inference.export_merged(base, str(adapter), out)
    console.print(f"merged model → {path} (loads with AutoModelForCausalLM.from_pretrained)")


# ------------------------------------------------------------------------------------------------ study
