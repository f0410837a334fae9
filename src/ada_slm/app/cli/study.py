"""`ada-slm study …`: plan and run (study_run.py), status, report, next, power, serve, audit."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib import resources
from pathlib import Path

import typer
from filelock import FileLock, Timeout
from rich.markdown import Markdown
from rich.table import Table

from ada_slm.app.cli import study_run  # noqa: F401 (registers `study plan` and `study run` first, as before)
from ada_slm.app.cli.common import SCALE_HELP, STUDY_FILE_HELP, console, err_console, study_app, study_path, user_errors
from ada_slm.app.cli.study_options import EXPORTS_OPT, FILE_ARG, RESULTS_OPT, SCALE_OPT, study_specs
from ada_slm.app.cli.study_run import write_report
from ada_slm.errors import UserError
from ada_slm.run import records
from ada_slm.run.metrics import RUN_METRICS
from ada_slm.run.suites import load_suite, subset
from ada_slm.study.decision import check_metric
from ada_slm.study.executors import exec_run
from ada_slm.study.spec import expand, load_study, state_of


@study_app.command("status")
@user_errors
def study_status(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
):
    """Show which runs are done, failed or pending — and first, whether trained runs differ in precision."""
    study, specs, _ = study_specs(file, scale, None, None, results, exports)
    table = Table(title=f"{study.name} status")
    for col in ("run", "state", "detail"):
        table.add_column(col)
    precisions: dict[str, list[str]] = {}  # training precision -> runs (record meta.precision)
    for s in specs:
        st = state_of(s)
        try:
            rec = records.read_record(s.run_dir)
            detail = (rec.status.reason if rec is not None else None) or ""
        except records.CorruptRecord as e:
            rec, detail = None, str(e)
        if st == "done" and rec is not None and rec.train is not None:
            precision = (rec.meta or {}).get("precision")
            detail = f"held-out loss {rec.train.final_val_loss or float('nan'):.4f}" + (
                f", {precision}" if precision else ""
            )
            if precision:
                precisions.setdefault(str(precision), []).append(s.key)
        table.add_row(s.key, st, detail)
    if len(precisions) > 1:  # a study resumed on another machine kind, or a Ray cluster of mixed kinds
        err_console.print(
            "warning: runs trained in different precisions ("
            + "; ".join(f"{p}: {len(keys)} run(s), e.g. {keys[0]}" for p, keys in sorted(precisions.items()))
            + "); the report "
            "labels comparisons between them confounded by precision"
        )
    console.print(table)


@study_app.command("report")
@user_errors
def study_report(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
    show: bool = typer.Option(True, "--show/--no-show", help="Print the comparison to the terminal."),
    rescore: bool = typer.Option(
        False,
        "--rescore",
        help="First re-score every finished run's stored outputs "
        "(eval.jsonl) with today's metrics and suite items: new or changed metrics "
        "without generating again.",
    ),
):
    """Write results/<study>/report.md, report.html and plots from the finished runs."""
    from ada_slm.analysis.analysis import analyse  # loads scipy: only the commands that analyse pay for it
    from ada_slm.analysis.report.writer import summary

    study, specs, _ = study_specs(file, scale, None, None, results, exports)
    if rescore:
        _rescore(study, specs, results)
    analysis = analyse(study, specs, scale)
    write_report(study, specs, scale, results, analysis)
    if show:  # the series summary, designs, decision and power, rendered from the same analysis
        console.print(Markdown(summary(analysis)))


def _rescore(study, specs, results: Path) -> None:
    """`study report --rescore`, under the study's lock: a runner writing records meanwhile would race it."""
    from ada_slm.run.eval_cache import rescore_runs  # loads torch: only --rescore pays for it

    root = results / study.name
    if not root.is_dir():
        return
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(
            f"{root}/.lock: a `study run` of this study is running; --rescore rewrites its records, "
            "so run it when that has finished"
        ) from None
    try:
        keys = rescore_runs(specs)
    finally:
        lock.release()
    console.print(f"rescored {len(keys)} runs from their stored outputs (nothing generated)", highlight=False)


@study_app.command("next")
@user_errors
def study_next(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the follow-up study (default: <results>/<study>/next-study.yaml)."
    ),
    name: str | None = typer.Option(None, "--name", help="Name of the follow-up study (default: <study>-next)."),
    run: bool = typer.Option(False, "--run", help="Run the follow-up study right away (`ada-slm study run FILE`)."),
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
):
    """Write the follow-up study the decision block recommends (Path A/B/C config, the best arm as baseline,
    seeds from the power simulation) as a YAML file to read and edit; --run runs it."""
    from ada_slm.analysis.next_study import write_next_study  # loads scipy: see study_report

    study, specs, _ = study_specs(file, scale, None, None, results, exports)
    target = out or results / study.name / "next-study.yaml"
    result = write_next_study(study, specs, scale, target, name)
    console.print(f"recommended: {result.recommendation}", highlight=False)
    if result.path is None:
        console.print(
            f"nothing to write: the matching rule changes no config (add seeds, e.g. `ada-slm study power {file}`)",
            highlight=False,
        )
        return
    console.print(f"baseline: {result.best_arm} (best on the decision metric); next: {result.changes}", highlight=False)
    console.print(f"seeds: {result.seeds_reason}", highlight=False)
    console.print(f"wrote {result.path}: check it with `ada-slm study plan {result.path}`", highlight=False)
    if run:
        cmd = [
            sys.executable,
            "-m",
            "ada_slm.app.cli",
            "study",
            "run",
            str(result.path),
            "--results",
            str(results),
            "--exports",
            str(exports),
        ]
        raise typer.Exit(subprocess.run(cmd).returncode)


@study_app.command("power")
@user_errors
def study_power(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    metric: str | None = typer.Option(None, "--metric", help="Metric (default: the decision's)."),
    effect: float | None = typer.Option(
        None,
        "--effect",
        help="A difference to detect: print the runs per "
        "arm it needs at 80 % power (default: the decision's min_effect).",
    ),
    run_mean_sd: float | None = typer.Option(
        None, "--run-mean-sd", help="Instead of a finished study's: SD of one run's mean on the metric."
    ),
    interaction_sd: float = typer.Option(0.0, "--interaction-sd", help="With --run-mean-sd: arm × item SD."),
    residual_sd: float = typer.Option(0.0, "--residual-sd", help="With --run-mean-sd: run × item residual SD."),
    items: int | None = typer.Option(
        None, "--items", help="With --run-mean-sd: items in the suite (default: the suite's, see --suite)."
    ),
    suite: str | None = typer.Option(
        None,
        "--suite",
        help="Show the detectable Δ at this suite's item count "
        "(name or file; default: the study's eval.suite at this scale, with its "
        "limit), e.g. the generated agl-heldout.",
    ),
    seeds: int = typer.Option(3, "--runs", help="With --run-mean-sd: runs per arm now."),
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
):
    """Smallest difference the seed-level rule detects with 80 % power, and runs per arm for a given one —
    by simulation, from a finished study's variance components or stated ones."""
    from ada_slm.analysis.analysis import questions_asked
    from ada_slm.analysis.arms import collect
    from ada_slm.analysis.power import Power, power, power_from
    from ada_slm.stats.power_simulation import PowerInputs  # loads scipy: see study_report

    study, specs, _ = study_specs(file, scale, None, None, results, exports)
    metric = metric or (study.decision.metric if study.decision else "agl_awareness")
    try:
        check_metric(metric)
    except ValueError as e:
        raise UserError(f"--metric: {e}") from None
    n_tests = len(questions_asked(study, specs, scale)) or 1  # the Holm family: questions this scale asks
    suite_name, suite_items = _suite_items(suite, specs)
    result: Power | None
    if run_mean_sd is not None:
        inputs = PowerInputs(run_mean_sd, residual_sd, interaction_sd, items or suite_items)
        result = power_from(inputs, metric, seeds, n_tests, effect)
        source = "stated variance components"
    else:
        result = power(study, collect(specs), metric, effect, n_tests)
        if result is None:
            raise UserError(
                f"{file}: power needs two finished runs in the baseline and another arm (or pass --run-mean-sd)"
            )
        source = f"the variance components of {study.name}'s finished runs"
    i = result.inputs
    console.print(
        f"{metric}: from {source} (run-mean SD {i.run_mean_sd:.4f}, arm × item SD "
        f"{i.interaction_sd:.4f}, residual SD {i.residual_sd:.4f}, {i.n_items} items), α {result.alpha:.3g}"
    )
    _print_detectable(result, mark_now=True)
    if run_mean_sd is None and metric not in RUN_METRICS and suite_items != i.n_items:
        projected = power_from(
            dataclasses.replace(i, n_items=suite_items), metric, result.n_seeds, n_tests, result.min_effect
        )
        console.print(
            f"at the {suite_items} items of suite {suite_name} (the same SDs per item and per run — "
            f"measure them on that suite to confirm):",
            highlight=False,
        )
        _print_detectable(projected, mark_now=False)


def _print_detectable(result, mark_now: bool) -> None:
    """The smallest Δ detected with 80 % power at each number of runs per arm, and the runs per arm that the
    minimum effect needs."""
    if result.paired:
        console.print("  runs paired by seed (the study's pairing), the unpaired figure beside it:", highlight=False)
    for k, v in result.detectable.items():
        console.print(
            f"  {k:3d} runs per arm: smallest Δ detected with 80 % power {v:.4f}"
            + (f" (unpaired {result.detectable_unpaired[k]:.4f})" if result.paired else "")
            + ("  (now)" if mark_now and k == result.n_seeds else ""),
            highlight=False,
        )
    if result.min_effect:
        console.print(
            f"runs per arm for Δ = {result.min_effect:g}: "
            + (str(result.seeds_for_min_effect) if result.seeds_for_min_effect else "more than 100")
        )


def _suite_items(suite: str | None, specs) -> tuple[str, int]:
    """(suite name, items scored): --suite in full, or the study's eval suite with its limit at this scale."""
    settings = specs[0].eval
    name = suite or settings["suite"]
    loaded, _ = load_suite(name)
    return name, len(subset(loaded.items, None if suite else settings.get("limit")))


@study_app.command("serve")
@user_errors
def study_serve(
    file: str | None = typer.Argument(None, help=STUDY_FILE_HELP + " Default: the one study under --results."),
    scale: str | None = typer.Option(None, "--scale", help=SCALE_HELP + " Default: the preset of the runs on disk."),
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
):
    """A live page of the study in the browser: the arm × seed grid, loss curves, the report's comparison and
    decision as runs finish. Read-only: run it beside `study run` at any time."""
    from ada_slm.app import serve  # loads scipy (the page's analysis): see study_report

    path = study_path(file or serve.default_study(results))
    study = load_study(path)
    if scale is None:
        scale = serve.infer_scale(study, str(path), results, exports)
        if scale is None and study.scale:
            console.print(
                f"scale: as written (no run on disk says otherwise; --scale {'|'.join(study.scale)} chooses one)",
                highlight=False,
            )
    specs = expand(study, str(path), scale, results_root=results, exports_root=exports)
    serve.serve(
        study,
        specs,
        scale,
        results,
        host,
        port,
        announce=lambda line: console.print(line, highlight=False, markup=False),
    )


@study_app.command("audit")
@user_errors
def study_audit(
    file: str = typer.Argument(
        "phase14d-reported", help="A table of reported single-run numbers (YAML; default: the seed's Phase 14D table)."
    ),
):
    """Say, claim by claim, what a published table of single runs can and cannot support."""
    from ada_slm.analysis.audit import audit, load_reported  # loads scipy: see study_report

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
def study_exec(run_dir: Path = typer.Argument(..., help="A run folder holding the spec.json `study run` wrote.")):
    """Internal: train and evaluate one run of a study (the Ray executor starts one process per run)."""
    raise typer.Exit(exec_run(run_dir))
