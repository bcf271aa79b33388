"""The package's import graph against docs/architecture.md: layers (imports point down), no cycles (imports
inside functions included), short modules, distinct names, and a light command line."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "unigen"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """Every ``unigen`` module that ``name`` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from unigen.cli import commands" imports the submodule unigen.cli.commands
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while (
                target and target not in MODULES
            ):  # "import unigen.tam.model.x" -> the longest module prefix
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_every_kind_of_import():
    assert "unigen.synth.backends" in GRAPH["unigen.evaluation.evaluate"]  # inside a function
    assert "unigen.cli.commands" in GRAPH["unigen.cli.app"]  # "from package import submodule"
    assert "unigen.synth.sampling" in GRAPH["unigen.synth.generation"]  # under TYPE_CHECKING
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_command_line_loads_without_torch():
    code = (
        "import sys; from unigen.cli import build_parser; build_parser(); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy.linalg', 'sklearn') "
        "if m in sys.modules); "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_api():
    import unigen

    for name in unigen.__all__:
        assert getattr(unigen, name) is not None, name
    from unigen import TaskModel, UniGenError, load_config, run_pipeline  # noqa: F401 (the README's imports)


# ---------------------------------------------------------------- the layers of docs/architecture.md

def read_layers() -> dict[str, int]:
    """``{top-level part of the package: rank}`` from the ```layers block of docs/architecture.md (rank 0:
    the bottom line)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    lines = [line.split("  ")[0].split() for line in block.group(1).strip().splitlines()]
    return {name: rank for rank, names in enumerate(reversed(lines)) for name in names}


def part(module: str) -> str:
    """``unigen.synth.scoring`` -> ``synth``; ``unigen.files`` -> ``files``; ``unigen`` -> ``unigen``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "unigen"


def test_every_module_sits_in_a_layer():
    layers = read_layers()
    missing = sorted({part(m) for m in MODULES} - set(layers))
    assert not missing, f"add these to the layers of docs/architecture.md: {missing}"


def test_imports_point_down_the_layers():
    layers = read_layers()
    wrong = [f"{a} imports {b}" for a, targets in sorted(GRAPH.items()) for b in sorted(targets)
             if part(a) != part(b) and layers[part(b)] >= layers[part(a)]]
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_the_layer_check_sees_a_wrong_import():
    layers = read_layers()
    assert layers["tam"] < layers["export"] and layers["config"] < layers["synth"]
    assert layers["synth"] == layers["tam"]  # siblings: an import either way is reported


def test_no_module_is_longer_than_450_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, f"split these modules: {long}"


def _stem(name: str) -> str:
    for suffix in ("ion", "ing", "e", "s"):
        if name.endswith(suffix) and len(name) > len(suffix) + 3:
            return name[: -len(suffix)]
    return name


def test_no_two_modules_of_a_package_differ_only_by_a_suffix():
    by_package: dict[str, list[str]] = {}
    for name in MODULES:
        package, _, leaf = name.rpartition(".")
        by_package.setdefault(package, []).append(leaf)
    clashes = [f"{package}: {a} / {b}" for package, leaves in by_package.items()
               for a in leaves for b in leaves
               if a < b and (_stem(a) == _stem(b) or _stem(a) == b or a == _stem(b))]
    assert not clashes, clashes
    assert _stem("generate") == _stem("generation") and _stem("relabeling") == "relabel"
