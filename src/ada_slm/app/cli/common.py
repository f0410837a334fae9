"""What every command module of the CLI shares: the typer apps, the consoles, the one-line error handler."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from ada_slm.errors import UserError

app = typer.Typer(
    help="ada-slm: run small-language-model LoRA fine-tuning studies on the AGL glyph language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build AGL corpora; validate and inspect any training corpus.", no_args_is_help=True)
app.add_typer(data_app, name="data", help="Build AGL corpora; validate and inspect any training corpus.")
STUDY_HELP = "Multi-arm studies: plan, run (resumable, adaptive), status, report, next, power, serve, audit."
study_app = typer.Typer(help=STUDY_HELP, no_args_is_help=True)
app.add_typer(study_app, name="study", help=STUDY_HELP)

STUDY_FILE_HELP = "Study YAML (a path, or the name of a shipped study such as phase14d)."
SCALE_HELP = (
    "Scale preset of the study file: quick (CPU demo), cpu (the whole study on one 2-core machine) or "
    "full (the seed's sizes)."
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def user_errors(fn):
    """Turn a UserError into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            # escaped: a message may hold [brackets]: "messages[1]", "data[test] row 3"
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def check_track(track: str | None) -> None:
    if track is not None and track not in ("mlflow", "tensorboard", "wandb"):
        raise UserError(f"--track {track}: choose mlflow, tensorboard or wandb")


def study_path(file: str) -> Path:
    """A study file path, or the name of a shipped study (phase14d, phase14e-polyglot)."""
    path = Path(file)
    if not path.is_file():
        shipped = Path(str(resources.files("ada_slm") / "studies")) / f"{file}.yaml"
        if not shipped.is_file():
            raise UserError(
                f"{file}: no such study file (shipped studies: "
                + ", ".join(p.stem for p in shipped.parent.glob("*.yaml"))
                + ")"
            )
        path = shipped
    return path
