"""`ada-slm data …`: build AGL corpora; validate and inspect any training corpus."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from ada_slm.agl.builder import build_corpus, summarize
from ada_slm.agl.suite_builder import build_heldout_suite
from ada_slm.app.cli.common import console, data_app, err_console, user_errors
from ada_slm.errors import UserError
from ada_slm.files import write_jsonl
from ada_slm.run.config import DataConfig, format_validation_error
from ada_slm.run.datasets_io import read_rows, validate


# ------------------------------------------------------------------------------------------------- data
def _summary_table(title: str, rows: list[dict]) -> Table:
    summary = summarize(rows)
    table = Table(title=title)
    for col in ("category/lang", "examples", "unique prompts", "unique responses", "mean tokens"):
        table.add_column(col, justify="left" if col == "category/lang" else "right")
    for name, s in list(summary["groups"].items()) + [("total", summary["total"])]:
        table.add_row(
            name,
            str(s["examples"]),
            str(s["unique_prompts"]),
            str(s["unique_responses"]),
            f"{s['mean_response_tokens']:.1f}",
            end_section=(name != "total" and False),
        )
    return table


def val_path_for(out: Path) -> Path:
    """data/agl-2k.jsonl -> data/agl-2k.val.jsonl"""
    return (
        out.with_name(out.name[: -len(".jsonl")] + ".val.jsonl")
        if out.name.endswith(".jsonl")
        else out.with_name(out.name + ".val")
    )


@data_app.command("suite")
@user_errors
def data_suite(
    out: Path = typer.Option(Path("suites/agl-heldout.jsonl"), "--out", help="Output JSONL suite (one item a line)."),
    per_category: int = typer.Option(100, "--per-category", help="Items per data category."),
    seed: int = typer.Option(0, "--seed", help="Seed; same seed → byte-identical file."),
):
    """Generate the held-out evaluation suite: prompts from templates no training corpus uses, every data
    category, English (and Lojban / Toki Pona in polyglot). The shipped suites/agl-heldout.jsonl is this
    command with its defaults; use a suite with `eval.suite` in a study or `--suite` in `ada-slm eval`."""
    if out.suffix != ".jsonl":
        raise UserError(f"--out {out}: a generated suite is JSONL, name it *.jsonl")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    items = build_heldout_suite(per_category, seed)
    write_jsonl(out, items)
    langs = Counter(i["lang"] for i in items)
    console.print(
        f"wrote {out}: {len(items)} items, {len({i['category'] for i in items})} categories, languages "
        + ", ".join(f"{k} {v}" for k, v in sorted(langs.items())),
        highlight=False,
    )


@data_app.command("build")
@user_errors
def data_build(
    size: int = typer.Option(2000, "--size", help="Number of examples in total (train + held-out)."),
    mix: str = typer.Option(
        "pure",
        "--mix",
        help="'pure' (all AGL categories), 'polyglot' (Lojban/Toki Pona/"
        "English → AGL pairs) or a YAML file of {category: weight}.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice; same seed → byte-identical file."),
    out: Path = typer.Option(
        Path("data/agl.jsonl"), "--out", help="Output JSONL (chat messages + id, category, lang)."
    ),
    val_fraction: float = typer.Option(
        0.0,
        "--val-fraction",
        help="Share held out as <out>.val.jsonl; whole "
        "prompt templates go to one side, none is shared across the split.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
):
    """Generate an AGL corpus: every assistant message parses; duplicates and near-duplicates are dropped."""
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
    console.print(
        f"wrote {len(corpus.train)} train"
        + (f" + {len(corpus.val)} held-out" if corpus.val else "")
        + f" examples to {out} in {elapsed:.1f}s"
    )


CORPUS_HELP = (
    "Corpus: a .jsonl/.json/.parquet/.csv/.arrow file, a save_to_disk or data folder, or a Hub dataset "
    "id in the local cache."
)
FORMAT_HELP = "auto (detected per file), messages, sharegpt, prompt_completion, alpaca or text."
COLUMN_HELP = "FIELD=COLUMN: read FIELD (prompt, completion, messages, …) from COLUMN; repeatable."


def _data_config(file: str, fmt: str, column: list[str] | None, split: str):
    """The DataConfig these options describe; its checks give the same errors as a run config's."""
    columns = {}
    for item in column or []:
        field, sep, name = item.partition("=")
        if not sep or not field or not name:
            raise UserError(f"--column {item!r}: expected FIELD=COLUMN, e.g. prompt=question")
        columns[field] = name
    try:
        return DataConfig(path=file, format=fmt, columns=columns, split=split)
    except ValidationError as e:
        raise UserError(format_validation_error(e, "--format/--column/--split")) from None


@data_app.command("validate")
@user_errors
def data_validate(
    file: str = typer.Argument(..., help=CORPUS_HELP),
    no_parse: bool = typer.Option(
        False, "--no-parse", help="AGL corpus: check the schema only, not that answers are AGL."
    ),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    column: list[str] | None = typer.Option(None, "--column", help=COLUMN_HELP),
    split: str = typer.Option("train", "--split", help="Split of a folder or Hub dataset."),
):
    """Check a corpus: every example valid in its format (one per file), unique ids; a corpus of the AGL builder
    is also held to its schema and every answer must parse as AGL."""
    data = _data_config(file, fmt, column, split)
    count, problems, checked = validate(file, data.format, data.columns, data.split, check_agl=not no_parse)
    if count == 0:
        raise UserError(f"{file}: no examples")
    if problems:
        for p in problems[:20]:
            err_console.print(p, highlight=False, soft_wrap=True, markup=False)
        if len(problems) > 20:
            err_console.print(f"… and {len(problems) - 20} more problems")
        raise UserError(f"{file}: {len(problems)} problem(s) in {count} examples")
    console.print(f"{file}: {count} examples, all valid ({checked})", highlight=False, markup=False)


@data_app.command("show")
@user_errors
def data_show(
    file: str = typer.Argument(..., help=CORPUS_HELP),
    n: int = typer.Option(5, "-n", help="How many examples to show."),
    category: str | None = typer.Option(None, "--category", help="Only this category."),
    summary: bool = typer.Option(False, "--summary", help="Print the per-category summary table too."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    column: list[str] | None = typer.Option(None, "--column", help=COLUMN_HELP),
    split: str = typer.Option("train", "--split", help="Split of a folder or Hub dataset."),
):
    """Pretty-print examples of a corpus as they will be trained on (assistant turns without loss marked)."""
    if n <= 0:
        raise UserError(f"-n must be positive, got {n}")
    data = _data_config(file, fmt, column, split)
    rows, _ = read_rows(file, data.format, data.columns, data.split, "--split")
    chosen = [r for r in rows if category is None or r["category"] == category]
    if category is not None and not chosen:
        known = sorted({r["category"] for r in rows})
        raise UserError(f"{file}: no examples of category {category!r} (present: {', '.join(known)})")
    for row in chosen[:n]:
        turns = (
            zip(row["messages"], row["train_on"], strict=True)
            if "messages" in row
            else [({"role": "text", "content": row["text"]}, True)]
        )
        body = "\n".join(
            f"[bold]{m['role']}:[/] {escape(m['content'])}"
            + (" [dim](context: no loss)[/]" if m["role"] == "assistant" and not trained else "")
            for m, trained in turns
        )
        console.print(
            Panel(body, title=escape(f"{row['id']} · {row['category']} · {row['lang']}"), title_align="left"),
            highlight=False,
        )
    if summary:
        console.print(_summary_table(file, rows))


# ------------------------------------------------------------------------------------------------ train
