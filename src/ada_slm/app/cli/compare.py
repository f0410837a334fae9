"""`ada-slm compare`: run-level statistics and the study report for runs made with other tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.markdown import Markdown

from ada_slm.app.cli.common import app, console, err_console, user_errors
from ada_slm.errors import UserError
from ada_slm.run.config import format_validation_error


def _arms(options: list[str]) -> dict[str, list[str]]:
    arms: dict[str, list[str]] = {}
    for option in options:
        name, sep, paths = option.partition("=")
        if not sep or not name.strip() or not paths.strip():
            raise UserError(f"--arm {option}: expected NAME=PATH[,PATH...], e.g. --arm r16=evals/r16-s0,evals/r16-s1")
        if name.strip() in arms:
            raise UserError(f"--arm {name.strip()}: named twice")
        arms[name.strip()] = [p.strip() for p in paths.split(",") if p.strip()]
    return arms


def _spec(
    spec_file: Path | None,
    arm: list[str],
    baseline,
    metric,
    margin,
    min_effect,
    min_shared,
    name,
    allow_differing: Sequence[str] = (),
):
    # the run readers and the statistics load scipy: imported when `compare` runs, not at every command's start
    from ada_slm.analysis.compare.analysis import CompareSpec, load_spec
    from ada_slm.analysis.compare.readers import TABLE_SUFFIXES, read_table

    overrides = {
        k: v
        for k, v in {
            "baseline": baseline,
            "metric": metric,
            "min_effect": min_effect,
            "min_shared": min_shared,
            "name": name,
            "equivalence_margin": margin,
            "allow_differing": list(allow_differing) or None,
        }.items()
        if v is not None
    }
    if spec_file is not None and spec_file.suffix in (".yaml", ".yml"):
        if arm:
            raise UserError("give the arms either in the YAML file or as --arm options, not both")
        spec = load_spec(spec_file)
        raw = {**spec.model_dump(exclude_unset=True), "arms": spec.arms, **overrides}
    elif spec_file is not None and spec_file.suffix in TABLE_SUFFIXES:
        if arm:
            raise UserError(
                f"{spec_file}: a table given alone names its arms in its arm column; with --arm, give "
                "it as an arm's path (--arm NAME=TABLE)"
            )
        runs = read_table(spec_file)
        if any(r.arm is None for r in runs):
            raise UserError(f"{spec_file}: no arm column (or an empty arm): name the arms with --arm NAME=TABLE")
        raw = {"arms": {a: [str(spec_file)] for a in dict.fromkeys(r.arm for r in runs)}, **overrides}
    elif spec_file is not None:
        raise UserError(
            f"{spec_file}: give a compare YAML file (.yaml), a table (.csv, .jsonl, .parquet) or --arm options"
        )
    else:
        if not arm:
            raise UserError("nothing to compare: give --arm NAME=PATH[,PATH...] at least twice, or a YAML file")
        raw = {"arms": _arms(arm), **overrides}
    try:
        spec = CompareSpec.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(spec_file) if spec_file else "--arm")) from None
    return spec


WIDE_COLUMNS = 120  # below this, the printed summary gives a block per table row


def _print_summary(doc, wide: bool) -> None:
    """The report without its title: Markdown tables in a wide terminal (or with --wide), else a block per row."""
    doc.blocks = [b for b in doc.blocks if not (b[0] == "h" and b[1] == 1)]
    if wide or console.width >= WIDE_COLUMNS:
        console.print(Markdown(doc.markdown()))
    else:  # a narrow terminal or a pipe: a block per table row, nothing wrapped over nine lines
        console.print(doc.plain(console.width), highlight=False, markup=False)


@app.command("compare")
@user_errors
def compare(
    spec_file: Path | None = typer.Argument(
        None, help="A compare YAML file (arms, baseline, metric, …), or a table with an arm column. Or use --arm."
    ),
    arm: list[str] = typer.Option(
        [],
        "--arm",
        help="NAME=PATH[,PATH...]: an arm and its runs (repeat for each "
        "arm). A path is an lm-eval --output_path folder or results_*.json, an Inspect "
        "log, a trainer output folder or trainer_state.json, an ada-slm run folder, or a "
        "table (.csv/.jsonl/.parquet: run, item, metric, score[, arm, seed]).",
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="The arm to compare against (default: the arm named base, else the first arm)."
    ),
    allow_differing: list[str] = typer.Option(
        [],
        "--allow-differing",
        help="KEY: a setting (e.g. temperature) "
        "that may differ between the runs' task configurations because it "
        "is the factor compared; repeat for more. The report names it.",
    ),
    metric: str | None = typer.Option(None, "--metric", help="The primary metric (default: the runs' first)."),
    equivalence_margin: float | None = typer.Option(
        None,
        "--equivalence-margin",
        help="Test equivalence (TOST) of every arm with the baseline within ±this on the primary metric.",
    ),
    min_effect: float | None = typer.Option(
        None,
        "--min-effect",
        help="A difference worth detecting: the report says how many runs per arm detect it with 80 % power.",
    ),
    min_shared: float | None = typer.Option(
        None,
        "--min-shared",
        help="Refuse when fewer than this share of a metric's items are scored in every run (default 0.9).",
    ),
    name: str | None = typer.Option(None, "--name", help="The comparison's name (the report's title)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Write report.md, report.html and comparisons.json "
        "here (default: print the summary only); a folder holding a report is "
        "refused unless --force.",
    ),
    force: bool = typer.Option(False, "--force", help="With --out: replace a report already there."),
    wide: bool = typer.Option(
        False,
        "--wide",
        help="Print the tables as tables even in a terminal under "
        f"{WIDE_COLUMNS} columns or a pipe (there: a block per row).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the typed result as JSON (for scripts)."),
    serve: bool = typer.Option(
        False, "--serve", help="Then show the result on `study serve`'s page in the browser (read once; Ctrl-C stops)."
    ),
    port: int = typer.Option(
        8765, "--port", min=0, max=65535, help="With --serve: port to listen on (0: any free port)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="With --serve: address to listen on (default: this machine only)."
    ),
):
    """Compare runs made with other tools (lm-eval, Inspect, HF Trainer/TRL, ada-slm, any table) with the
    statistics of a study: the run is the unit, items are matched by id, Holm, TOST, power."""
    from ada_slm.analysis.compare.analysis import compare as run_compare  # loads scipy: see _spec
    from ada_slm.analysis.compare.analysis import to_json
    from ada_slm.analysis.compare.report import render, write_report
    from ada_slm.app.serve import listen

    spec = _spec(spec_file, arm, baseline, metric, equivalence_margin, min_effect, min_shared, name, allow_differing)
    result = run_compare(spec)
    sock = None
    if serve:  # a port in use is refused before anything is printed or written
        sock = listen(host, port)
    if out is not None:
        md = write_report(result, out, force)
        if not as_json:
            console.print(f"report: {md} and {md.with_suffix('.html')}", highlight=False)
    if as_json:
        print(json.dumps(to_json(result), ensure_ascii=False, indent=2))
    else:
        _print_summary(render(result), wide)
    if sock is not None:
        _serve(result, spec.name, out, sock, host, as_json)


def _serve(result, name: str, out: Path | None, sock, host: str, as_json: bool) -> None:
    """`compare --serve`: the result on `study serve`'s page until Ctrl-C."""
    from ada_slm.app.serve import serve_view  # loads scipy: see _spec
    from ada_slm.app.serve_compare import CompareView

    view = CompareView(result, str(out) if out is not None else None)
    console_for = err_console if as_json else console  # with --json, stdout is the JSON document
    serve_view(
        view, sock, f"comparison {name}", host, lambda line: console_for.print(line, highlight=False, markup=False)
    )
