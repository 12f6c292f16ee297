"""The layers depend one way, sweeps -> search_space -> components, and no package's modules import each other in
a circle. Read from the source (every import, the ones inside functions too), so a lazy import cannot hide one."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("components", "search_space", "sweeps")  # each may import only the ones before it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, anywhere in the file."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import compile`
    return out


def sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer):
    above = LAYERS[LAYERS.index(layer) + 1:]
    wrong = {f"{p.relative_to(ROOT)} imports {name}" for p in sources(layer) for name in imports(p)
             if name.split(".")[0] in above}
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_two_modules_of_a_package_import_each_other_in_a_circle(layer):
    modules = {module_name(p): p for p in sources(layer)}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # a package's __init__ re-exports its modules; the edges that matter are between sibling modules
        graph[name] = {m for m in imports(path) if m in modules and m != name and m != package
                       and not (path.name != "__init__.py" and m.startswith(package + ".") and
                                modules[m].name == "__init__.py")}
    cycle = _find_cycle({n: {m for m in deps if modules[m].name != "__init__.py"} for n, deps in graph.items()
                         if modules[n].name != "__init__.py"})
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None
