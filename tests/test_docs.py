"""The documentation: README stays short, no work-item numbers, the MkDocs site builds with --strict, and the
reference pages generated from the code name every command of the CLI and every key of the config models.

One build for the module (about 3 s), into a temporary folder; nothing is written under the repository.
"""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# "issue 16", "Issue #26", "issues 3", "#26 " — work-item numbers belong to the tracker, not to the docs
WORK_ITEM = re.compile(r"\bissues?\s*#?\s*\d+|(?<![\w&/])#\d+\b", re.IGNORECASE)


def doc_files() -> list[Path]:
    """The docs, and the package's text a user reads: help strings, messages and the shipped studies and suites
    (its comments too — a reader of the code is a user of it)."""
    package = ROOT / "src" / "ada_slm"
    return [README] + sorted(DOCS.rglob("*.md")) + sorted(package.rglob("*.py")) + sorted(package.rglob("*.yaml"))


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"


def test_no_work_item_numbers():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in doc_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if WORK_ITEM.search(line)
    ]
    assert not found, "work-item references in the docs:\n" + "\n".join(found)


def test_the_pattern_catches_work_items():
    for bad in ("as issue 16 asked", "Issue #26", "see #26 for", "issues 3 and 4"):
        assert WORK_ITEM.search(bad), bad
    for fine in ("the issue's goal", "`#` comments", "C# code", "colour &#35;3", "page.html#avx2"):
        assert not WORK_ITEM.search(fine), fine


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs / mkdocs-material not installed (pip install 'ada-slm[docs]')")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def page_text(site: Path, page: str) -> str:
    """The text of a built page: tags dropped, entities decoded, whitespace collapsed."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    raw = re.sub(r"<[^>]+>", " ", raw)
    return " ".join(html.unescape(raw).split())


def test_site_builds_strict(site):
    for page in (
        "",
        "getting-started",
        "concepts",
        "statistics",
        "performance",
        "architecture",
        "reference/cli",
        "reference/run-config",
        "reference/study-file",
    ):
        assert (site / page / "index.html").is_file(), page
    assert (site / "serve.png").is_file()
    assert not (site / "hooks").exists(), "the build hook is not part of the site"


def cli_commands():
    """(command path, option names) for every command of the Typer app, walked from the code here."""
    import typer

    from ada_slm.app.cli import app

    found = []

    def walk(command, path):
        names = [
            o
            for p in command.params
            for o in list(p.opts) + list(p.secondary_opts or [])
            if p.param_type_name == "option"
        ]
        found.append((" ".join(path), names))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                walk(command.get_command(None, name), path + [name])

    walk(typer.main.get_command(app), ["ada-slm"])
    return found


def model_keys(model, prefix=""):
    """Every dotted key of a pydantic model and the models nested in it (through Optional, dict values, lists)."""
    import typing

    from pydantic import BaseModel

    def models_in(tp, path):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return [(path, tp)]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is dict and args:
            return models_in(args[1], f"{path}.<key>")
        if origin in (list, tuple, set, frozenset):
            return [m for a in args for m in models_in(a, f"{path}[]")]
        return [m for a in args for m in models_in(a, path)]

    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for path, sub in models_in(field.annotation, prefix + name):
            keys += model_keys(sub, path + ".")
    return keys


def sections(site: Path, page: str) -> dict[str, str]:
    """Heading id -> the text from that heading to the next one (h2/h3), of a built page."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    raw = raw[raw.index("<article") :]
    parts = re.split(r'<h[23] id="([^"]+)"[^>]*>', raw)
    return {
        parts[i]: " ".join(html.unescape(re.sub(r"<[^>]+>", " ", parts[i + 1])).split())
        for i in range(1, len(parts) - 1, 2)
    }


def test_cli_reference_names_every_command_and_option(site):
    found = sections(site, "reference/cli")
    commands = cli_commands()
    assert len(commands) > 20
    for path, options in commands:
        anchor = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
        assert anchor in found, f"{path} has no section in the generated CLI reference"
        assert found[anchor].startswith(path), found[anchor][:80]
        missing = [option for option in options if option not in found[anchor]]
        assert not missing, f"{path}: options missing from its section of the CLI reference: {missing}"


def test_config_reference_names_every_key(site):
    from ada_slm.run.config import TrainConfig
    from ada_slm.study.spec import Study

    for model, page in ((TrainConfig, "reference/run-config"), (Study, "reference/study-file")):
        text = page_text(site, page)
        keys = model_keys(model)
        assert len(keys) > 10
        missing = [key for key in keys if key not in text]
        assert not missing, f"{model.__name__} keys missing from {page}: {missing}"
