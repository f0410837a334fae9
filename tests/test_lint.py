"""The lint rules pyproject.toml names ([tool.ruff.lint]) and its format hold on the package, the tests, the benches
and the docs' hook (mypy, slower, is `make lint`'s)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


PATHS = ["src", "tests", "bench", "docs/hooks"]


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: `pip install -e '.[test]'` installs it")
    return ruff


def test_ruff_finds_nothing():
    p = subprocess.run(
        [_ruff(), "check", "--output-format", "concise", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_code_is_formatted():
    p = subprocess.run([_ruff(), "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, "run `ruff format src tests bench docs/hooks`:\n" + p.stdout + p.stderr
