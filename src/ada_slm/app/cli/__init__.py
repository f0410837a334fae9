"""`ada-slm` command line. Thin: parse and validate arguments, call the library, print results.

One module per command group (data, train/eval, use, study, compare); `common` holds the typer apps and the one-line
error handler. User mistakes surface as `UserError` and are printed as one line (`error: FILE:LINE: reason`),
exit code 1.

Imports, said once for the package: a module imports the package's modules and its light dependencies at its top.
Two kinds of import wait inside a function: (1) heavy or optional libraries — torch, transformers, peft, datasets,
matplotlib, ray, mlflow, wandb, inspect_ai, pyarrow — imported where they are used, so a module that only sometimes
needs them does not load them; (2) in this CLI, the library modules a command calls, imported in that command, so
`ada-slm --help` and a command that needs neither torch nor scipy do not load them (the comments there say which).
"""

from __future__ import annotations

from ada_slm.app.cli import compare, data, study, train_eval, use  # noqa: F401 (each registers its commands)
from ada_slm.app.cli.common import (  # noqa: F401
    app,
    console,
    err_console,
    study_path,  # noqa: F401 (used by bench/learning_curve.py)
    user_errors,
)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
