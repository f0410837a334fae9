"""The options of `ada-slm study …` defined once: `study plan` and `study run` take the same study file, scale,
arms, seeds, results and exports roots and --max-seeds, with the same `--help` text (the other study commands use
the ones they take); and the runs those options select."""

from __future__ import annotations

from pathlib import Path

import typer

from ada_slm.app.cli.common import SCALE_HELP, STUDY_FILE_HELP, study_path
from ada_slm.errors import UserError
from ada_slm.study.spec import RunSpec, Study, expand, load_study

FILE_ARG = typer.Argument(..., help=STUDY_FILE_HELP)
SCALE_OPT = typer.Option(None, "--scale", help=SCALE_HELP)
ONLY_OPT = typer.Option(None, "--only", help="Comma-separated arms (default: all).")
SEEDS_OPT = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the study's).")
RESULTS_OPT = typer.Option(Path("results"), "--results", help="Results root (results/<study>/<arm>/seed<k>).")
EXPORTS_OPT = typer.Option(Path("exports"), "--exports", help="Adapter root (exports/<study>/<arm>/seed<k>).")
MAX_SEEDS_OPT = typer.Option(
    None,
    "--max-seeds",
    min=2,
    help="With --until-decided: runs per arm at most (default: the study's adaptive.max_seeds).",
)
JOBS_OPT = typer.Option(
    None,
    "--jobs",
    "-j",
    help="Local executor: runs at once, the machine's threads split between "
    "them (default: this machine kind's measured best, ada_slm.run.hardware.STUDY_JOBS: 2 on "
    "2-core AMX and AVX-512 machines, 1 elsewhere).",
)


def study_specs(
    file: str, scale: str | None, only: str | None, seeds: str | None, results: Path, exports: Path
) -> tuple[Study, list[RunSpec], Path]:
    """(study, its runs as the options select them, the study file)."""
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
