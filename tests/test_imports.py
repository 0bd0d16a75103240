"""The package's import structure: no cycles, and a library that imports no project code.

The graph is read from the source with ``ast``: every ``import`` counts, at module level,
inside functions and under ``if TYPE_CHECKING:`` alike, since a cycle held together by a
late import is still one that decides which module can be read first.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "hrda_kedro"
LIBRARY = f"{PACKAGE}.hrda"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def _imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name ``module`` imports, relative imports resolved; ``from a import b``
    yields ``a.b`` (a module or a name in ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for statement in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(statement, ast.Import):
            yield from (alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                anchor = package.split(".")[: len(package.split(".")) - statement.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in statement.names)


def _project_module(name: str) -> str | None:
    """The project module ``name`` loads: itself, else the package that defines it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (itself excluded)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_project_module(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
        # A package's __init__ is loaded before any of its modules: not an import edge.
        graph[module] -= {m for m in graph[module] if module.startswith(f"{m}.")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_late_and_relative_imports() -> None:
    graph = import_graph()
    # Relative: the self-training package imports its pipeline module.
    assert (
        f"{PACKAGE}.pipelines.self_training.pipeline" in graph[f"{PACKAGE}.pipelines.self_training"]
    )
    # Inside a function: the run-start hook reads the data layer's settings classes.
    assert f"{PACKAGE}.data.ingest" in graph[f"{PACKAGE}.hooks"]


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_library_imports_nothing_of_the_project_outside_it_nor_kedro() -> None:
    offending = {
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if module == LIBRARY or module.startswith(f"{LIBRARY}.")
        for name in _imported_names(module, path)
        if name.split(".")[0] == "kedro"
        or (name.startswith(f"{PACKAGE}.") and _outside_library(name))
    }
    assert not offending, "; ".join(sorted(offending))


def _outside_library(name: str) -> bool:
    module = _project_module(name)
    return module != PACKAGE and not (module == LIBRARY or str(module).startswith(f"{LIBRARY}."))


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each import really runs; the library alone loads neither Kedro nor project code, and
    no module imports transformers before it builds a network."""
    probe = (
        "import importlib, sys\n"
        f"library = [m for m in sys.argv[1:] if m == {LIBRARY!r} or m.startswith({LIBRARY!r} + '.')]\n"
        "for name in library: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kedro', 'hrda_kedro'))\n"
        f"print('outside:', [m for m in loaded if m not in ({PACKAGE!r},) and not (m == {LIBRARY!r} or m.startswith({LIBRARY!r} + '.'))])\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
        "print('imported', len(sys.argv) - 1)\n"
        "print('transformers loaded:', 'transformers' in sys.modules)\n"
        "print('torchvision loaded:', 'torchvision' in sys.modules)\n"
    )
    stdout = _run_in_fresh_interpreter(probe, *MODULES)
    assert f"imported {len(MODULES)}" in stdout
    assert "outside: []" in stdout, stdout
    # `kedro run` imports every pipeline's nodes and the parameter schema before its first
    # node; transformers waits until a MiT is built, torchvision (its import loads
    # torch._dynamo: 2-3 s of every command) until an image is resized or decoded or a
    # ResNet built.
    assert "transformers loaded: False" in stdout
    assert "torchvision loaded: False" in stdout


def test_kedro_start_up_loads_neither_torch_nor_the_model_stack() -> None:
    """Kedro imports the project's ``cli`` and ``settings`` (with its hooks) for every
    command, ``kedro --version`` and ``--help`` included; torch, torchvision, transformers
    and the parameter schema wait until a command needs them (about 5 s of start-up).
    Registering the pipelines (every ``kedro run``, before it validates anything) loads
    torch and the schema, not the vision and MiT libraries (2-3 s more). matplotlib it
    does load: Kedro reads the figure nodes' type hints (``Figure``) when it runs them."""
    heavy = ("torch", "torchvision", "transformers", f"{PACKAGE}.params", f"{PACKAGE}.hrda")
    probe = (
        "import sys\n"
        f"import {PACKAGE}.cli, {PACKAGE}.settings\n"
        f"print('loaded:', [m for m in {heavy!r} if m in sys.modules])\n"
        f"from {PACKAGE}.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        "late = ('torchvision', 'transformers')\n"
        "print('registered:', [m for m in late if m in sys.modules])\n"
        f"from {PACKAGE}.hrda.networks import NetworkConfig, build_network\n"
        "build_network(NetworkConfig(encoder='mit-nano'))\n"
        "print('after a MiT:', 'transformers' in sys.modules)\n"
    )
    stdout = _run_in_fresh_interpreter(probe)
    assert "loaded: []" in stdout, stdout
    assert "registered: []" in stdout, stdout
    # The probe sees what it looks for: building a MiT does load transformers.
    assert "after a MiT: True" in stdout, stdout


def _run_in_fresh_interpreter(code: str, *args: str) -> str:
    """Standard output of ``python -c code args`` on this checkout's ``src``; it must exit 0."""
    environ = {**os.environ, "PYTHONPATH": str(SRC), "KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
