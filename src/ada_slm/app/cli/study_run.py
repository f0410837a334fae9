"""`ada-slm study plan` and `ada-slm study run`: the expanded runs with their time and power before any run, and
running them (resumable; --until-decided adds rounds until the study's questions are answered)."""

from __future__ import annotations

import tempfile
import textwrap
import time
from pathlib import Path

import typer
from rich.table import Table

from ada_slm.analysis.design import factors_of
from ada_slm.app.cli.common import check_track, console, err_console, study_app, user_errors
from ada_slm.app.cli.study_options import (
    EXPORTS_OPT,
    FILE_ARG,
    JOBS_OPT,
    MAX_SEEDS_OPT,
    ONLY_OPT,
    RESULTS_OPT,
    SCALE_OPT,
    SEEDS_OPT,
    study_specs,
)
from ada_slm.app.display import StudyDisplay
from ada_slm.errors import UserError
from ada_slm.run import tracking
from ada_slm.study.executors import LocalExecutor, RayExecutor, run_study
from ada_slm.study.spec import estimate_seconds, measured_throughput, state_of, validate_models

WIDE_COLUMNS = 120  # below this, `study plan` prints a block per arm instead of a table row per run


@study_app.command("plan")
@user_errors
def study_plan(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    only: str | None = ONLY_OPT,
    seeds: str | None = SEEDS_OPT,
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
    until_decided: bool = typer.Option(
        False,
        "--until-decided",
        help="Also print the expected runs and time of "
        "`study run --until-decided`, simulated from the finished runs' variance "
        "components and throughput.",
    ),
    max_seeds: int | None = MAX_SEEDS_OPT,
    jobs: int | None = JOBS_OPT,
    wide: bool = typer.Option(
        False,
        "--wide",
        help=f"The table of every run even in a terminal under {WIDE_COLUMNS} columns (there: one block per arm).",
    ),
    budget_hours: float | None = typer.Option(
        None,
        "--budget-hours",
        min=0.0,
        help="Refuse (exit 1, one line) a plan whose estimated wall time is over this many hours, unless --force.",
    ),
    force: bool = typer.Option(False, "--force", help="With --budget-hours: print the plan even over budget."),
):
    """Print the expanded runs, what each arm changes against the baseline, the estimated time and the power of
    the design — before any run from this machine kind's kept throughput (or the estimate on the docs' Performance
    page) and default
    variance components."""
    # the analysis modules load scipy (and plan torch): imported by the commands that use them, not by `--help`
    from ada_slm.analysis import plan
    from ada_slm.analysis.report.writer import describe

    study, specs, path = study_specs(file, scale, only, seeds, results, exports)
    base_spec = next((s for s in specs if s.arm == study.baseline), None)
    rate, per_seq = measured_throughput(specs)
    plan.remember(plan.finished_records(specs))
    store = plan.read_store()
    if jobs is not None and not 1 <= jobs <= 64:
        raise UserError(f"--jobs {jobs}: choose 1 to 64 runs at once")
    _check_budget(plan.estimated_seconds(specs, rate, per_seq, store), jobs or _default_jobs(), budget_hours, force)
    rows = []
    for s in specs:
        fd = factors_of(s.train, base_spec.train if base_spec else None)
        diff = (
            "baseline"
            if s.arm == study.baseline
            else (
                ", ".join(f"{k} {v[1]}→{v[0]}" for k, v in fd.factors.items())
                + (" (confounded)" if fd.confounded else "")
            )
        )
        t = plan.throughput_of(s, rate, per_seq, store)
        est = estimate_seconds(s.train, t.tokens_per_s, t.tokens_per_sequence) if t else None
        rows.append(
            (
                s,
                describe(s.train),
                diff,
                f"{'≈ ' if t.estimate else ''}{est / 60:.1f} min" if t is not None and est else "—",
            )
        )
    title = f"{study.name} ({path}, scale {scale or 'as written'})"
    if wide or console.width >= WIDE_COLUMNS:
        table = Table(title=title)
        for col in ("run", "base", "config", "vs baseline", "state", "est. train"):
            table.add_column(col)
        for s, config, diff, est_text in rows:
            table.add_row(s.key, s.base, config, diff, state_of(s), est_text)
        console.print(table)
    else:
        _plan_blocks(title, rows)
    for line in plan.plan_report(study, specs, rate, per_seq, store, jobs or _default_jobs()):
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        console.print(
            line
            if wide
            else textwrap.fill(line, width=max(40, min(console.width, WIDE_COLUMNS)), subsequent_indent=indent),
            highlight=False,
            markup=False,
        )
    if until_decided:
        _plan_adaptive(study, path, scale, specs, results, exports, max_seeds)


def _check_budget(estimate, jobs: int, budget_hours: float | None, force: bool) -> None:
    """`study plan --budget-hours H`: one line and exit 1 when the estimated wall time is over H (not with
    --force). Before the table: a plan that will not be run is not printed."""
    train, generation, rest, sources, _ = estimate
    wall_h = (train + generation + rest) / max(1, jobs) / 3600
    if budget_hours is not None and sources and wall_h > budget_hours and not force:
        raise UserError(
            f"the plan's estimated wall time is {wall_h:.1f} h, over --budget-hours {budget_hours:g} "
            "(fewer arms or seeds with --only / --seeds, a smaller scale, or --force to print it)"
        )


def _plan_blocks(title: str, rows) -> None:
    """The plan in a narrow terminal or a pipe: per arm, its config, what it changes and its runs' states."""
    console.print(title, highlight=False, markup=False)
    arms: dict[str, list] = {}
    for row in rows:
        arms.setdefault(row[0].arm, []).append(row)
    for arm, runs in arms.items():
        s, config, diff, est = runs[0]
        states = ", ".join(f"seed{r[0].seed} {state_of(r[0])}" for r in runs)
        console.print(f"{arm}: {config} · {s.base}", highlight=False, markup=False)
        console.print(f"  vs baseline: {diff}", highlight=False, markup=False)
        console.print(
            f"  {states} · " + (f"est. train {est} a run" if s.train else "evaluation only"),
            highlight=False,
            markup=False,
        )


def _plan_adaptive(study, path, scale, specs, results, exports, max_seeds):
    from ada_slm.analysis import adaptive  # loads scipy: see study_plan

    d = adaptive.design(study, str(path), scale, sorted({s.seed for s in specs}), results, exports, max_seeds)
    console.print(f"--until-decided: looks at {d.plan.looks} runs per arm on {d.metric}; {adaptive.sequential.RULE}")
    found = adaptive.expected_cost(d)
    if found is None:
        console.print("expected runs: needs two finished runs in the baseline and another arm (run round 1 first)")
        return
    rows, i = found
    console.print(
        f"simulated from run-mean SD {i.run_mean_sd:.4f}, arm × item SD {i.interaction_sd:.4f}, "
        f"residual SD {i.residual_sd:.4f}, {i.n_items} items (1000 simulated studies):",
        highlight=False,
    )
    for e in rows:
        time_left = f", about {e.seconds_left / 3600:.1f} h of runs left" if e.seconds_left is not None else ""
        console.print(
            f"  {e.scenario}: {e.runs_mean:.1f} runs expected (90 % ≤ {e.runs_p90:.0f}), decided before "
            f"max seeds in {100 * e.decided:.0f} %{time_left}",
            highlight=False,
        )


@study_app.command("run")
@user_errors
def study_run(
    file: str = FILE_ARG,
    scale: str | None = SCALE_OPT,
    only: str | None = ONLY_OPT,
    seeds: str | None = SEEDS_OPT,
    results: Path = RESULTS_OPT,
    exports: Path = EXPORTS_OPT,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the runs are done."),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local: runs on this machine, --jobs at a time; "
        "ray: every run a Ray task (results and exports on storage all nodes share).",
    ),
    jobs: int | None = JOBS_OPT,
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster: 'auto' or ray://host:10001; default: start a local Ray instance."
    ),
    cpus_per_run: float | None = typer.Option(
        None,
        "--cpus-per-run",
        help="Ray: CPUs per run (default: a node's CPUs split as --jobs' default splits this machine's).",
    ),
    gpus_per_run: float | None = typer.Option(
        None, "--gpus-per-run", help="Ray: GPUs per run (default: 1 when the cluster has GPUs, else 0)."
    ),
    track: str | None = typer.Option(
        None,
        "--track",
        help="Mirror runs to 'mlflow' (nested study → arm → "
        "seed runs), 'tensorboard' (scalars under each run directory) or 'wandb' "
        "(a run per seed, grouped by study; WANDB_MODE=offline: local files).",
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results>/mlflow.db)."
    ),
    until_decided: bool = typer.Option(
        False,
        "--until-decided",
        help="Adaptive: after the study's seeds, add "
        "runs in rounds to the arms whose questions are still open (and drop arms "
        "the leader beats by the elimination test in a sweep) until every question "
        "is answered; group-sequential rule: docs/guides/studies.md.",
    ),
    max_seeds: int | None = MAX_SEEDS_OPT,
    budget_hours: float | None = typer.Option(
        None,
        "--budget-hours",
        min=0.0,
        help="With --until-decided: "
        "start no new round once the study's measured run time plus "
        "the round's would exceed this.",
    ),
):
    """Run every unfinished (arm, seed) in its own process; finished runs are skipped, so re-running resumes."""
    _check_run_options(
        executor, address, cpus_per_run, gpus_per_run, track, until_decided, only, max_seeds, budget_hours, jobs
    )
    study, specs, path = study_specs(file, scale, only, seeds, results, exports)
    validate_models(specs)
    _check_writable(results / study.name)
    runner = (
        RayExecutor(address, cpus_per_run, gpus_per_run)
        if executor == "ray"
        else LocalExecutor(jobs or _default_jobs())
    )
    study_runs, tracking_for = _tracking(track, tracking_uri, study, specs, path, scale, results)
    start = time.perf_counter()
    counts = {"failed": 1}
    try:
        try:
            if until_decided:
                specs, counts = _run_rounds(
                    study, path, scale, specs, results, exports, runner, tracking_for, max_seeds, budget_hours
                )
            else:
                counts = _run_once(study, specs, results, runner, tracking_for)
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are kept; run the same command again to continue")
            raise typer.Exit(130) from None
        console.print(
            f"done {counts['done']}, failed {counts['failed']}, pending {counts['pending']} "
            f"in {time.perf_counter() - start:.0f}s"
        )
        _after_runs(study, specs, scale, results, report, study_runs)
    finally:
        if study_runs:
            study_runs.end(failed=bool(counts["failed"]))
    if counts["failed"]:
        raise typer.Exit(2)


def _default_jobs() -> int:
    from ada_slm.run import hardware  # imports torch: not for --help

    return hardware.default_jobs()


def _check_run_options(
    executor, address, cpus_per_run, gpus_per_run, track, until_decided, only, max_seeds, budget_hours, jobs=None
) -> None:
    """`study run`'s options that contradict each other, refused before the study is read."""
    check_track(track)
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor}: choose local or ray")
    if jobs is not None and (jobs < 1 or jobs > 64):
        raise UserError(f"--jobs {jobs}: choose 1 to 64 runs at once")
    if jobs is not None and executor == "ray":
        raise UserError("--jobs is for --executor local (Ray places runs by --cpus-per-run)")
    if executor == "local" and (address or cpus_per_run or gpus_per_run is not None):
        raise UserError("--address/--cpus-per-run/--gpus-per-run need --executor ray")
    if (max_seeds or budget_hours is not None) and not until_decided:
        raise UserError("--max-seeds/--budget-hours need --until-decided")
    if until_decided and only:
        raise UserError("--only cannot be combined with --until-decided (the rounds decide which arms run)")


def _tracking(track, tracking_uri, study, specs, path, scale, results):
    """(the MLflow study → arm → seed runs or None, the tracking of each run or None) for --track."""
    study_runs, tracking_for = None, None
    if track == "mlflow":
        study_runs = tracking.StudyRuns(
            tracking_uri or tracking.default_uri(results),
            study.name,
            scale or "default",
            sorted({s.arm for s in specs}),
            {"study_file": str(path), "scale": scale or "default", "seeds": sorted({s.seed for s in specs})},
        )
        tracking_for = lambda s: study_runs.spec_for(s.arm, s.seed, s.key)  # noqa: E731
    elif track == "tensorboard":
        tracking_for = lambda s: tracking.Tracking(kind="tensorboard", run_name=s.key)  # noqa: E731
    elif track == "wandb":
        tracking.import_wandb()  # a missing package is said once here, not by every run
        tracking_for = lambda s: tracking.Tracking(  # noqa: E731
            kind="wandb", run_name=s.key, group=study.name, tags={tracking.TAG_ARM: s.arm, tracking.TAG_KEY: s.key}
        )
    return study_runs, tracking_for


def _check_writable(folder: Path) -> None:
    """Refuse, before any run starts, a results folder the runner cannot write (read-only, a file in the way)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # unnamed where the OS allows it: nothing is left behind
            pass
    except OSError as e:
        raise UserError(
            f"{folder}: cannot write the study's results there ({e.strerror or e}); choose another --results"
        ) from None


def _run_once(study, specs, results, runner, tracking_for) -> dict:
    """`study run`: every unfinished run of `specs`, shown live; the counts by final state."""
    with StudyDisplay(
        study.name, specs, {s.key: state_of(s) for s in specs}, console, jobs=getattr(runner, "jobs", 1)
    ) as display:
        return run_study(study, specs, results, executor=runner, tracking_for=tracking_for, events=display)


def _run_rounds(study, path, scale, specs, results, exports, runner, tracking_for, max_seeds, budget_hours):
    """`study run --until-decided`: rounds of run_study until decided; (every run of the last look, counts)."""
    from ada_slm.analysis import adaptive  # loads scipy: see study_plan

    def run_round(round_specs):
        return _run_once(study, round_specs, results, runner, tracking_for)

    d = adaptive.design(study, str(path), scale, sorted({s.seed for s in specs}), results, exports, max_seeds)
    progress, counts = adaptive.run_until_decided(
        d, run_round, budget_hours, lambda p: console.print(adaptive.describe_look(p), highlight=False)
    )
    return progress.specs or specs, counts


def _after_runs(study, specs, scale, results: Path, report: bool, study_runs) -> None:
    """Keep this machine kind's throughput for later plans; write the report (and log it to MLflow)."""
    from ada_slm.analysis import plan  # loads scipy and torch: see study_plan

    if plan.remember(plan.finished_records(specs)):
        console.print(f"throughput of this machine kind kept for later plans: {plan.cache_path()}")
    if report:
        md = write_report(study, specs, scale, results)
        if study_runs:
            study_runs.log_report([md, md.with_suffix(".html"), *sorted(md.parent.glob("*.png"))])


def write_report(study, specs, scale, results: Path, analysis=None):
    """report.md, report.html and the plots under results/<study>, announced."""
    from ada_slm.analysis.report.writer import build_report  # loads scipy and matplotlib: see study_plan

    md = build_report(study, specs, scale, results / study.name, analysis)
    console.print(f"report: {md} and {md.with_suffix('.html')}")
    return md
