"""`ada-slm study …`: plan, run (resumable, adaptive), status, report, next, power, serve, audit."""

from __future__ import annotations

import dataclasses

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ada_slm.run import records
from ada_slm.app.cli.common import (SCALE_HELP, STUDY_FILE_HELP, check_track, console, err_console, study_app,
                                study_path, user_errors)
from ada_slm.errors import UserError


def _study_specs(file: str, scale: Optional[str], only: Optional[str], seeds: Optional[str], results: Path,
                 exports: Path):
    from ada_slm.study.spec import expand, load_study

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
    """Print the expanded runs, what each arm changes against the baseline, the estimated time and the power of
    the design — before any run from this machine kind's kept throughput (or the README's estimate) and default
    variance components."""
    from ada_slm.analysis.design import differences, factors_between
    from ada_slm.study.spec import estimate_seconds, measured_throughput, state_of

    study, specs, path = _study_specs(file, scale, only, seeds, results, exports)
    base_spec = next((s for s in specs if s.arm == study.baseline), None)
    rate, per_seq = measured_throughput(specs)
    table = Table(title=f"{study.name} ({path}, scale {scale or 'as written'})")
    for col in ("run", "base", "config", "vs baseline", "state", "est. train"):
        table.add_column(col)
    from ada_slm.analysis import plan
    from ada_slm.analysis.report import describe

    plan.remember(plan.finished_records(specs))
    store = plan.read_store()
    for s in specs:
        fd = factors_between(differences(s.train, base_spec.train if base_spec else None))
        diff = "baseline" if s.arm == study.baseline else (
            ", ".join(f"{k} {v[1]}→{v[0]}" for k, v in fd.factors.items()) + (" (confounded)" if fd.confounded else ""))
        t = plan.throughput_of(s, rate, per_seq, store)
        est = estimate_seconds(s.train, t.tokens_per_s, t.tokens_per_sequence) if t else None
        table.add_row(s.key, s.base, describe(s.train), diff, state_of(s),
                      f"{'≈ ' if t.estimate else ''}{est / 60:.1f} min" if est else "—")
    console.print(table)
    for line in plan.plan_report(study, specs, rate, per_seq, store):
        console.print(line, highlight=False, markup=False)
    if until_decided:
        _plan_adaptive(study, path, scale, specs, results, exports, max_seeds)


def _plan_adaptive(study, path, scale, specs, results, exports, max_seeds):
    from ada_slm.analysis import adaptive

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
                                        "seed runs), 'tensorboard' (scalars under each run directory) or 'wandb' "
                                        "(a run per seed, grouped by study; WANDB_MODE=offline: local files)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                                               "sqlite:///<results>/mlflow.db)."),
    until_decided: bool = typer.Option(False, "--until-decided", help="Adaptive: after the study's seeds, add "
                                       "runs in rounds to the arms whose questions are still open (and drop arms "
                                       "the leader beats by the elimination test in a sweep) until every question "
                                       "is answered; "
                                       "group-sequential rule, see README."),
    max_seeds: Optional[int] = typer.Option(None, "--max-seeds", min=2, help="With --until-decided: runs per "
                                            "arm at most (default: the study's adaptive.max_seeds)."),
    budget_hours: Optional[float] = typer.Option(None, "--budget-hours", min=0.0, help="With --until-decided: "
                                                 "start no new round once the study's measured run time plus "
                                                 "the round's would exceed this."),
):
    """Run every unfinished (arm, seed) in its own process; finished runs are skipped, so re-running resumes."""
    from ada_slm.run import tracking
    from ada_slm.app.display import StudyDisplay
    from ada_slm.study.executors import LocalExecutor, RayExecutor, run_study
    from ada_slm.study.spec import state_of, validate_models

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
    _check_writable(results / study.name)
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
    elif track == "wandb":
        tracking.import_wandb()  # a missing package is said once here, not by every run
        tracking_for = lambda s: tracking.Tracking(kind="wandb", run_name=s.key, group=study.name,  # noqa: E731
                                                   tags={tracking.TAG_ARM: s.arm, tracking.TAG_KEY: s.key})
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
        from ada_slm.analysis import plan

        if plan.remember(plan.finished_records(specs)):
            console.print(f"throughput of this machine kind kept for later plans: {plan.cache_path()}")
        if report:
            md = _write_report(study, specs, scale, results)
            if study_runs:
                study_runs.log_report([md, md.with_suffix(".html"), *sorted(md.parent.glob("*.png"))])
    finally:
        if study_runs:
            study_runs.end(failed=bool(counts["failed"]))
    if counts["failed"]:
        raise typer.Exit(2)


def _check_writable(folder: Path) -> None:
    """Refuse, before any run starts, a results folder the runner cannot write (read-only, a file in the way)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # unnamed where the OS allows it: nothing is left behind
            pass
    except OSError as e:
        raise UserError(f"{folder}: cannot write the study's results there ({e.strerror or e}); "
                        "choose another --results") from None


def _run_rounds(study, path, scale, specs, results, exports, runner, tracking_for, max_seeds, budget_hours):
    """`study run --until-decided`: rounds of run_study until decided; (every run of the last look, counts)."""
    from ada_slm.analysis import adaptive
    from ada_slm.app.display import StudyDisplay
    from ada_slm.study.executors import run_study
    from ada_slm.study.spec import state_of

    def run_round(round_specs):
        with StudyDisplay(study.name, round_specs, {s.key: state_of(s) for s in round_specs}, console) as display:
            return run_study(study, round_specs, results, executor=runner, tracking_for=tracking_for, events=display)

    d = adaptive.design(study, str(path), scale, sorted({s.seed for s in specs}), results, exports, max_seeds)
    progress, counts = adaptive.run_until_decided(d, run_round, budget_hours,
                                                  lambda p: console.print(adaptive.describe_look(p), highlight=False))
    return progress.specs or specs, counts


def _write_report(study, specs, scale, results: Path, analysis=None):
    from ada_slm.analysis.report import build_report

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
    from ada_slm.study.spec import state_of

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    table = Table(title=f"{study.name} status")
    for col in ("run", "state", "detail"):
        table.add_column(col)
    for s in specs:
        st = state_of(s)
        try:
            rec = records.read_record(s.run_dir)
            detail = (rec.status.reason if rec is not None else None) or ""
        except records.CorruptRecord as e:
            rec, detail = None, str(e)
        if st == "done" and rec is not None and rec.train is not None:
            detail = f"held-out loss {rec.train.final_val_loss or float('nan'):.4f}"
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
    rescore: bool = typer.Option(False, "--rescore", help="First re-score every finished run's stored outputs "
                                 "(eval.jsonl) with today's metrics and suite items: new or changed metrics "
                                 "without generating again."),
):
    """Write results/<study>/report.md, report.html and plots from the finished runs."""
    from rich.markdown import Markdown

    from ada_slm.analysis.analysis import analyse
    from ada_slm.analysis.report import summary

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    if rescore:
        _rescore(study, specs, results)
    analysis = analyse(study, specs, scale)
    _write_report(study, specs, scale, results, analysis)
    if show:  # the series summary, designs, decision and power, rendered from the same analysis
        console.print(Markdown(summary(analysis)))


def _rescore(study, specs, results: Path) -> None:
    """`study report --rescore`, under the study's lock: a runner writing records meanwhile would race it."""
    from filelock import FileLock, Timeout

    from ada_slm.run.eval_cache import rescore_runs

    root = results / study.name
    if not root.is_dir():
        return
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{root}/.lock: a `study run` of this study is running; --rescore rewrites its records, "
                        "so run it when that has finished") from None
    try:
        keys = rescore_runs(specs)
    finally:
        lock.release()
    console.print(f"rescored {len(keys)} runs from their stored outputs (nothing generated)", highlight=False)


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

    from ada_slm.analysis.next_study import write_next_study

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
        cmd = [sys.executable, "-m", "ada_slm.app.cli", "study", "run", str(result.path), "--results", str(results),
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
    items: Optional[int] = typer.Option(None, "--items", help="With --run-mean-sd: items in the suite (default: "
                                        "the suite's, see --suite)."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Show the detectable Δ at this suite's item count "
                                        "(name or file; default: the study's eval.suite at this scale, with its "
                                        "limit), e.g. the generated agl-heldout."),
    seeds: int = typer.Option(3, "--runs", help="With --run-mean-sd: runs per arm now."),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
):
    """Smallest difference the seed-level rule detects with 80 % power, and runs per arm for a given one —
    by simulation, from a finished study's variance components or stated ones."""
    from ada_slm.analysis.analysis import questions_asked
    from ada_slm.analysis.arms import collect
    from ada_slm.analysis.power import power, power_from
    from ada_slm.analysis.power_simulation import PowerInputs
    from ada_slm.run.metrics import RUN_METRICS
    from ada_slm.study.decision import check_metric

    study, specs, _ = _study_specs(file, scale, None, None, results, exports)
    metric = metric or (study.decision.metric if study.decision else "agl_awareness")
    try:
        check_metric(metric)
    except ValueError as e:
        raise UserError(f"--metric: {e}") from None
    n_tests = len(questions_asked(study, specs, scale)) or 1  # the Holm family: questions this scale asks
    suite_name, suite_items = _suite_items(suite, specs)
    if run_mean_sd is not None:
        inputs = PowerInputs(run_mean_sd, residual_sd, interaction_sd, items or suite_items)
        result = power_from(inputs, metric, seeds, n_tests, effect)
        source = "stated variance components"
    else:
        result = power(study, collect(specs), metric, effect, n_tests)
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
    if run_mean_sd is None and metric not in RUN_METRICS and suite_items != i.n_items:
        projected = power_from(dataclasses.replace(i, n_items=suite_items), metric, result.n_seeds, n_tests,
                               result.min_effect)
        console.print(f"at the {suite_items} items of suite {suite_name} (the same SDs per item and per run — "
                      f"measure them on that suite to confirm):", highlight=False)
        for k, v in projected.detectable.items():
            console.print(f"  {k:3d} runs per arm: smallest Δ detected with 80 % power {v:.4f}", highlight=False)
        if projected.min_effect:
            console.print(f"runs per arm for Δ = {projected.min_effect:g}: "
                          + (str(projected.seeds_for_min_effect) if projected.seeds_for_min_effect else "more than 100"))


def _suite_items(suite: Optional[str], specs) -> tuple[str, int]:
    """(suite name, items scored): --suite in full, or the study's eval suite with its limit at this scale."""
    from ada_slm.run.evaluate import load_suite, subset

    settings = specs[0].eval
    name = suite or settings["suite"]
    loaded, _ = load_suite(name)
    return name, len(subset(loaded.items, None if suite else settings.get("limit")))


@study_app.command("serve")
@user_errors
def study_serve(
    file: Optional[str] = typer.Argument(None, help=STUDY_FILE_HELP + " Default: the one study under --results."),
    scale: Optional[str] = typer.Option(None, "--scale", help=SCALE_HELP + " Default: the preset of the runs "
                                        "on disk."),
    results: Path = _results_opt,
    exports: Path = _exports_opt,
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
):
    """A live page of the study in the browser: the arm × seed grid, loss curves, the report's comparison and
    decision as runs finish. Read-only: run it beside `study run` at any time."""
    from ada_slm.app import serve
    from ada_slm.study.spec import expand, load_study

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

    from ada_slm.analysis.audit import audit, load_reported

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
    from ada_slm.study.executors import exec_run

    raise typer.Exit(exec_run(run_dir))
