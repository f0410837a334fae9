"""The package's folders are its layers: a module imports only from its own floor or the floors below, and the
import graph has no cycles. `python tests/test_layers.py` prints the graph's summary (modules, edges per floor
pair, upward imports, cycles, sizes)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ada_slm"

# ground < stats < agl < run < study < analysis < app: what each folder may build on (stats: numbers in, numbers
# out — it knows no file, run or study)
FLOORS = {"ground": 0, "stats": 1, "agl": 2, "run": 3, "study": 4, "analysis": 5, "app": 6}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in FLOORS else "ground"


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported package module, imported inside a function) for every import of the package in the file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, inside: bool):
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if (
                isinstance(child, ast.ImportFrom)
                and child.module
                and child.level == 0
                and child.module.split(".")[0] == "ada_slm"
            ):
                for alias in child.names:  # `from ada_slm.run import config` imports the module ada_slm.run.config
                    full = f"{child.module}.{alias.name}"
                    found.append((full if full in modules else child.module, nested))
            elif isinstance(child, ast.Import):
                found.extend((a.name, nested) for a in child.names if a.name.split(".")[0] == "ada_slm")
            visit(child, nested)

    visit(tree, False)
    return [(m, nested) for m, nested in found if m in modules]


def graph() -> dict[str, list[tuple[str, bool]]]:
    modules = package_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def upward_imports(g) -> list[str]:
    return [
        f"{a} ({floor_of(a)}) imports {b} ({floor_of(b)})"
        for a, deps in g.items()
        for b, _ in deps
        if FLOORS[floor_of(b)] > FLOORS[floor_of(a)]
    ]


def cycles(g) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), over every import, lazy ones too."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in g.get(v, []):
            if w == v or w.startswith(v + "."):  # a package's __init__ importing its own submodule
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in g:
        if v not in index:
            connect(v)
    return out


def lazy_package_imports(g) -> list[str]:
    return [f"{a} imports {b} inside a function" for a, deps in g.items() for b, nested in deps if nested]


def oversized() -> tuple[list[str], list[str]]:
    big_modules, long_functions = [], []
    for name, path in package_modules().items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            big_modules.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    return big_modules, long_functions


def test_no_module_imports_from_a_floor_above_its_own():
    assert upward_imports(graph()) == []


def test_the_import_graph_has_no_cycles():
    assert cycles(graph()) == []


def test_sizes_over_the_caps_are_reported_as_warnings():
    """The caps are a prompt to look, not a rule: a cohesive 500-line module beats three fragments split to pass a
    count. Over-cap modules and functions are warnings in the test summary."""
    big, long = oversized()
    for what in big + long:
        warnings.warn(
            f"over the size cap ({MAX_MODULE_LINES} lines a module, {MAX_FUNCTION_LINES} a function): {what}",
            stacklevel=1,
        )


def private_imports() -> list[str]:
    """`from ada_slm.x import _name`: a name its module keeps private, used from another module."""
    out = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ada_slm"):
                out.extend(f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
    return out


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_the_checker_sees_an_upward_import_and_a_cycle():
    g = {"ada_slm.run.train": [("ada_slm.app.serve", False)], "ada_slm.app.serve": [("ada_slm.run.train", True)]}
    assert upward_imports(g) == ["ada_slm.run.train (run) imports ada_slm.app.serve (app)"]
    assert cycles(g) == [["ada_slm.app.serve", "ada_slm.run.train"]]
    assert lazy_package_imports(g) == ["ada_slm.app.serve imports ada_slm.run.train inside a function"]


def test_every_folder_of_the_package_is_a_known_floor():
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    assert folders <= set(FLOORS)


if __name__ == "__main__":
    g = graph()
    edges = sum(len(set(m for m, _ in deps)) for deps in g.values())
    per_floor = {}
    for name in g:
        per_floor.setdefault(floor_of(name), []).append(name)
    print(f"{len(g)} modules, {edges} import edges")
    for floor in sorted(per_floor, key=FLOORS.get):
        print(f"  {floor:9} ({FLOORS[floor]}): {len(per_floor[floor])} modules")
    print(f"upward imports: {len(upward_imports(g))}", *upward_imports(g), sep="\n  ")
    print(f"cycles: {len(cycles(g))}", *cycles(g), sep="\n  ")
    print(f"package imports inside functions: {len(lazy_package_imports(g))}", *lazy_package_imports(g), sep="\n  ")
    big, long = oversized()
    print(f"modules over {MAX_MODULE_LINES} lines: {len(big)}", *big, sep="\n  ")
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(long)}", *long, sep="\n  ")


def test_the_tests_folders_mirror_the_package():
    """tests/<floor>/ for each floor with tests; the project-wide tests and the ground modules' at tests/."""
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "data"}
    assert folders <= set(FLOORS) - {"ground"}, folders - set(FLOORS)
