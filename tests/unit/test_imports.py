"""The house has three floors: vzcore (bottom) <- cluster <- jobs (top). Imports point down only.

Walks every module's imports (top level and inside functions) with `ast`: an import of a higher
floor, an import circle between modules, or a CLI framework in the library fails the test.
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
LAZY_IN_VZCORE = ("zarr", "pyarrow", "xarray", "datasets", "fsspec", "pandas", "matplotlib", "ray")


def _modules() -> dict[str, Path]:
    out = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _never_imported(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (runs as a script only) or `if TYPE_CHECKING:` (never runs)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def _imports(path: Path, *, scripts: bool = True) -> list[tuple[str, bool]]:
    """Return `(module, at_top_level)` for every import statement of a file.

    With `scripts=False`, imports under `if __name__ == "__main__":` (they run only when the file
    is executed as a script, `python -m jobs.score`) and `if TYPE_CHECKING:` are left out.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    top = set(map(id, tree.body))
    if not scripts:
        tree.body = [node for node in tree.body if not _never_imported(node)]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


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


def test_no_import_circle():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _ in _imports(path, scripts=False):
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


def test_importing_vzcore_stays_light():
    import subprocess
    import sys

    code = f"import sys, vzcore; print(sorted(m for m in {LAZY_IN_VZCORE!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_documented_fast_test_command_imports_the_tests():
    """`.venv/bin/pytest -m "not slow"` (the console script, not `python -m pytest`) finds `tests.support`."""
    import subprocess
    import sys
    from pathlib import Path

    pytest_bin = Path(sys.executable).with_name("pytest")
    target = "tests/families/test_fast_path.py"  # imports tests.support
    done = subprocess.run([str(pytest_bin), "-q", "-m", "not slow", target], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
