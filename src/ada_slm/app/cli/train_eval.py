"""`ada-slm train` and `ada-slm eval …`: one training run; scoring a model on a suite."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table
from typer.core import TyperGroup

from ada_slm.app.cli.common import app, check_track, console, err_console, user_errors
from ada_slm.errors import UserError
from ada_slm.run import records, runlock, tracking
from ada_slm.run.config import load_config
from ada_slm.run.lm_eval_export import export
from ada_slm.run.suites import MAX_NEW_TOKENS, GenerationSettings, load_suite, subset


@app.command("train", context_settings={"allow_extra_args": False})
@user_errors
def train_cmd(
    args: list[str] = typer.Argument(
        None,
        metavar="[CONFIG.yaml] [key.sub=value ...]",
        help="A run config (YAML) and/or overrides such as lora.r=32 batch.micro=1.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    merge: bool = typer.Option(False, "--merge", help="Also write a merged model next to the adapter."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or config dump (for subprocesses)."),
    track: str | None = typer.Option(
        None,
        "--track",
        help="Mirror the run to 'mlflow', 'tensorboard' "
        "(scalars under <out_dir>/tensorboard) or 'wandb' (WANDB_MODE=offline: "
        "local files under <out_dir>/wandb).",
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<out_dir>/../mlflow.db)."
    ),
):
    """Train one LoRA adapter; writes <out_dir>/record.json and the PEFT adapter."""
    from ada_slm.run.train import run  # loads torch: only the commands that train or generate pay for it

    args = list(args or [])
    config_path = None
    if args and "=" not in args[0]:
        config_path = args.pop(0)
    bad = [a for a in args if "=" not in a]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}: give one CONFIG.yaml first, then key.sub=value overrides")
    cfg = load_config(config_path, args)
    if track:
        check_track(track)
    with runlock.hold(cfg.out_dir, "out_dir"):  # a tracker writes into the run folder too: only once the folder is ours
        tracker = None
        if track:
            out_dir = Path(cfg.out_dir)
            tracker = tracking.open_tracker(
                tracking.Tracking(
                    kind=track, uri=tracking_uri or tracking.default_uri(out_dir.parent), run_name=out_dir.name
                ),
                out_dir,
            )
        record = {"status": {"state": "interrupted"}}
        try:
            record = run(
                cfg, resume=resume, quiet=quiet, merge=merge, console=console if not quiet else None, tracker=tracker
            )
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
        per_lang = [
            ("—" if summary["by_lang"][lang][name] is None else f"{summary['by_lang'][lang][name]:.4f}")
            for lang in langs
        ]
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


eval_app = typer.Typer(
    cls=_EvalGroup,
    no_args_is_help=True,
    help="Score models on an eval suite (`ada-slm eval "
    "[RUN_DIR] [OPTIONS]`, see `ada-slm eval run --help`), or export the suite to lm-eval.",
)
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
@user_errors
def eval_cmd(
    run_dir: Path | None = typer.Argument(
        None, help="A finished training run: evaluate its adapter and write the result into its record.json."
    ),
    base: str = typer.Option("smollm2-135m", "--base", help="Base model (ignored with RUN_DIR: the run's base)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter directory; none = the base arm."),
    suite: str = typer.Option("multilang", "--suite", help="Suite name (suites/NAME.yaml here or shipped) or file."),
    out: Path | None = typer.Option(
        None, "--out", help="Where eval.jsonl and eval_summary.json go (default: RUN_DIR, or evals/<base>[-<adapter>])."
    ),
    batch_size: int = typer.Option(
        32,
        "--batch-size",
        help="Prompts per generation batch (outputs are identical at any size; 32 measured 5.8× one at a time).",
    ),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Generation budget per answer."),
    limit: int | None = typer.Option(
        None, "--limit", help="Only N suite items, spread evenly over the suite (quick checks)."
    ),
    scoring: str = typer.Option(
        "ours",
        "--scoring",
        help="ours (AGL.md metrics), seed (the seed study's scorer, "
        "for comparison with published numbers) or both, side by side.",
    ),
    generation: str = typer.Option(
        "greedy",
        "--generation",
        help="greedy (chat template, deterministic) or seed "
        "(raw prompt, temperature 0.8, repetition penalty 1.1, 150 tokens — seeded).",
    ),
    samples: int = typer.Option(
        1,
        "--samples",
        help="Draws per prompt with --generation seed; the spread across draws is reported as sampling noise.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        help="Reuse the outputs of an identical earlier "
        "evaluation (same weights, prompts, settings, precision, code) from "
        "$ADA_SLM_CACHE/eval-cache, and store new ones there.",
    ),
):
    """Score a model (base, base + adapter, or a finished run) on an evaluation suite."""
    from ada_slm.run.eval_cache import EvalCache, user_cache_dir  # loads torch: see train_cmd
    from ada_slm.run.evaluate import evaluate  # loads torch: see train_cmd

    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    if batch_size <= 0 or max_new_tokens <= 0:
        raise UserError("--batch-size and --max-new-tokens must be positive")
    if max_new_tokens > MAX_NEW_TOKENS:
        raise UserError(f"--max-new-tokens {max_new_tokens}: at most {MAX_NEW_TOKENS}")
    record = None
    if run_dir is not None:
        record, base, adapter, out = _trained_run(run_dir, out)
    if out is None:
        out = Path("evals") / (base.replace("/", "_") + (f"-{adapter.name}" if adapter else ""))
    settings = _generation_settings(scoring, generation, samples, batch_size, max_new_tokens)
    n_items = len(subset(load_suite(suite)[0].items, limit)) * settings.samples
    with Progress(console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"generating ({n_items} prompts)", total=n_items)
        summary = evaluate(
            base,
            str(adapter) if adapter else None,
            suite,
            settings,
            out,
            limit=limit,
            progress=lambda n: bar.advance(task, n),
            cache=EvalCache(user_cache_dir()) if cache else None,
        )
    if record is not None and run_dir is not None:  # (a record is read only from RUN_DIR)
        record.eval = records.EvalSection.model_validate(summary)
        records.write_record(run_dir, record)
    if not quiet:
        _print_scores(summary, settings, base, adapter, scoring)
    if summary["cached_from"]:
        console.print(
            f"outputs from the eval cache (generated by {summary['cached_from']['run']} at "
            f"{summary['cached_from']['generated_at']}); --no-cache generates them again",
            highlight=False,
        )
    console.print(
        f"{summary['n_items']} items in {summary['generation_s']:.1f}s "
        f"(batch {settings.batch_size}, max_new_tokens {settings.max_new_tokens}"
        + (f", {settings.samples} samples" if settings.samples > 1 else "")
        + f") → {out}/eval.jsonl"
    )


def _trained_run(run_dir: Path, out: Path | None) -> tuple[records.RunRecord, str, Path | None, Path]:
    """(record, base, adapter, out) of a finished training run that `eval RUN_DIR` scores."""
    record = records.read_record(run_dir)
    if record is None:
        raise UserError(f"{run_dir}: no record.json (not a training run directory)")
    if not records.is_trained(record):
        raise UserError(f"{records.record_path(run_dir)}: run is not complete ({records.state(record)})")
    base = records.base_model(record)
    if base is None:
        raise UserError(f"{records.record_path(run_dir)}: the record names no base model")
    adapter_dir = records.adapter_dir(record)
    return record, base, Path(adapter_dir) if adapter_dir else None, out or run_dir


def _generation_settings(
    scoring: str, generation: str, samples: int, batch_size: int, max_new_tokens: int
) -> GenerationSettings:
    """The settings `eval`'s options ask for, refused when they contradict each other."""
    if scoring not in ("ours", "seed", "both"):
        raise UserError(f"--scoring {scoring!r}: use ours, seed or both")
    if generation not in ("greedy", "seed"):
        raise UserError(f"--generation {generation!r}: use greedy or seed")
    if samples <= 0 or (samples > 1 and generation != "seed"):
        raise UserError("--samples > 1 needs --generation seed (greedy decoding gives the same answer every time)")
    if generation == "seed":
        return GenerationSettings.seed_compatible(samples=samples, batch_size=batch_size)
    return GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens)


def _print_scores(summary: dict, settings: GenerationSettings, base: str, adapter: Path | None, scoring: str) -> None:
    """The metric table(s) of `eval`, the sampling noise and the perplexity."""
    title = (
        f"{summary['suite']} · {base}"
        + (f" + {adapter}" if adapter else " (base)")
        + f" · {settings.mode} generation"
        + (f", {settings.samples} samples" if settings.samples > 1 else "")
    )
    if scoring == "ours":
        console.print(metric_table(summary, title))
    elif scoring == "seed":
        console.print(metric_table(summary["seed_scoring"], title + " · seed-compatible scoring"))
    else:
        console.print(side_by_side_table(summary, title))
        console.print(
            "seed-compatible = the original scorer: distinct marker-list entries found as substrings "
            "÷ word count (one-letter markers match inside words, repeats don't count)."
        )
    if summary.get("sampling"):
        key = "seed_metrics" if scoring == "seed" else "metrics"
        spread = summary["sampling"][key]
        console.print(
            "sampling noise (suite mean per draw): "
            + "; ".join(
                f"{m} {v['min']:.4f}–{v['max']:.4f}"
                for m, v in spread.items()
                if v["min"] is not None and v["max"] != v["min"]
            )
            or "none"
        )
    ppl = summary["perplexity"]
    console.print(f"held-out AGL perplexity: {ppl:.2f}" if ppl else "held-out AGL perplexity: n/a")


# ------------------------------------------------------------------------------------------------ use
@eval_app.command("export-lm-eval")
@user_errors
def eval_export_lm_eval(
    out_dir: Path = typer.Argument(..., help="Folder to write (<task>.yaml, <task>.jsonl, utils.py)."),
    suite: str = typer.Option("multilang", "--suite", help="Suite name (suites/NAME.yaml here or shipped) or file."),
    max_new_tokens: int = typer.Option(
        48, "--max-new-tokens", help="Generation budget per answer (as in `ada-slm eval`)."
    ),
    task: str | None = typer.Option(None, "--task", help="lm-eval task name (default: agl_<suite name>)."),
):
    """Write an lm-evaluation-harness task folder scored by ada-slm's metrics."""
    if max_new_tokens <= 0:
        raise UserError("--max-new-tokens must be positive")
    path = export(out_dir, suite, max_new_tokens, task)
    name = path.stem
    console.print(
        f"wrote {path}; run it with:\n  lm_eval --model hf --model_args pretrained=MODEL_DIR,"
        f"peft=ADAPTER_DIR --include_path {out_dir} --tasks {name} --apply_chat_template",
        highlight=False,
    )
