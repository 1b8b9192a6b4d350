"""The import arrows of the house: ``search_spaces`` <- ``growth`` <- ``baselines``, never the other way.

Every ``.py`` file of the three packages is read as an AST, so imports inside functions count as much as
those at the top (``importlib.import_module("...")`` with a literal name too). ``grow bench`` and
``grow report`` reach the engine's command line through the ``growth.commands`` entry points, not
through an import (see growth/cli.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("search_spaces", "growth", "baselines")      # lowest first: each imports only those before it
FORBIDDEN = {"search_spaces": {"growth", "baselines"}, "growth": {"baselines"}, "baselines": set()}
FAMILIES = ("search_spaces.resnet", "search_spaces.vgg", "search_spaces.timm_ref")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def imports_of(source: str, name: str, *, is_package: bool, top_level_only: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``source`` (module ``name``), relative ones resolved.

    ``from pkg import sub`` also yields ``pkg.sub``; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count as imports of ``x``.
    """
    tree = ast.parse(source)
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (isinstance(node.func, ast.Name) and node.func.id == "__import__"
                   or isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")):
            found.append((node.lineno, node.args[0].value))
    return found


def module_imports(name: str, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    path = SOURCES[name]
    return imports_of(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py",
                      top_level_only=top_level_only)


def test_the_walker_sees_imports_inside_functions_and_relative_ones() -> None:
    source = ("import os\n"
              "def f():\n    from baselines.bench import run_bench\n"
              "class C:\n    def g(self):\n        import growth.cli\n"
              "def h():\n    from .. import fixed\n    from . import x\n"
              "def i():\n    importlib.import_module('baselines.scs')\n")
    found = {module for _, module in imports_of(source, "growth.sub.mod", is_package=False)}
    assert {"os", "baselines.bench", "growth.cli", "growth.fixed", "growth.sub.x", "baselines.scs"} <= found


def test_every_package_file_is_checked() -> None:
    assert len(SOURCES) > 20
    for name in ("growth.cli", "search_spaces.registry", "baselines.commands", "baselines"):
        assert name in SOURCES


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_imports_point_down_the_layers_only(name: str) -> None:
    layer = name.split(".")[0]
    wrong = [f"{SOURCES[name].relative_to(ROOT)}:{line} imports {module}"
             for line, module in module_imports(name) if module.split(".")[0] in FORBIDDEN[layer]]
    assert not wrong, f"{layer} must not import {sorted(FORBIDDEN[layer])}: " + "; ".join(wrong)


def test_the_registry_imports_no_family() -> None:
    # the families import the registry and register themselves; the package hands the registry a loader
    wrong = [(line, m) for line, m in module_imports("search_spaces.registry") if m.startswith(FAMILIES)]
    assert not wrong


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one module."""
    import networkx as nx

    g = nx.DiGraph((a, b) for a, targets in graph.items() for b in targets if a != b)
    return [sorted(component) for component in nx.strongly_connected_components(g) if len(component) > 1]


def _graph(names: list[str], *, top_level_only: bool) -> dict[str, set[str]]:
    return {name: {m for _, m in module_imports(name, top_level_only=top_level_only) if m in SOURCES and m in names}
            for name in names}


def test_no_import_cycle_at_module_level() -> None:
    assert _cycles(_graph(sorted(SOURCES), top_level_only=True)) == []


@pytest.mark.parametrize("layer", ["search_spaces", "growth", "baselines"])
def test_no_import_cycle_even_through_imports_inside_functions(layer: str) -> None:
    names = [n for n in SOURCES if n.split(".")[0] == layer]
    assert _cycles(_graph(names, top_level_only=False)) == []


_BLOCK = """
import importlib, importlib.abc, pkgutil, sys
blocked = set(sys.argv[2].split(",")) - {""}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is blocked: a higher layer")

sys.meta_path.insert(0, Block())
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]]
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    importlib.import_module(info.name)
    names.append(info.name)
print(len(names), "modules")
"""


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_each_package_imports_in_a_fresh_interpreter_with_higher_layers_blocked(layer: str, tmp_path: Path) -> None:
    blocked = ",".join(sorted(FORBIDDEN[layer]))
    result = subprocess.run([sys.executable, "-c", _BLOCK, layer, blocked], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "modules" in result.stdout


def test_the_command_line_and_the_error_root_import_neither_torch_nor_baselines(tmp_path: Path) -> None:
    code = ("import sys, search_spaces.errors, growth, growth.cli as c; g, s = c.build_parser(); "
            "assert 'bench' in s and 'report' in s; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'baselines'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
