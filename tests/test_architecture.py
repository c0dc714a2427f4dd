"""House rules (design.md §9), checked so they stay true: module size, import
direction, private names, lint, and thin notebooks."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "semlab"
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()
assert len(MODULES) > 50, f"semlab modules not found under {PKG}"


def _imports(path: Path, modname: str):
    """(target module, imported names) of every import in a module, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            yield base, [a.name for a in node.names]


def test_no_module_over_800_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_of_another_modules_private_names():
    bad = []
    for mod, path in MODULES.items():
        for target, names in _imports(path, mod):
            if not target.startswith("semlab") or target == mod:
                continue
            bad += [f"{mod} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
            if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
                bad.append(f"{mod} imports private module {target}")
    assert not bad, "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in _imports(path, mod):
            if not target.startswith("semlab"):
                continue
            for cand in [f"{target}.{n}" for n in names] + [target]:
                if cand in MODULES and cand != mod:
                    graph[mod].add(cand)
                    break
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    """Package __init__ re-exports excluded: a package importing its own submodules is
    not a cycle in the layering sense."""
    graph = _graph()
    for m in graph:
        if MODULES[m].name == "__init__.py":
            graph[m] = set()
    assert _cycles(graph) == []


def test_pyflakes_clean():
    pytest.importorskip("pyflakes")
    targets = [str(ROOT / d) for d in ("semlab", "tests", "notebooks")]
    res = subprocess.run([sys.executable, "-m", "pyflakes", *targets], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# No notebook code cell is longer than MAX_CELL_LINES or defines anything: loops and
# metrics assembly live in semlab. The parameters cell is exempt from the length rule: it
# holds one literal assignment per parameter (tests/test_notebooks.py checks that).
MAX_CELL_LINES = 15


def _no_magics(src: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


def test_notebook_cells_are_short_and_define_nothing():
    from semlab.nbsource import code_cells, list_notebooks, read_notebook

    books = list_notebooks(ROOT / "notebooks")
    assert books
    for p in books:
        cells = code_cells(read_notebook(p))
        assert not [c for c in cells if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                                            for n in ast.walk(ast.parse(_no_magics(c.source))))], f"{p.name}: a def in a cell"
        long = [len(c.source.splitlines()) for c in cells
                if "parameters" not in c.metadata.get("tags", []) and len(c.source.splitlines()) > MAX_CELL_LINES]
        assert not long, f"{p.name}: code cells of {long} lines (at most {MAX_CELL_LINES})"
