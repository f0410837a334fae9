"""Folders ada-slm writes whole — a run's adapter, its merged model, a converted base model — and the one rule
for replacing such a folder: it is deleted only if it carries this tool's marker (`.ada-slm-export.json`)
naming the same kind and owner (the run's out_dir, the model's source). An empty folder is taken over; anything
else at that path is refused in one line, before the work that would fill it starts.

A folder is written into a fresh temp folder beside it, marked, given the umask's modes, and renamed into
place, so a reader never sees half an export and a kill leaves the earlier one whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ada_slm.errors import UserError
from ada_slm.files import check_writable_dir, follow_umask, make_dir

MARKER = ".ada-slm-export.json"


def marker(kind: str, owner: str) -> dict:
    """What the marker file holds: which tool wrote the folder, what it is, and whose it is."""
    return {"tool": "ada-slm", "kind": kind, "owner": owner}


def is_own(folder: Path, kind: str, owner: str) -> bool:
    """Whether `folder` is an export of `kind` that ada-slm wrote for `owner`."""
    path = Path(folder) / MARKER
    try:
        if not path.is_file():
            return False
        return json.loads(path.read_text(encoding="utf-8")) == marker(kind, owner)
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON: not ours
        return False


def _is_empty(folder: Path, what: str) -> bool:
    try:
        return next(folder.iterdir(), None) is None
    except OSError as e:
        raise UserError(f"{what} {folder}: cannot read it ({e.strerror or e})") from None


def check_target(folder: str | Path, kind: str, owner: str, what: str) -> None:
    """Refuse `folder` as the place of a new export unless it is absent, an empty folder, or an earlier export
    of the same kind and owner; `what` names it in the message (e.g. "export_dir")."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UserError(f"{what} {folder}: is a symbolic link; ada-slm replaces only folders it wrote itself")
    check_writable_dir(folder, what)
    if folder.is_dir() and not _is_empty(folder, what) and not is_own(folder, kind, owner):
        raise UserError(
            f"{what} {folder}: already exists and is not the {kind} ada-slm wrote for {owner} (no "
            f"{MARKER} naming it); ada-slm deletes only its own earlier exports: choose another "
            "folder, or move this one away yourself"
        )


def write_folder(
    folder: str | Path, kind: str, owner: str, what: str, fill: Callable[[Path], None], sweep: bool = False
) -> None:
    """Write `folder` whole: `fill(tmp)` writes the contents into a temp folder beside it, which is marked and
    renamed into place; an earlier folder there is replaced only as `check_target` allows. `sweep` first
    removes temp folders of earlier, killed writes of the same kind and owner (only under a lock that keeps a
    second writer out)."""
    folder = Path(folder)
    check_target(folder, kind, owner, what)
    parent = make_dir(folder.parent, what)
    if sweep:
        for stale in parent.glob(f".{folder.name}.*.tmp"):
            if stale.is_dir() and not stale.is_symlink() and is_own(stale, kind, owner):
                shutil.rmtree(stale)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    except OSError as e:
        raise UserError(f"{what} {folder}: cannot write in {parent} ({e.strerror or e})") from None
    try:
        (tmp / MARKER).write_text(json.dumps(marker(kind, owner)) + "\n", encoding="utf-8")
        fill(tmp)
        follow_umask(tmp)
        check_target(folder, kind, owner, what)  # again: something may have appeared there meanwhile
        old = None
        if folder.is_dir() and not _is_empty(folder, what):  # our earlier export: moved aside, then deleted
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=parent))
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{what} {folder}: cannot write it ({e.strerror or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
