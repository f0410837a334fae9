"""Atomic writes and JSONL reading shared by the data builder, the training recipe and the study runner."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ada_slm.errors import UserError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and a rename, so a reader (or a killed
    run) never sees half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def utf8_error(path: Path, data: bytes, e: UnicodeDecodeError, first_line: int = 1) -> UserError:
    """'FILE:LINE: not UTF-8 text (byte 0x.. at column C)' for a decoding error in `data`."""
    line = first_line + data.count(b"\n", 0, e.start)
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    return UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                     "save the file as UTF-8")


def read_utf8(path: str | Path) -> str:
    """The whole file as text; bytes that are not UTF-8 are a UserError naming FILE:LINE."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")  # a leading BOM is not data
    except UnicodeDecodeError as e:
        raise utf8_error(Path(path), data, e) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a malformed line (bad JSON, not UTF-8, not an
    object) is a UserError naming FILE:LINE."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a leading BOM is not data
            except UnicodeDecodeError as e:
                raise utf8_error(path, raw, e, lineno) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


# ------------------------------------------------------------------------------------------------ paths
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # a name that becomes one folder or file name (study, arm, task)


def check_name(name: str, what: str) -> str:
    """`name` if it can be one path component: letters, digits, '_', '.', '-', and not '.' or '..'.
    Otherwise a UserError naming `what` (e.g. "arm", "study name")."""
    import re

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or name in (".", ".."):
        raise UserError(f"{what} {name!r}: it names a folder or file, so use only letters, digits, '_', '.' and '-' "
                        "(and not '.' or '..')")
    return name


def path_under(root: str | Path, *parts: str) -> Path:
    """root/parts…, refused (UserError) unless it stays inside `root` once '..' and symlinks are resolved."""
    root = Path(root)
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UserError(f"{path}: outside {root} (a name holds '..', an absolute path or a link out of it)")
    return path


def check_writable_dir(path: str | Path, what: str) -> None:
    """Refuse, before anything is written, a `path` that cannot be (or become) a folder we can write: it is a
    file, a parent is a file, or the nearest existing folder is read-only. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path}: is a file, not a folder")
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise UserError(f"{what} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: cannot write in {existing} (read-only)")


def make_dir(path: str | Path, what: str) -> Path:
    """mkdir -p, with an OS error as one line naming the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot create it ({e.strerror or e})") from None
    return path


def follow_umask(folder: str | Path) -> None:
    """Give `folder` and everything in it the modes the umask gives new files and folders: safetensors and
    mkdtemp create theirs 0600/0700, while an export is meant to be shared like every other result."""
    folder = Path(folder)
    umask = _umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
