"""`ada-slm` command line. Thin: parse and validate arguments, call the library, print results.

One module per command group (data, train/eval, use, study, compare); `common` holds the typer apps and the one-line
error handler. User mistakes surface as `UserError` and are printed as one line (`error: FILE:LINE: reason`),
exit code 1.
"""

from __future__ import annotations

from ada_slm.app.cli import compare, data, study, train_eval, use  # noqa: F401 (each registers its commands)
from ada_slm.app.cli.common import app, console, err_console, user_errors  # noqa: F401
from ada_slm.app.cli.common import study_path  # noqa: F401 (used by bench/learning_curve.py)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
