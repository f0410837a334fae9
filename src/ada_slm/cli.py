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
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table

from ada_slm import records
from ada_slm.errors import UserError

app = typer.Typer(
    help="ada-slm: run small-language-model LoRA fine-tuning studies on the AGL glyph language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build AGL corpora; validate and inspect any training corpus.", no_args_is_help=True)
app.add_typer(data_app, name="data", help="Build AGL corpora; validate and inspect any training corpus.")
study_app = typer.Typer(help="Multi-arm studies: plan, run (resumable), status, report, audit.", no_args_is_help=True)
app.add_typer(study_app, name="study", help="Multi-arm studies: plan, run (resumable), status, report, audit.")

STUDY_FILE_HELP = "Study YAML (a path, or the name of a shipped study such as phase14d)."
SCALE_HELP = "Scale preset of the study file: quick (CPU demo) or full (the seed's sizes)."

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def user_errors(fn):
    """Turn a UserError into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            from rich.markup import escape  # a message may hold [brackets]: "messages[1]", "data[test] row 3"

            err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
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


CORPUS_HELP = ("Corpus: a .jsonl/.json/.parquet/.csv/.arrow file, a save_to_disk or data folder, or a Hub dataset "
               "id in the local cache.")
FORMAT_HELP = "auto (detected per file), messages, sharegpt, prompt_completion, alpaca or text."
COLUMN_HELP = "FIELD=COLUMN: read FIELD (prompt, completion, messages, …) from COLUMN; repeatable."


def _data_config(file: str, fmt: str, column: list[str] | None, split: str):
    """The DataConfig these options describe; its checks give the same errors as a run config's."""
    from pydantic import ValidationError

    from ada_slm.config import DataConfig, format_validation_error

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
    no_parse: bool = typer.Option(False, "--no-parse", help="AGL corpus: check the schema only, not that "
                                  "answers are AGL."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    column: Optional[list[str]] = typer.Option(None, "--column", help=COLUMN_HELP),
    split: str = typer.Option("train", "--split", help="Split of a folder or Hub dataset."),
):
    """Check a corpus: every example valid in its format (one per file), unique ids; a corpus of the AGL builder
    is also held to its schema and every answer must parse as AGL."""
    from ada_slm.datasets_io import validate

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
    category: Optional[str] = typer.Option(None, "--category", help="Only this category."),
    summary: bool = typer.Option(False, "--summary", help="Print the per-category summary table too."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    column: Optional[list[str]] = typer.Option(None, "--column", help=COLUMN_HELP),
    split: str = typer.Option("train", "--split", help="Split of a folder or Hub dataset."),
):
    """Pretty-print examples of a corpus as they will be trained on (assistant turns without loss marked)."""
    from rich.markup import escape
    from rich.panel import Panel

    from ada_slm.datasets_io import read_rows

    if n <= 0:
        raise UserError(f"-n must be positive, got {n}")
    data = _data_config(file, fmt, column, split)
    rows, _ = read_rows(file, data.format, data.columns, data.split, "--split")
    chosen = [r for r in rows if category is None or r["category"] == category]
    if category is not None and not chosen:
        known = sorted({r["category"] for r in rows})
        raise UserError(f"{file}: no examples of category {category!r} (present: {', '.join(known)})")
    for row in chosen[:n]:
        turns = zip(row["messages"], row["train_on"]) if "messages" in row else [({"role": "text",
                                                                                   "content": row["text"]}, True)]
        body = "\n".join(f"[bold]{m['role']}:[/] {escape(m['content'])}"
                         + (" [dim](context: no loss)[/]" if m["role"] == "assistant" and not trained else "")
                         for m, trained in turns)
        console.print(Panel(body, title=escape(f"{row['id']} · {row['category']} · {row['lang']}"),
                            title_align="left"), highlight=False)
    if summary:
        console.print(_summary_table(file, rows))


# ------------------------------------------------------------------------------------------------ train
def check_track(track: str | None) -> None:
    if track is not None and track not in ("mlflow", "tensorboard"):
        raise UserError(f"--track {track}: choose mlflow or tensorboard")


@app.command("train", context_settings={"allow_extra_args": False})
@user_errors
def train_cmd(
    args: list[str] = typer.Argument(None, metavar="[CONFIG.yaml] [key.sub=value ...]",
                                     help="A run config (YAML) and/or overrides such as lora.r=32 batch.micro=1."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    merge: bool = typer.Option(False, "--merge", help="Also write a merged model next to the adapter."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or config dump (for subprocesses)."),
    track: Optional[str] = typer.Option(None, "--track", help="Mirror the run to 'mlflow' or 'tensorboard' "
                                        "(scalars under <out_dir>/tensorboard)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                                               "sqlite:///<out_dir>/../mlflow.db)."),
):
    """Train one LoRA adapter; writes <out_dir>/record.json and the PEFT adapter."""
    from ada_slm import tracking
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
    tracker = None
    if track:
        check_track(track)
        out_dir = Path(cfg.out_dir)
        tracker = tracking.open_tracker(tracking.Tracking(
            kind=track, uri=tracking_uri or tracking.default_uri(out_dir.parent), run_name=out_dir.name), out_dir)
    record = {"status": {"state": "interrupted"}}
    try:
        record = run(cfg, resume=resume, quiet=quiet, merge=merge, console=console if not quiet else None,
                     tracker=tracker)
    finally:
        if tracker:
            tracker.end(record["status"]["state"])
    if record["status"]["state"] != "complete":
        raise typer.Exit(2)


# ------------------------------------------------------------------------------------------------ eval
def metric_table(summary: dict, title: str) -> Table:
    """Metric means with 95 % CIs, and the per-language means, as printed by `ada-slm eval`."""
    langs = list(summary["by_lang"])
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("mean [95% CI]", justify="right")
    table.add_column("n", justify="right")
    for lang in langs:
        table.add_column(f"{lang} (n={summary['by_lang'][lang]['n']})", justify="right")
    for name, m in summary["metrics"].items():
        if m["mean"] is None:
            cells = ["n/a", "0"]
        else:
            ci = f" [{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] is not None else ""
            cells = [f"{m['mean']:.4f}{ci}", str(m["n"])]
        per_lang = [("—" if summary["by_lang"][lang][name] is None else f"{summary['by_lang'][lang][name]:.4f}")
                    for lang in langs]
        table.add_row(name, *cells, *per_lang)
    return table


def side_by_side_table(summary: dict, title: str) -> Table:
    """Our metrics and the seed-compatible scorer on the same outputs, one row per metric."""
    table = Table(title=title)
    for col in ("metric", "ours: mean [95% CI]", "seed-compatible: mean [95% CI]"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def cell(m):
        if m is None or m["mean"] is None:
            return "—"
        ci = f" [{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] is not None else ""
        return f"{m['mean']:.4f}{ci}"

    seed = summary["seed_scoring"]["metrics"]
    for name, m in summary["metrics"].items():
        table.add_row(name, cell(m), cell(seed.get(name)))
    return table


class _EvalGroup(TyperGroup):
    """`ada-slm eval [RUN_DIR] [OPTIONS]` scores a model (the `run` subcommand, implied);
    `ada-slm eval export-lm-eval DIR` writes the suite as an lm-evaluation-harness task."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=_EvalGroup, no_args_is_help=True, help="Score models on an eval suite (`ada-slm eval "
                       "[RUN_DIR] [OPTIONS]`, see `ada-slm eval run --help`), or export the suite to lm-eval.")
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
@user_errors
def eval_cmd(
    run_dir: Optional[Path] = typer.Argument(None, help="A finished training run: evaluate its adapter and write "
                                             "the result into its record.json."),
    base: str = typer.Option("smollm2-135m", "--base", help="Base model (ignored with RUN_DIR: the run's base)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="PEFT adapter directory; none = the base arm."),
    suite: str = typer.Option("multilang", "--suite", help="Suite name (suites/NAME.yaml here or shipped) or file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where eval.jsonl and eval_summary.json go "
                                       "(default: RUN_DIR, or evals/<base>[-<adapter>])."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generation batch (outputs are identical at any size; 32 measured 5.8× one at a time)."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Generation budget per answer."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only N suite items, spread evenly over the suite "
                                        "(quick checks)."),
    scoring: str = typer.Option("ours", "--scoring", help="ours (AGL.md metrics), seed (the seed study's scorer, "
                                "for comparison with published numbers) or both, side by side."),
    generation: str = typer.Option("greedy", "--generation", help="greedy (chat template, deterministic) or seed "
                                   "(raw prompt, temperature 0.8, repetition penalty 1.1, 150 tokens — seeded)."),
    samples: int = typer.Option(1, "--samples", help="Draws per prompt with --generation seed; the spread "
                                "across draws is reported as sampling noise."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
):
    """Score a model (base, base + adapter, or a finished run) on an evaluation suite."""
    from rich.progress import Progress

    from ada_slm.evaluate import GenerationSettings, evaluate, load_suite, subset

    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    if batch_size <= 0 or max_new_tokens <= 0:
        raise UserError("--batch-size and --max-new-tokens must be positive")
    record = None
    if run_dir is not None:
        record = records.read_record(run_dir)
        if record is None:
            raise UserError(f"{run_dir}: no record.json (not a training run directory)")
        if not records.is_trained(record):
            raise UserError(f"{records.record_path(run_dir)}: run is not complete ({records.state(record)})")
        base, adapter, out = record["config"]["base"], Path(record["train"]["adapter_dir"]), out or run_dir
    if out is None:
        out = Path("evals") / (base.replace("/", "_") + (f"-{adapter.name}" if adapter else ""))
    if scoring not in ("ours", "seed", "both"):
        raise UserError(f"--scoring {scoring!r}: use ours, seed or both")
    if generation not in ("greedy", "seed"):
        raise UserError(f"--generation {generation!r}: use greedy or seed")
    if samples <= 0 or (samples > 1 and generation != "seed"):
        raise UserError("--samples > 1 needs --generation seed (greedy decoding gives the same answer every time)")
    if generation == "seed":
        settings = GenerationSettings.seed_compatible(samples=samples, batch_size=batch_size)
    else:
        settings = GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens)
    n_items = len(subset(load_suite(suite)[0].items, limit)) * settings.samples
    with Progress(console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"generating ({n_items} prompts)", total=n_items)
        summary = evaluate(base, str(adapter) if adapter else None, suite, settings, out, limit=limit,
                           progress=lambda n: bar.advance(task, n))
    if record is not None:
        record["eval"] = summary
        records.write_record(run_dir, record)
    if not quiet:
        title = f"{summary['suite']} · {base}" + (f" + {adapter}" if adapter else " (base)") + \
            f" · {settings.mode} generation" + (f", {settings.samples} samples" if settings.samples > 1 else "")
        if scoring == "ours":
            console.print(metric_table(summary, title))
        elif scoring == "seed":
            console.print(metric_table(summary["seed_scoring"], title + " · seed-compatible scoring"))
        else:
            console.print(side_by_side_table(summary, title))
            console.print("seed-compatible = the original scorer: distinct marker-list entries found as substrings "
                          "÷ word count (one-letter markers match inside words, repeats don't count).")
        if summary.get("sampling"):
            key = "seed_metrics" if scoring == "seed" else "metrics"
            spread = summary["sampling"][key]
            console.print("sampling noise (suite mean per draw): " + "; ".join(
                f"{m} {v['min']:.4f}–{v['max']:.4f}" for m, v in spread.items() if v["min"] is not None
                and v["max"] != v["min"]) or "none")
        ppl = summary["perplexity"]
        console.print(f"held-out AGL perplexity: {ppl:.2f}" if ppl else "held-out AGL perplexity: n/a")
    console.print(f"{summary['n_items']} items in {summary['generation_s']:.1f}s "
                  f"(batch {settings.batch_size}, max_new_tokens {settings.max_new_tokens}"
                  + (f", {settings.samples} samples" if settings.samples > 1 else "") + f") → {out}/eval.jsonl")


# ------------------------------------------------------------------------------------------------ use
def _pick_model(base, adapter, run, study, arm, seed, scale, results, exports):
    from ada_slm import inference

    if run is not None:
        return inference.from_run(run)
    if study is not None or arm is not None:
        if study is None or arm is None:
            raise UserError("--study and --arm go together")
        b, a, s = inference.from_study(str(study_path(study)), arm, seed, scale, results, exports)
        err_console.print(f"{arm}: seed {s}, adapter {a}", highlight=False)
        return b, a
    return base, str(adapter) if adapter else None


@eval_app.command("export-lm-eval")
@user_errors
def eval_export_lm_eval(
    out_dir: Path = typer.Argument(..., help="Folder to write (<task>.yaml, <task>.jsonl, utils.py)."),
    suite: str = typer.Option("multilang", "--suite", help="Suite name (suites/NAME.yaml here or shipped) or file."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Generation budget per answer (as in "
                                       "`ada-slm eval`)."),
    task: Optional[str] = typer.Option(None, "--task", help="lm-eval task name (default: agl_<suite name>)."),
):
    """Write an lm-evaluation-harness task folder scored by ada-slm's metrics."""
    from ada_slm.lm_eval_export import export

    if max_new_tokens <= 0:
        raise UserError("--max-new-tokens must be positive")
    path = export(out_dir, suite, max_new_tokens, task)
    name = path.stem
    console.print(f"wrote {path}; run it with:\n  lm_eval --model hf --model_args pretrained=MODEL_DIR,"
                  f"peft=ADAPTER_DIR --include_path {out_dir} --tasks {name} --apply_chat_template", highlight=False)


@app.command("chat")
@user_errors
def chat_cmd(
    base: str = typer.Option("smollm2-135m", "--base", help="Base model."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="PEFT adapter directory."),
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run directory (its base and adapter)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study YAML; with --arm, chat with that arm."),
    arm: Optional[str] = typer.Option(None, "--arm", help="Study arm (its best seed unless --seed)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Study seed; also seeds sampling."),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    results: Path = typer.Option(Path("results"), "--results", help="Results root of the study."),
    exports: Path = typer.Option(Path("exports"), "--exports", help="Adapter root of the study."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy (default); > 0 samples."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass when sampling."),
):
    """Chat in the terminal (streamed; /reset clears the history, /exit or Ctrl-D ends)."""
    from ada_slm import inference

    base, adapter_dir = _pick_model(base, adapter, run, study, arm, seed, scale, results, exports)
    model, tokenizer = inference.load(base, adapter_dir)
    interactive = sys.stdin.isatty()
    err_console.print(f"chatting with {base}" + (f" + {adapter_dir}" if adapter_dir else "") +
                      " — /reset clears the history, /exit ends", highlight=False)

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
    prompts: Path = typer.Option(..., "--prompts", help="Prompts: .txt (one per line) or .jsonl with "
                                 "{\"prompt\": …} or {\"messages\": […]} lines."),
    out: Path = typer.Option(..., "--out", help="Output JSONL; prompts already in it are skipped (resumable)."),
    base: str = typer.Option("smollm2-135m", "--base", help="Base model."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="PEFT adapter directory."),
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run directory (its base and adapter)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generation batch."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens per answer (greedy decoding)."),
):
    """Greedy, batched generation over a file of prompts; each output line carries its prompt, settings and
    AGL metrics."""
    from rich.progress import Progress

    from ada_slm import inference
    from ada_slm.evaluate import GenerationSettings

    if batch_size <= 0 or max_new_tokens <= 0:
        raise UserError("--batch-size and --max-new-tokens must be positive")
    items = inference.read_prompts(prompts)
    base, adapter_dir = _pick_model(base, adapter, run, None, None, None, None, Path("."), Path("."))
    model, tokenizer = inference.load(base, adapter_dir)
    settings = GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("generating", total=len(items))
        n = inference.generate_file(model, tokenizer, items, out, settings,
                                    progress=lambda k: bar.advance(task, k))
    console.print(f"{n} generated, {len(items) - n} already in {out}")


@app.command("export")
@user_errors
def export_cmd(
    adapter: Path = typer.Option(..., "--adapter", help="PEFT adapter directory to merge."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's own base)."),
    out: Path = typer.Option(..., "--out", help="New directory for the merged model."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Merge the adapter into the weights (required)."),
):
    """Write a merged, standalone HF model directory (weights + tokenizer + chat template)."""
    import json

    from ada_slm import inference

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


def study_path(file: str) -> Path:
    """A study file path, or the name of a shipped study (phase14d, phase14e-polyglot)."""
    from importlib import resources

    path = Path(file)
    if not path.is_file():
        shipped = Path(str(resources.files("ada_slm") / "studies")) / f"{file}.yaml"
        if not shipped.is_file():
            raise UserError(f"{file}: no such study file (shipped studies: "
                            + ", ".join(p.stem for p in shipped.parent.glob("*.yaml")) + ")")
        path = shipped
    return path


def _study_specs(file: str, scale: Optional[str], only: Optional[str], seeds: Optional[str], results: Path,
                 exports: Path):
    from ada_slm.study import expand, load_study

    path = study_path(file)
    seed_list = None
    if seeds:
        try:
            seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--seeds {seeds!r}: expected comma-separated integers such as 0,1,2") from None
    study = load_study(path)
    only_list = [a.strip() for a in only.split(",")] if only else None
    return study, expand(study, str(path), scale, only_list, seed_list, results, exports), path


_results_opt = typer.Option(Path("results"), "--results", help="Results root (results/<study>/<arm>/seed<k>).")
_exports_opt = typer.Option(Path("exports"), "--exports", help="Adapter root (exports/<study>/<arm>/seed<k>).")
_only_opt = typer.Option(None, "--only", help="Comma-separated arms (default: all).")
_seeds_opt = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the study's).")


@study_app.command("plan")
@user_errors
def study_plan(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    only: Optional[str] = _only_opt,
    seeds: Optional[str] = _seeds_opt,
    results: Path = _results_opt,
    exports: Path = _exports_opt,
    until_decided: bool = typer.Option(False, "--until-decided", help="Also print the expected runs and time of "
                                       "`study run --until-decided`, simulated from the finished runs' variance "
                                       "components and throughput."),
    max_seeds: Optional[int] = typer.Option(None, "--max-seeds", min=2, help="With --until-decided: runs per "
                                            "arm at most (default: the study's adaptive.max_seeds)."),
):
    """Print the expanded runs, what each arm changes against the baseline, and an estimated time."""
    from ada_slm.stats import factors_between
    from ada_slm.study import differences, estimate_seconds, measured_throughput, state_of

    study, specs, path = _study_specs(file, scale, only, seeds, results, exports)
    base_spec = next((s for s in specs if s.arm == study.baseline), None)
    rate, per_seq = measured_throughput(specs)
    table = Table(title=f"{study.name} ({path}, scale {scale or 'as written'})")
    for col in ("run", "base", "config", "vs baseline", "state", "est. train"):
        table.add_column(col)
    from ada_slm.report import describe

    total = 0.0
    for s in specs:
        fd = factors_between(differences(s.train, base_spec.train if base_spec else None))
        diff = "baseline" if s.arm == study.baseline else (
            ", ".join(f"{k} {v[1]}→{v[0]}" for k, v in fd.factors.items()) + (" (confounded)" if fd.confounded else ""))
        est = estimate_seconds(s, rate, per_seq)
        total += est or 0
        table.add_row(s.key, s.base, describe(s.train), diff, state_of(s), f"{est / 60:.1f} min" if est else "—")
    console.print(table)
    if rate:
        console.print(f"estimated training time of the pending runs: from {rate:,.0f} tokens/s measured in this "
                      f"study's finished runs; total {total / 60:.1f} min for all listed runs (+ evaluation)")
    else:
        console.print("no finished run yet to measure throughput from: run one arm first "
                      "(`ada-slm study run FILE --only ARM --seeds 0`) and `plan` will estimate the rest")
    if until_decided:
        _plan_adaptive(study, path, scale, specs, results, exports, max_seeds)


def _plan_adaptive(study, path, scale, specs, results, exports, max_seeds):
    from ada_slm import adaptive

    d = adaptive.design(study, str(path), scale, sorted({s.seed for s in specs}), results, exports, max_seeds)
    console.print(f"--until-decided: looks at {d.plan.looks} runs per arm on {d.metric}; {adaptive.sequential.RULE}")
    found = adaptive.expected_cost(d)
    if found is None:
        console.print("expected runs: needs two finished runs in the baseline and another arm (run round 1 first)")
        return
    rows, i = found
    console.print(f"simulated from run-mean SD {i.run_mean_sd:.4f}, arm × item SD {i.interaction_sd:.4f}, "
                  f"residual SD {i.residual_sd:.4f}, {i.n_items} items (1000 simulated studies):", highlight=False)
    for e in rows:
        time_left = f", about {e.seconds_left / 3600:.1f} h of runs left" if e.seconds_left is not None else ""
        console.print(f"  {e.scenario}: {e.runs_mean:.1f} runs expected (90 % ≤ {e.runs_p90:.0f}), decided before "
                      f"max seeds in {100 * e.decided:.0f} %{time_left}", highlight=False)


@study_app.command("run")
@user_errors
def study_run(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    only: Optional[str] = _only_opt,
    seeds: Optional[str] = _seeds_opt,
    results: Path = _results_opt,
    exports: Path = _exports_opt,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the runs are done."),
    executor: str = typer.Option("local", "--executor", help="local: one run after another on this machine; "
                                 "ray: every run a Ray task (results and exports on storage all nodes share)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: 'auto' or ray://host:10001; "
                                          "default: start a local Ray instance."),
    cpus_per_run: Optional[float] = typer.Option(None, "--cpus-per-run", help="Ray: CPUs per run (default: one "
                                                 "node's CPUs, so CPU runs don't share cores)."),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="Ray: GPUs per run (default: 1 "
                                                 "when the cluster has GPUs, else 0)."),
    track: Optional[str] = typer.Option(None, "--track", help="Mirror runs to 'mlflow' (nested study → arm → "
                                        "seed runs) or 'tensorboard' (scalars under each run directory)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                                               "sqlite:///<results>/mlflow.db)."),
    until_decided: bool = typer.Option(False, "--until-decided", help="Adaptive: after the study's seeds, add "
                                       "runs in rounds to the arms whose questions are still open (and drop arms "
                                       "clearly worse than the leader in a sweep) until every question is answered; "
                                       "group-sequential rule, see README."),
    max_seeds: Optional[int] = typer.Option(None, "--max-seeds", min=2, help="With --until-decided: runs per "
                                            "arm at most (default: the study's adaptive.max_seeds)."),
    budget_hours: Optional[float] = typer.Option(None, "--budget-hours", min=0.0, help="With --until-decided: "
                                                 "start no new round once the study's measured run time plus "
                                                 "the round's would exceed this."),
):
    """Run every unfinished (arm, seed) in its own process; finished runs are skipped, so re-running resumes."""
    from ada_slm import tracking
    from ada_slm.display import StudyDisplay
    from ada_slm.executors import LocalExecutor, RayExecutor, run_study
    from ada_slm.study import state_of, validate_models

    check_track(track)
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor}: choose local or ray")
    if executor == "local" and (address or cpus_per_run or gpus_per_run is not None):
        raise UserError("--address/--cpus-per-run/--gpus-per-run need --executor ray")
    if (max_seeds or budget_hours is not None) and not until_decided:
        raise UserError("--max-seeds/--budget-hours need --until-decided")
    if until_decided and only:
        raise UserError("--only cannot be combined with --until-decided (the rounds decide which arms run)")
    study, specs, path = _study_specs(file, scale, only, seeds, results, exports)
    validate_models(specs)
    runner = RayExecutor(address, cpus_per_run, gpus_per_run) if executor == "ray" else LocalExecutor()
    study_runs, tracking_for = None, None
    if track == "mlflow":
        study_runs = tracking.StudyRuns(tracking_uri or tracking.default_uri(results), study.name, scale or "default",
                                        sorted({s.arm for s in specs}),
                                        {"study_file": str(path), "scale": scale or "default",
                                         "seeds": sorted({s.seed for s in specs})})
        tracking_for = lambda s: study_runs.spec_for(s.arm, s.seed, s.key)  # noqa: E731
    elif track == "tensorboard":
        tracking_for = lambda s: tracking.Tracking(kind="tensorboard", run_name=s.key)  # noqa: E731
    start = time.perf_counter()
    counts = {"failed": 1}
    try:
        try:
            if until_decided:
                specs, counts = _run_rounds(study, path, scale, specs, results, exports, runner, tracking_for,
                                            max_seeds, budget_hours)
            else:
                with StudyDisplay(study.name, specs, {s.key: state_of(s) for s in specs}, console) as display:
                    counts = run_study(study, specs, results, executor=runner, tracking_for=tracking_for,
                                       events=display)
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are kept; run the same command again to continue")
            raise typer.Exit(130)
        console.print(f"done {counts['done']}, failed {counts['failed']}, pending {counts['pending']} "
                      f"in {time.perf_counter() - start:.0f}s")
        if report:
            md = _write_report(study, specs, scale, results)
            if study_runs:
                study_runs.log_report([md, md.with_suffix(".html"), *sorted(md.parent.glob("*.png"))])
    finally:
        if study_runs:
            study_runs.end(failed=bool(counts["failed"]))
    if counts["failed"]:
        raise typer.Exit(2)


def _run_rounds(study, path, scale, specs, results, exports, runner, tracking_for, max_seeds, budget_hours):
    """`study run --until-decided`: rounds of run_study until decided; (every run of the last look, counts)."""
    from ada_slm import adaptive
    from ada_slm.display import StudyDisplay
    from ada_slm.executors import run_study
    from ada_slm.study import state_of

    def run_round(round_specs):
        with StudyDisplay(study.name, round_specs, {s.key: state_of(s) for s in round_specs}, console) as display:
            return run_study(study, round_specs, results, executor=runner, tracking_for=tracking_for, events=display)

    d = adaptive.design(study, str(path), scale, sorted({s.seed for s in specs}), results, exports, max_seeds)
    progress, counts = adaptive.run_until_decided(d, run_round, budget_hours,
                                                  lambda p: console.print(adaptive.describe_look(p), highlight=False))
    return progress.specs or specs, counts


def _write_report(study, specs, scale, results: Path, analysis=None):
    from ada_slm.report import build_report

    md = build_report(study, specs, scale, results / study.name, analysis)
    console.print(f"report: {md} and {md.with_suffix('.html')}")
    return md


@study_app.command("status")
@user_errors
def study_status(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
):
    """Show which runs are done, failed or pending."""
    from ada_slm.study import state_of

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    table = Table(title=f"{study.name} status")
    for col in ("run", "state", "detail"):
        table.add_column(col)
    for s in specs:
        st = state_of(s)
        try:
            rec = records.read_record(s.run_dir) or {}
        except records.CorruptRecord as e:
            rec = {"status": {"reason": str(e)}}
        detail = (rec.get("status") or {}).get("reason") or ""
        if st == "done" and rec.get("train"):
            detail = f"held-out loss {rec['train'].get('final_val_loss') or float('nan'):.4f}"
        table.add_row(s.key, st, detail)
    console.print(table)


@study_app.command("report")
@user_errors
def study_report(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
    show: bool = typer.Option(True, "--show/--no-show", help="Print the comparison to the terminal."),
):
    """Write results/<study>/report.md, report.html and plots from the finished runs."""
    from rich.markdown import Markdown

    from ada_slm.analysis import analyse
    from ada_slm.report import summary

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    analysis = analyse(study, specs, scale)
    _write_report(study, specs, scale, results, analysis)
    if show:  # the series summary, designs, decision and power, rendered from the same analysis
        console.print(Markdown(summary(analysis)))


@study_app.command("next")
@user_errors
def study_next(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the follow-up study (default: "
                                       "<results>/<study>/next-study.yaml)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the follow-up study (default: <study>-next)."),
    run: bool = typer.Option(False, "--run", help="Run the follow-up study right away (`ada-slm study run FILE`)."),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
):
    """Write the follow-up study the decision block recommends (Path A/B/C config, the best arm as baseline,
    seeds from the power simulation) as a YAML file to read and edit; --run runs it."""
    import subprocess

    from ada_slm.next_study import write_next_study

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    target = out or results / study.name / "next-study.yaml"
    result = write_next_study(study, specs, scale, target, name)
    console.print(f"recommended: {result.recommendation}", highlight=False)
    if result.path is None:
        console.print("nothing to write: the matching rule changes no config (add seeds, e.g. "
                      f"`ada-slm study power {file}`)", highlight=False)
        return
    console.print(f"baseline: {result.best_arm} (best on the decision metric); next: {result.changes}",
                  highlight=False)
    console.print(f"seeds: {result.seeds_reason}", highlight=False)
    console.print(f"wrote {result.path}: check it with `ada-slm study plan {result.path}`", highlight=False)
    if run:
        cmd = [sys.executable, "-m", "ada_slm.cli", "study", "run", str(result.path), "--results", str(results),
               "--exports", str(exports)]
        raise typer.Exit(subprocess.run(cmd).returncode)


@study_app.command("power")
@user_errors
def study_power(
    file: str = typer.Argument(..., help=STUDY_FILE_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric (default: the decision's)."),
    effect: Optional[float] = typer.Option(None, "--effect", help="A difference to detect: print the runs per "
                                           "arm it needs at 80 % power (default: the decision's min_effect)."),
    run_mean_sd: Optional[float] = typer.Option(None, "--run-mean-sd", help="Instead of a finished study's: SD "
                                                "of one run's mean on the metric."),
    interaction_sd: float = typer.Option(0.0, "--interaction-sd", help="With --run-mean-sd: arm × item SD."),
    residual_sd: float = typer.Option(0.0, "--residual-sd", help="With --run-mean-sd: run × item residual SD."),
    items: int = typer.Option(133, "--items", help="With --run-mean-sd: items in the suite."),
    seeds: int = typer.Option(3, "--runs", help="With --run-mean-sd: runs per arm now."),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
):
    """Smallest difference the seed-level rule detects with 80 % power, and runs per arm for a given one —
    by simulation, from a finished study's variance components or stated ones."""
    from ada_slm import stats
    from ada_slm.analysis import collect, power, power_from
    from ada_slm.study import _check_metric

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    metric = metric or (study.decision.metric if study.decision else "agl_awareness")
    try:
        _check_metric(metric)
    except ValueError as e:
        raise UserError(f"--metric: {e}") from None
    n_tests = len(study.decision.questions) if study.decision else 1
    if run_mean_sd is not None:
        inputs = stats.PowerInputs(run_mean_sd, residual_sd, interaction_sd, items)
        result = power_from(inputs, metric, seeds, n_tests, effect)
        source = "stated variance components"
    else:
        result = power(study, collect(specs), metric, effect)
        if result is None:
            raise UserError(f"{file}: power needs two finished runs in the baseline and another arm "
                            f"(or pass --run-mean-sd)")
        source = f"the variance components of {study.name}'s finished runs"
    i = result.inputs
    console.print(f"{metric}: from {source} (run-mean SD {i.run_mean_sd:.4f}, arm × item SD "
                  f"{i.interaction_sd:.4f}, residual SD {i.residual_sd:.4f}, {i.n_items} items), α {result.alpha:.3g}")
    for k, v in result.detectable.items():
        console.print(f"  {k:3d} runs per arm: smallest Δ detected with 80 % power {v:.4f}"
                      + ("  (now)" if k == result.n_seeds else ""), highlight=False)
    if result.min_effect:
        console.print(f"runs per arm for Δ = {result.min_effect:g}: "
                      + (str(result.seeds_for_min_effect) if result.seeds_for_min_effect else "more than 100"))


@study_app.command("serve")
@user_errors
def study_serve(
    file: Optional[str] = typer.Argument(None, help=STUDY_FILE_HELP + " Default: the one study under --results."),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP + " Default: the preset of the runs "
                                        "on disk."),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
):
    """A live page of the study in the browser: the arm × seed grid, loss curves, the report's comparison and
    decision as runs finish. Read-only: run it beside `study run` at any time."""
    from ada_slm import serve
    from ada_slm.study import expand, load_study

    path = study_path(file or serve.default_study(results))
    study = load_study(path)
    if scale is None:
        scale = serve.infer_scale(study, str(path), results, exports)
        if scale is None and study.scale:
            console.print(f"scale: as written (no run on disk says otherwise; --scale {'|'.join(study.scale)} "
                          "chooses one)", highlight=False)
    specs = expand(study, str(path), scale, results_root=results, exports_root=exports)
    serve.serve(study, specs, scale, results, host, port,
                announce=lambda line: console.print(line, highlight=False, markup=False))


@study_app.command("audit")
@user_errors
def study_audit(file: str = typer.Argument("phase14d-reported", help="A table of reported single-run numbers "
                                           "(YAML; default: the seed's Phase 14D table).")):
    """Say, claim by claim, what a published table of single runs can and cannot support."""
    from importlib import resources

    from ada_slm.audit import audit, load_reported

    path = Path(file)
    if not path.is_file():
        path = Path(str(resources.files("ada_slm") / "studies")) / f"{file}.yaml"
        if not path.is_file():
            raise UserError(f"{file}: no such file")
    rep = load_reported(path)
    console.print(f"[bold]Audit of {rep.name}[/] — {rep.source}")
    for heading, lines in audit(rep):
        console.print(f"\n[bold]{heading}[/]", highlight=False)
        for line in lines:
            console.print(f"  • {line}", highlight=False)


@study_app.command("exec", hidden=True)
def study_exec(run_dir: Path = typer.Argument(...)):
    """Internal: train and evaluate one run of a study (the Ray executor starts one process per run)."""
    from ada_slm.executors import exec_run

    raise typer.Exit(exec_run(run_dir))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
