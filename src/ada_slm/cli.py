"""`ada-slm` command line. Thin: parse and validate arguments, call the modules, print results.

User mistakes surface as `UserError` and are printed as one line (`error: FILE:LINE: reason`), exit code 1.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ada_slm.errors import UserError

app = typer.Typer(
    help="ada-slm: run small-language-model LoRA fine-tuning studies on the AGL glyph language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build, validate and inspect AGL training corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data", help="Build, validate and inspect AGL training corpora.")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def user_errors(fn):
    """Turn a UserError into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


# ------------------------------------------------------------------------------------------------- data
def _summary_table(title: str, rows: list[dict]) -> Table:
    from ada_slm.agl.builder import summarize

    summary = summarize(rows)
    table = Table(title=title)
    for col in ("category/lang", "examples", "unique prompts", "unique responses", "mean tokens"):
        table.add_column(col, justify="left" if col == "category/lang" else "right")
    for name, s in list(summary["groups"].items()) + [("total", summary["total"])]:
        table.add_row(name, str(s["examples"]), str(s["unique_prompts"]), str(s["unique_responses"]),
                      f"{s['mean_response_tokens']:.1f}", end_section=(name != "total" and False))
    return table


def val_path_for(out: Path) -> Path:
    """data/agl-2k.jsonl -> data/agl-2k.val.jsonl"""
    return out.with_name(out.name[: -len(".jsonl")] + ".val.jsonl") if out.name.endswith(".jsonl") \
        else out.with_name(out.name + ".val")


@data_app.command("build")
@user_errors
def data_build(
    size: int = typer.Option(2000, "--size", help="Number of examples in total (train + held-out)."),
    mix: str = typer.Option("pure", "--mix", help="'pure' (all AGL categories), 'polyglot' (Lojban/Toki Pona/"
                            "English → AGL pairs) or a YAML file of {category: weight}."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice; same seed → byte-identical file."),
    out: Path = typer.Option(Path("data/agl.jsonl"), "--out", help="Output JSONL (chat messages + id, category, lang)."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Share held out as <out>.val.jsonl; whole "
                                       "prompt templates go to one side, none is shared across the split."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
):
    """Generate an AGL corpus: every assistant message parses; duplicates and near-duplicates are dropped."""
    from rich.progress import Progress

    from ada_slm.agl.builder import build_corpus
    from ada_slm.files import write_jsonl

    if not out.name.endswith(".jsonl"):
        raise UserError(f"--out {out}: the corpus is JSONL, name it *.jsonl")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    start = time.perf_counter()
    with Progress(console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task("generating", total=size)
        corpus = build_corpus(size, mix, seed, val_fraction, progress=lambda n: bar.advance(task, n))
    write_jsonl(out, corpus.train)
    if corpus.val:
        write_jsonl(val_path_for(out), corpus.val)
    elapsed = time.perf_counter() - start
    if not quiet:
        console.print(_summary_table(f"{out} (seed {seed})", corpus.train))
        if corpus.val:
            console.print(_summary_table(f"{val_path_for(out)} (held out)", corpus.val))
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(corpus.dropped.items())) or "none"
        console.print(f"generated {corpus.attempts} candidates, dropped: {dropped}")
    console.print(f"wrote {len(corpus.train)} train" + (f" + {len(corpus.val)} held-out" if corpus.val else "")
                  + f" examples to {out} in {elapsed:.1f}s")


@data_app.command("validate")
@user_errors
def data_validate(
    file: Path = typer.Argument(..., help="Corpus JSONL to check."),
    no_parse: bool = typer.Option(False, "--no-parse", help="Check the schema only, not that answers are AGL."),
):
    """Check a corpus: JSON per line, chat schema, unique ids, every assistant message parses as AGL."""
    from ada_slm.agl.quality import example_errors
    from ada_slm.files import iter_jsonl

    problems: list[str] = []
    ids: dict[str, int] = {}
    count = 0
    for lineno, obj in iter_jsonl(file):
        count += 1
        for e in example_errors(obj, check_agl=not no_parse):
            problems.append(f"{file}:{lineno}: {e}")
        if isinstance(obj.get("id"), str):
            if obj["id"] in ids:
                problems.append(f"{file}:{lineno}: duplicate id {obj['id']!r} (first on line {ids[obj['id']]})")
            ids.setdefault(obj["id"], lineno)
    if count == 0:
        raise UserError(f"{file}: no examples")
    if problems:
        for p in problems[:20]:
            err_console.print(p, highlight=False, soft_wrap=True)
        if len(problems) > 20:
            err_console.print(f"… and {len(problems) - 20} more problems")
        raise UserError(f"{file}: {len(problems)} problem(s) in {count} examples")
    console.print(f"{file}: {count} examples, all valid")


@data_app.command("show")
@user_errors
def data_show(
    file: Path = typer.Argument(..., help="Corpus JSONL to print."),
    n: int = typer.Option(5, "-n", help="How many examples to show."),
    category: Optional[str] = typer.Option(None, "--category", help="Only this category."),
    summary: bool = typer.Option(False, "--summary", help="Print the per-category summary table too."),
):
    """Pretty-print examples of a corpus."""
    from rich.panel import Panel

    from ada_slm.files import iter_jsonl

    if n <= 0:
        raise UserError(f"-n must be positive, got {n}")
    rows = [obj for _, obj in iter_jsonl(file)]
    chosen = [r for r in rows if category is None or r.get("category") == category]
    if category is not None and not chosen:
        known = sorted({str(r.get("category")) for r in rows})
        raise UserError(f"{file}: no examples of category {category!r} (present: {', '.join(known)})")
    for row in chosen[:n]:
        body = "\n".join(f"[bold]{m.get('role')}:[/] {m.get('content')}" for m in row.get("messages", []))
        console.print(Panel(body, title=f"{row.get('id')} · {row.get('category')} · {row.get('lang')}",
                            title_align="left"), highlight=False)
    if summary:
        console.print(_summary_table(str(file), rows))


# ------------------------------------------------------------------------------------------------ train
@app.command("train", context_settings={"allow_extra_args": False})
@user_errors
def train_cmd(
    args: list[str] = typer.Argument(None, metavar="[CONFIG.yaml] [key.sub=value ...]",
                                     help="A run config (YAML) and/or overrides such as lora.r=32 batch.micro=1."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    merge: bool = typer.Option(False, "--merge", help="Also write a merged model next to the adapter."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or config dump (for subprocesses)."),
):
    """Train one LoRA adapter; writes <out_dir>/record.json and the PEFT adapter."""
    from ada_slm.config import load_config
    from ada_slm.train import run

    args = list(args or [])
    config_path = None
    if args and "=" not in args[0]:
        config_path = args.pop(0)
    bad = [a for a in args if "=" not in a]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}: give one CONFIG.yaml first, then key.sub=value overrides")
    cfg = load_config(config_path, args)
    record = run(cfg, resume=resume, quiet=quiet, merge=merge, console=console if not quiet else None)
    if record["status"]["state"] != "complete":
        raise typer.Exit(2)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
