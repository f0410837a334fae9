"""Atomic writes and JSONL reading shared by the data builder, the training recipe and the study runner."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ada_slm.errors import UserError

# ------------------------------------------------------------------------------------------ safe reading
# A file the user (or a half-finished run) left is read so that whatever it holds costs one line naming it:
# never a hang (FIFOs, devices), never a file outside its folder, never a RecursionError or an int-conversion
# ValueError from the JSON/YAML parsers.


class UnreadableFile(UserError):
    """A file that cannot be read as what it should be: 'WHERE: REASON', WHERE being FILE or FILE:LINE."""

    def __init__(self, where: str | Path, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = str(where), reason


def open_regular(path: str | Path, limit: int | None = None, within: list[Path] | None = None):
    """A regular file opened for reading in binary; None when it does not exist. A FIFO, device or folder, a
    file of more than `limit` bytes, one that resolves (through symlinks) outside every folder in `within`, or
    one that cannot be opened is a UserError naming it. Never blocks: the type is checked before and after a
    non-blocking open."""
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise UnreadableFile(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(path, f"not a regular file (a {_kind(st.st_mode)}); not read")
    if within is not None:
        real = path.resolve()
        if not any(real.is_relative_to(root.resolve()) for root in within):
            raise UnreadableFile(path, f"resolves to {real}, outside {within[0]}; not followed")
    if limit is not None and st.st_size > limit:
        raise UnreadableFile(
            path, f"too large ({st.st_size / 2**20:.1f} MiB, more than {limit / 2**20:g} MiB); not read"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UnreadableFile(path, f"cannot be read ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped for a FIFO between the stat and the open
        os.close(fd)
        raise UnreadableFile(path, f"not a regular file (a {_kind(mode)}); not read")
    return os.fdopen(fd, "rb")


def read_regular(path: str | Path, limit: int | None = None, within: list[Path] | None = None) -> bytes | None:
    """The bytes of a regular file (open_regular's checks); None when it does not exist."""
    f = open_regular(path, limit, within)
    if f is None:
        return None
    try:
        with f:
            data = f.read(limit + 1) if limit is not None else f.read()
    except OSError as e:
        raise UnreadableFile(path, f"cannot be read ({e.strerror or e})") from None
    if limit is not None and len(data) > limit:  # grew since the stat
        raise UnreadableFile(path, f"too large (more than {limit / 2**20:g} MiB); not read")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def parse_json(data: bytes | str, where: str) -> Any:
    """JSON text -> value. Anything the parser refuses — bad syntax, bytes that are not UTF-8, nesting deeper
    than Python's recursion limit, an integer of more than 4300 digits — is a UserError naming `where`
    (FILE or FILE:LINE). NaN and Infinity are accepted: the tool writes them for missing numbers."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # a leading BOM is not data
        except UnicodeDecodeError as e:
            raise UnreadableFile(where, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno}, column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
        raise UnreadableFile(where, f"invalid JSON ({e.msg} at {at})") from None
    except RecursionError:
        raise UnreadableFile(where, f"invalid JSON (nested deeper than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:  # an integer too long to convert
        raise UnreadableFile(where, f"invalid JSON ({e})") from None
    if data.count("[") + data.count("{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise UnreadableFile(where, f"invalid JSON (nested deeper than {MAX_JSON_DEPTH} levels)")
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):  # "\ud800": no text, and unwritable as UTF-8
        raise UnreadableFile(where, "invalid JSON (a string holds a lone surrogate such as \\ud800, which is not text)")
    return value


# Far above what the tool writes (a record nests 4 deep), far below the recursion limit: a value read here can
# be walked recursively (rendered, validated, dumped) by every reader without a RecursionError.
MAX_JSON_DEPTH = 100


def _deeper_than(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(path: str | Path, limit: int | None = None, within: list[Path] | None = None) -> Any:
    """The JSON value a file holds; None when the file does not exist; every other problem a UserError naming
    the file (read_regular, parse_json)."""
    data = read_regular(path, limit, within)
    return None if data is None else parse_json(data, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (the second would silently win)."""

    def construct_mapping(self, node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden by design
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, second: int):
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


YAML_MAX_VALUES = 1_000_000  # after aliases are expanded: a "billion laughs" file is refused, not walked


def _count_values(obj, budget: int) -> int:
    """Values in `obj` with aliases expanded, counting down from `budget` (stops below zero: bounded time); a
    value nested deeper than MAX_JSON_DEPTH spends the whole budget."""
    stack = [(obj, 1)]
    while stack and budget >= 0:
        item, depth = stack.pop()
        budget -= 1
        if depth > MAX_JSON_DEPTH:
            return -1
        if isinstance(item, dict):
            stack.extend((x, depth + 1) for x in (*item.keys(), *item.values()))
        elif isinstance(item, (list, tuple, set)):
            stack.extend((x, depth + 1) for x in item)
    return budget


def load_yaml(path: str | Path) -> dict:
    """A YAML file of the user's (study, train config, data mix, suite, audit table) as a mapping. Malformed
    YAML, a key given twice in one mapping (both lines named), text that is not UTF-8, nesting too deep, an
    integer too long or aliases that expand too far are a UserError naming FILE:LINE where there is one."""
    path = Path(path)
    data = read_regular(path)
    if data is None:
        raise UserError(f"{path}: no such file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise utf8_error(path, data, e) from None
    try:
        value = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as e:
        raise UserError(f"{path}:{e.second}: key {e.key!r} given twice (first at line {e.first}); keep one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, whatever the parser said
        raise UserError(f"{path}{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise UserError(f"{path}: invalid YAML (nested too deeply)") from None
    except ValueError as e:  # an integer too long to convert
        raise UserError(f"{path}: invalid YAML ({e})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a mapping (key: value) at the top level")
    if _count_values(value, YAML_MAX_VALUES) < 0:
        raise UserError(
            f"{path}: nested deeper than {MAX_JSON_DEPTH} levels, or aliases (*name) that refer to "
            f"themselves or expand to more than {YAML_MAX_VALUES:,} values; write the values out"
        )
    return value


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
    return UserError(
        f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); save the file as UTF-8"
    )


def _input_limit() -> int:
    try:
        return int(float(os.environ.get("ADA_SLM_MAX_INPUT_MB", "512")) * 2**20)
    except ValueError:
        raise UserError(f"ADA_SLM_MAX_INPUT_MB={os.environ['ADA_SLM_MAX_INPUT_MB']!r}: give a number of MiB") from None


def input_limit() -> int:
    """Bytes at most in one input file the tool reads whole or inflates (runs to compare, tables, logs, cache
    entries): 512 MiB, or $ADA_SLM_MAX_INPUT_MB — named in every refusal, so a user with a larger file can raise it."""
    return _input_limit()


LIMIT_HINT = "set ADA_SLM_MAX_INPUT_MB to allow more"


def read_utf8(path: str | Path, limit: int | None = None) -> str:
    """The whole file as text, through read_regular (a regular file, at most `limit` bytes: default input_limit());
    bytes that are not UTF-8 are a UserError naming FILE:LINE."""
    limit = input_limit() if limit is None else limit
    try:
        data = read_regular(path, limit)
    except UnreadableFile as e:
        raise UserError(f"{e}" + (f" ({LIMIT_HINT})" if "too large" in str(e) else "")) from None
    if data is None:
        raise UserError(f"{path}: no such file")
    try:
        return data.decode("utf-8-sig")  # a leading BOM is not data
    except UnicodeDecodeError as e:
        raise utf8_error(Path(path), data, e) from None


def iter_jsonl(
    path: str | Path, limit: int | None = None, within: list[Path] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a malformed line (bad JSON, not UTF-8, nested too
    deep, not an object) is a UserError naming FILE:LINE, and so is a file open_regular refuses (not there,
    not a regular file, larger than `limit`, outside `within`)."""
    path = Path(path)
    f = open_regular(path, limit, within)
    if f is None:
        raise UserError(f"{path}: no such file")
    with f:
        try:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a leading BOM is not data
                except UnicodeDecodeError as e:
                    raise utf8_error(path, raw, e, lineno) from None
                if not line.strip():
                    continue
                obj = parse_json(line, f"{path}:{lineno}")
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
        except OSError as e:
            raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None


# ------------------------------------------------------------------------------------------------ paths
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # a name that becomes one folder or file name (study, arm, task)


def check_name(name: str, what: str) -> str:
    """`name` if it can be one path component: letters, digits, '_', '.', '-', and not '.' or '..'.
    Otherwise a UserError naming `what` (e.g. "arm", "study name")."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or name in (".", ".."):
        raise UserError(
            f"{what} {name!r}: it names a folder or file, so use only letters, digits, '_', '.' and '-' "
            "(and not '.' or '..')"
        )
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
