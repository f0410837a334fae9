"""What test files share by import: the repository's paths and the command line the tests start. Fixtures are
conftest.py's. `tests` is a package (every folder has an __init__.py), so a test imports this as
`from tests.shared import DATA` wherever it lives, and another test file's helpers as
`from tests.app.test_serve import md_table`."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
PACKAGE = ROOT / "src" / "ada_slm"
STUDIES = PACKAGE / "studies"  # the shipped study files
DATA = Path(__file__).resolve().parent / "data"  # tests/data: the test studies, data formats, lm-eval task
CLI = [sys.executable, "-m", "ada_slm.app.cli"]
