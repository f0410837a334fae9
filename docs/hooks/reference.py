"""MkDocs hook: the reference pages, generated from the code at every build, so they can never be stale.

A page holds a marker comment; `on_page_markdown` replaces it with Markdown made from the code of this checkout
(`src/` is put first on sys.path, ahead of any installed copy):

- `<!-- generated: cli -->`: every command of the Typer app (`ada_slm.app.cli`), walked through the click command
  tree that `typer.main.get_command` builds: its help, usage, and every argument and option with its type,
  default and help.
- `<!-- generated: run-config -->`: every key of `TrainConfig` (`ada_slm.run.config`) and of the models nested in
  it; `<!-- generated: study-file -->`: the same for the `Study` model (`ada_slm.study.spec`). The models are
  walked generically through `model_fields`, so a new field or a new nested model appears without touching this
  file. A field without a description shows "—" and is listed in the build log.

`python docs/hooks/reference.py` prints the generated Markdown (and the undocumented fields) without a build.
"""

from __future__ import annotations

import enum
import html
import inspect
import json
import logging
import re
import sys
import types
import typing
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.reference")

ROOT = Path(__file__).resolve().parents[2]
NO_DESCRIPTION = "—"

# marker -> (module, attribute, renderer name); the renderers are below
MARKERS = {
    "<!-- generated: cli -->": "cli",
    "<!-- generated: run-config -->": "run-config",
    "<!-- generated: study-file -->": "study-file",
}


def use_this_checkout() -> None:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


# ---------------------------------------------------------------- Markdown text


def text(s: str | None) -> str:
    """Help text as Markdown table-cell text: code spans kept, HTML and emphasis characters escaped, one line."""
    if not s:
        return ""
    s = inspect.cleandoc(s)
    s = "\n".join(line for line in s.splitlines() if line.strip() != "\b")  # click's no-rewrap marker
    parts = re.split(r"(`[^`]*`)", s)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part)
        else:
            part = html.escape(part, quote=False)
            part = re.sub(r"([*_\[\]\\])", r"\\\1", part)
            out.append(part)
    return " ".join("".join(out).split()).replace("|", "\\|")


def code(s: str) -> str:
    s = str(s).replace("|", "\\|")
    tick = "``" if "`" in s else "`"
    pad = " " if "`" in s else ""
    return f"{tick}{pad}{s}{pad}{tick}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---------------------------------------------------------------- the CLI


def _is_group(command) -> bool:
    return hasattr(command, "list_commands")


def walk_commands(command, path: list[str]):
    """(path, command) for the command and every command below it, depth first, in the app's order."""
    yield path, command
    if _is_group(command):
        for name in command.list_commands(None):
            yield from walk_commands(command.get_command(None, name), path + [name])


def cli_root():
    use_this_checkout()
    import typer

    from ada_slm.app.cli import app

    return typer.main.get_command(app)


def _param_type(param, ctx) -> str:
    if hasattr(param, "display_type"):  # typer ≥ 0.2x: its own parameter classes
        label = param.display_type(ctx).strip("<>")
    else:  # typer on click: the click type
        label = getattr(param.type, "name", str(param.type))
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        label = label.replace(" range", "")
        bounds = [f"≥ {low}" if low is not None else "", f"≤ {high}" if high is not None else ""]
        label += " (" + ", ".join(b for b in bounds if b) + ")"
    if getattr(param, "multiple", False):
        label += ", repeatable"
    return label


def _param_default(param) -> str:
    if param.required:
        return "required"
    default = param.default
    if callable(default):
        return "computed"
    if default is None or default == [] or default == ():
        return "none"
    if isinstance(default, Path):
        default = str(default)
    if isinstance(default, bool) and getattr(param, "secondary_opts", None):
        return code(param.opts[0] if default else param.secondary_opts[0])
    if isinstance(default, enum.Enum):
        default = default.value
    return code(default if isinstance(default, str) else json.dumps(default, ensure_ascii=False))


def _param_name(param) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name).upper()
        return code(name + ("..." if param.nargs == -1 else ""))
    names = " / ".join(list(param.opts) + list(param.secondary_opts or []))
    return code(names)


def _usage(path: list[str], command) -> str:
    pieces = []
    for p in command.params:
        if p.param_type_name != "argument":
            continue
        name = (p.metavar or p.name).upper() + ("..." if p.nargs == -1 else "")
        pieces.append(name if p.required else f"[{name}]")
    if _is_group(command):
        pieces.append("COMMAND")
    return " ".join(path + pieces + ["[OPTIONS]"])


def cli_markdown() -> str:
    root = cli_root()
    out = []
    for path, command in walk_commands(root, ["ada-slm"]):
        ctx = command.context_class(command, info_name=path[-1])
        level = "##" if len(path) <= 2 else "###"
        title = " ".join(path)
        internal = " (internal)" if getattr(command, "hidden", False) else ""
        out.append(f"{level} {title}{internal} {{ #{anchor(title)} }}\n")
        out.append("```\n" + _usage(path, command) + "\n```\n")
        if command.help:
            out.append(text(command.help) + "\n")
        if _is_group(command):
            subs = [(name, command.get_command(None, name)) for name in command.list_commands(None)]
            rows = [
                [
                    f"[{code(title + ' ' + name)}](#{anchor(title + ' ' + name)})",
                    text(sub.help or sub.short_help) or NO_DESCRIPTION,
                ]
                for name, sub in subs
            ]
            out.append(table(["command", "what it does"], rows) + "\n")
        rows = []
        for p in command.params:
            if getattr(p, "hidden", False):
                continue
            kind = "argument" if p.param_type_name == "argument" else "option"
            rows.append(
                [
                    _param_name(p),
                    kind,
                    code(_param_type(p, ctx)),
                    _param_default(p),
                    text(getattr(p, "help", None)) or NO_DESCRIPTION,
                ]
            )
        rows.append([code("--help"), "option", code("bool"), code("false"), "Show the command's help and exit."])
        out.append(table(["name", "kind", "type", "default", "help"], rows) + "\n")
    return "\n".join(out)


# ---------------------------------------------------------------- config models


def _is_model(tp) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _args(tp):
    return typing.get_args(tp)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def type_text(tp) -> str:
    """An annotation in the words a YAML author needs: models by name, Literal as its values, None as null."""
    if tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any"
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(v, ensure_ascii=False) for v in _args(tp))
    if _is_union(tp):
        return " \\| ".join(type_text(a) for a in _args(tp))
    if origin is typing.Annotated:
        return type_text(_args(tp)[0])
    if origin in (list, tuple, set, frozenset):
        inner = ", ".join(type_text(a) for a in _args(tp) if a is not Ellipsis)
        return f"list[{inner}]"
    if origin is dict:
        key, value = _args(tp) or (typing.Any, typing.Any)
        return f"mapping[{type_text(key)}, {type_text(value)}]"
    if _is_model(tp):
        return tp.__name__
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(json.dumps(m.value) for m in tp)
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def nested_models(tp, path: str) -> list[tuple[str, type]]:
    """(dotted path, model) for every model reachable in an annotation: a dict value adds `.<key>`, a list `[]`."""
    if _is_model(tp):
        return [(path, tp)]
    origin = typing.get_origin(tp)
    found = []
    if origin is dict:
        args = _args(tp)
        if args:
            found += nested_models(args[1], f"{path}.<key>")
    elif origin in (list, tuple, set, frozenset):
        for a in _args(tp):
            found += nested_models(a, f"{path}[]")
    elif _is_union(tp) or origin is typing.Annotated:
        for a in _args(tp):
            found += nested_models(a, path)
    return found


def _constraints(field) -> str:
    marks = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "at least", "max_length": "at most"}
    found = []
    for meta in field.metadata:
        for attr, word in marks.items():
            value = getattr(meta, attr, None)
            if value is not None:
                if attr.endswith("length"):
                    found.append(f"{word} {value} item{'s' if value != 1 else ''}")
                else:
                    found.append(f"{word} {value}")
    return ", ".join(found)


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:  # a factory that takes the validated data
            return "computed"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if _is_model(type(value)):
        return "its section's defaults"
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return code("null")
    if isinstance(value, str):
        return code(json.dumps(value, ensure_ascii=False)) if value == "" else code(value)
    try:
        return code(json.dumps(value, ensure_ascii=False))
    except TypeError:
        return code(repr(value))


def walk_models(model, prefix: str = "") -> list[tuple[str, type]]:
    """(key prefix, model) for the model and every model nested in it, depth first, each model path once."""
    found = [(prefix, model)]
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        for path, sub in nested_models(field.annotation, key):
            found += walk_models(sub, path + ".")
    return found


def model_fields(model, prefix: str = "") -> list[tuple[str, object]]:
    """(full dotted key, field) for every field of the model and of every model nested in it."""
    return [(f"{p}{name}", field) for p, m in walk_models(model, prefix) for name, field in m.model_fields.items()]


def undocumented(model) -> list[str]:
    return [key for key, field in model_fields(model) if not (field.description or "").strip()]


def _section_title(prefix: str, model) -> str:
    return f"`{prefix.rstrip('.')}`: {model.__name__}" if prefix else f"{model.__name__} (top level)"


def models_markdown(model) -> str:
    sections = walk_models(model)
    titles = {}
    for prefix, sub in sections:
        titles.setdefault(sub, anchor(_section_title(prefix, sub)))
    out = []
    for prefix, sub in sections:
        title = _section_title(prefix, sub)
        out.append(f"## {title} {{ #{anchor(title)} }}\n")
        doc = sub.__dict__.get("__doc__")
        if doc:
            out.append("\n\n".join(" ".join(par.split()) for par in inspect.cleandoc(doc).split("\n\n")) + "\n")
        rows = []
        for name, field in sub.model_fields.items():
            shown = type_text(field.annotation)
            for _, nested in nested_models(field.annotation, ""):
                shown = shown.replace(nested.__name__, f"[{nested.__name__}](#{titles[nested]})", 1)
            limits = _constraints(field)
            rows.append(
                [
                    code(f"{prefix}{name}"),
                    shown + (f" ({limits})" if limits else ""),
                    _default(field),
                    text(field.description) or NO_DESCRIPTION,
                ]
            )
        out.append(table(["key", "type", "default", "description"], rows) + "\n")
    return "\n".join(out)


def run_config_model():
    use_this_checkout()
    from ada_slm.run.config import TrainConfig

    return TrainConfig


def study_model():
    use_this_checkout()
    from ada_slm.study.spec import Study

    return Study


def render(kind: str) -> str:
    if kind == "cli":
        return cli_markdown()
    if kind == "run-config":
        return models_markdown(run_config_model())
    if kind == "study-file":
        return models_markdown(study_model())
    raise ValueError(kind)


# ---------------------------------------------------------------- MkDocs events


def on_config(config, **kwargs):
    use_this_checkout()
    for model in (run_config_model(), study_model()):
        missing = undocumented(model)
        if missing:
            log.info("%s: fields without a description (shown as —): %s", model.__name__, ", ".join(missing))
    return config


def on_page_markdown(markdown, page, config, files, **kwargs):
    for marker, kind in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render(kind))
    return markdown


if __name__ == "__main__":
    for kind in MARKERS.values():
        print(render(kind))
    print("undocumented:", undocumented(run_config_model()), undocumented(study_model()), file=sys.stderr)
