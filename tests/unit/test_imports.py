"""The house has three floors: vzcore (bottom) <- cluster <- jobs (top). Imports point down only.

Walks every module's imports (top level and inside functions) with `ast`: an import of a higher
floor, an import circle between modules, or a CLI framework in the library fails the test. Inside
the library the store is the bottom floor of its own: it reads and writes, and imports nothing that
draws, scores or asks corpus questions (those live above it and import it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"vzcore": 0, "cluster": 1, "jobs": 2}
# What each floor may not import at all, whatever the floor of the importer.
FORBIDDEN = {"vzcore": ("typer", "click", "ray"), "cluster": ("jobs", "vzcore"), "jobs": ()}
# Imports that must not run when the package is imported (only inside functions): they keep `import vzcore` light.
LAZY_IN_VZCORE = ("zarr", "pyarrow", "xarray", "datasets", "fsspec", "pandas", "matplotlib", "ray", "numba")
# All the store package may reach in the project, directly or through what it imports: itself, the map
# contract and the plain data it reads into. Not `vzcore` itself (its `__init__` loads the scoring API), nor
# anything that draws (`vzcore.plot`), scores (`vzcore.api`, methods) or queries (`vzcore.queries`).
STORE_MAY_REACH = ("vzcore.store", "vzcore.maps", "vzcore.result", "vzcore.tokens")
STORE_NEVER_IMPORTS = ("torch", "transformers", "matplotlib")  # scoring and drawing, wherever imported from


def _modules() -> dict[str, Path]:
    return {_name(path): path for package in FLOORS for path in sorted((ROOT / package).rglob("*.py"))}


def _script_only(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`: runs only when the file is executed as a script (`python -m jobs.score`)."""
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def _imports(path: Path, *, scripts: bool = True) -> list[tuple[str, bool]]:
    """Return `(module, at_top_level)` for every import statement of a file, `if TYPE_CHECKING:` ones
    included; a relative import as the absolute name it resolves to.

    With `scripts=False`, imports under `if __name__ == "__main__":` are left out.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    top = set(map(id, tree.body))
    if not scripts:
        tree.body = [node for node in tree.body if not _script_only(node)]
    package = _name(path).split(".")[: None if path.name == "__init__.py" else -1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from ..x import y` (level 2) is `from <package's parent>.x import y`.
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            at_top = id(node) in top
            found.append((module, at_top))
            # `from pkg import sub` imports the module pkg.sub where there is one.
            found += [(f"{module}.{a.name}", at_top) for a in node.names if f"{module}.{a.name}" in MODULES]
    return found


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    floor = module.split(".")[0]
    for name, at_top in _imports(MODULES[module]):
        root = name.split(".")[0]
        if root in FLOORS:
            assert FLOORS[root] <= FLOORS[floor], f"{module} imports {name}: an arrow pointing up"
        assert root not in FORBIDDEN[floor], f"{module} imports {name}, which {floor}/ must not know"
        if floor == "vzcore" and at_top:
            assert root not in LAZY_IN_VZCORE, f"{module} imports {name} at module top: `import vzcore` must stay light"


def _graph(*, scripts: bool) -> dict[str, set[str]]:
    """Return module -> the project modules it imports (function-level and TYPE_CHECKING imports too)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _ in _imports(path, scripts=scripts):
            # `from a.b import c` may name a module a.b.c or a name in a.b: take the longest known prefix.
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                target = ".".join(parts[:k])
                if target in MODULES and target != module:
                    graph[module].add(target)
                    break
    # Package __init__ modules re-export their children: an edge from a child to its own package is
    # how Python resolves `from pkg.sub import x`, not a design circle; leave those out.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    return graph


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(t) :], t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_import_circle():
    """No circle, an import inside a function or under `if TYPE_CHECKING:` counting as an arrow."""
    _assert_no_circle(_graph(scripts=False))


def test_no_import_circle_counting_script_blocks():
    """No circle even through `if __name__ == "__main__":` blocks: every import is an arrow."""
    _assert_no_circle(_graph(scripts=True))


def test_the_store_imports_nothing_that_draws_scores_or_queries():
    graph = _graph(scripts=True)
    store = [m for m in MODULES if m == "vzcore.store" or m.startswith("vzcore.store.")]
    for module in store:
        for name, _ in _imports(MODULES[module]):  # every import: in functions, TYPE_CHECKING, scripts
            assert name in MODULES or name.split(".")[0] not in FLOORS, f"{module} imports {name}: no such module"
    reached, todo = set(store), list(store)
    while todo:  # what importing any store module may import, through the project's own modules
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    for module in sorted(reached):
        ok = any(module == allowed or module.startswith(allowed + ".") for allowed in STORE_MAY_REACH)
        assert ok, f"the store reaches {module}: it may import only {', '.join(STORE_MAY_REACH)}"
        for name, _ in _imports(MODULES[module]):
            root = name.split(".")[0]
            assert root not in STORE_NEVER_IMPORTS, f"{module}, which the store imports, imports {name}"


# Where a function may import the project's own modules: the command line (each command imports its job
# when it runs, so `vz --help` pays for none of them) and the modules that wrap Ray, a heavy package.
LAZY_PROJECT_IMPORTERS = ("jobs.cli",)
LAZY_PROJECT_MODULES = ("cluster.connect", "cluster.ray_executor")


def _function_level_project_imports(path: Path) -> list[str]:
    """Return the project modules a file imports inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.append(node.module)
                elif isinstance(node, ast.Import):
                    found += [alias.name for alias in node.names]
    return [m for m in found if m.split(".")[0] in FLOORS]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_lazy_imports_are_for_heavy_packages_only(module):
    """A module imports the project's modules at its top, where its dependencies show; a function-level
    import hides an arrow, so it is kept for heavy packages (third-party, or the project's Ray wrappers)."""
    if module == LAZY_PROJECT_IMPORTERS[0] or module.startswith(LAZY_PROJECT_IMPORTERS[0] + "."):
        return
    lazy = [m for m in _function_level_project_imports(MODULES[module]) if m not in LAZY_PROJECT_MODULES]
    assert not lazy, f"{module} imports {', '.join(sorted(set(lazy)))} inside a function: import it at the top"
