"""The package's shape: no import cycles, commands apart from the library, light modules stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lit_vision

PACKAGE_DIR = Path(lit_vision.__file__).resolve().parent
COMMANDS_DIR = PACKAGE_DIR / "commands"
#: modules run as ``python -m lit_vision.<name>`` / ``lit-vision <name>``, in ``lit_vision/commands/``
COMMANDS = {"train", "evaluate", "xgb", "baseline", "inspect", "predict", "compare", "sweeps", "export_backbone",
            "export", "serve", "rerun", "reproduce", "tune", "prepare", "audit"}
#: command plumbing beside the commands: the shared Hydra runner and the argparse commands' flag checks (commands
#: may import them), and the entry point
PLUMBING = {"lit_vision.commands", "lit_vision.commands.runner", "lit_vision.commands.arguments", "lit_vision.cli",
            "lit_vision.__main__"}
#: at most this many modules directly under src/lit_vision/ (the rest is in sub-packages)
MAX_TOP_LEVEL = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """Every ``lit_vision`` module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lit_vision")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_vision"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py") if "conf" not in p.relative_to(PACKAGE_DIR).parts}
    return {name: {m for m in internal_imports(path) if m in files and m != name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 20  # really walked the package
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_commands_do_not_import_each_other_and_the_library_imports_no_command() -> None:
    graph = import_graph()
    commands = {f"lit_vision.commands.{c}" for c in COMMANDS}
    assert commands <= set(graph)
    offenders = {m: sorted(deps & commands) for m, deps in graph.items() if deps & commands}
    assert offenders == {}
    library = set(graph) - commands - PLUMBING
    assert "lit_vision.deploy.server" in library and "lit_vision.runs.paths" in library
    from_library = {m: sorted(d for d in graph[m] if d == "lit_vision.commands" or d.startswith("lit_vision.commands."))
                    for m in library}
    assert {m: deps for m, deps in from_library.items() if deps} == {}


def test_every_command_has_a_module_in_commands_and_every_module_there_is_a_command() -> None:
    from lit_vision.commands import COMMANDS as LISTED

    modules = {p.stem for p in COMMANDS_DIR.glob("*.py")} - {"__init__", "runner", "arguments"}
    assert set(LISTED) == COMMANDS == modules
    assert all(line and "\n" not in line for line in LISTED.values())  # one line each in `lit-vision --help`


#: the library's layers, lowest first: a module may import its own layer and the layers below it, never one above
#: (the commands, the config check and the CLI sit above them all)
LAYERS = (("errors", "checks", "imaging"), ("data",), ("models",), ("training",), ("runs",), ("tuning",),
          ("reproduction",), ("deploy",), ("auditing",))


def layer_of(module: str) -> int | None:
    part = module.split(".")[1] if module.count(".") >= 1 else None
    return next((i for i, names in enumerate(LAYERS) if part in names), None)


def test_no_library_module_imports_a_layer_above_its_own() -> None:
    upward = sorted((m, d) for m, deps in import_graph().items() for d in deps
                    if layer_of(m) is not None and layer_of(d) is not None and layer_of(d) > layer_of(m))
    assert upward == []


def test_every_library_package_has_a_layer() -> None:
    parts = {m.split(".")[1] for m in import_graph() if m.count(".") >= 1}
    above = {"commands", "config", "cli", "__main__"}
    assert parts - above == {name for names in LAYERS for name in names}


def test_few_modules_sit_directly_under_the_package() -> None:
    top = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules directly under src/lit_vision/: {top}"


def test_no_command_shares_a_name_with_a_library_module() -> None:
    """``lit_vision.__path__`` ends with commands/, so a library module of a command's name would shadow it."""
    library = {p.stem for p in PACKAGE_DIR.glob("*.py")} | {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir()}
    assert COMMANDS & library == set()
    assert Path(lit_vision.__path__[-1]).resolve() == COMMANDS_DIR


def test_python_m_finds_the_commands_through_the_package_path() -> None:
    import importlib.util

    spec = importlib.util.find_spec("lit_vision.sweeps")
    assert spec is not None and Path(spec.origin).resolve() == COMMANDS_DIR / "sweeps.py"


@pytest.mark.parametrize("module", ["lit_vision.commands.compare", "lit_vision.commands.sweeps",
                                    "lit_vision.runs.sweep_summary", "lit_vision.runs.paths", "lit_vision.runs.seeds",
                                    "lit_vision.runs.history", "lit_vision.deploy.ensembles",
                                    "lit_vision.commands.reproduce", "lit_vision.cli"])
def test_table_tools_do_not_import_torch(module: str) -> None:
    """Reading JSON tables must not pay torch's import time (seconds)."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_base_configs_are_not_choices_of_data_or_model() -> None:
    conf = PACKAGE_DIR / "conf"
    assert not list(conf.glob("data/_*.yaml")) and not list(conf.glob("model/_*.yaml"))
