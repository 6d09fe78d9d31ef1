"""The package's layering, read from the source with ``ast`` (nothing is imported).

Layers, bottom to top (a module may import its own layer and the ones below, never one above):

    validation, compat, configs  (leaf helpers)
    models
    objectives, data
    pipelines  (and the package root ``muse_hf``, which registers the models and the pipeline)
    evaluation
    hub
    training
    experiments
    cli, demo, every ``__main__``

Module-level and function-level imports both count (``if TYPE_CHECKING:`` ones too). The test also refuses an import
circle between modules, a ``from x import _private`` across modules, and an import of a deprecated alias path
(:data:`muse_hf.compat.MOVED_MODULES`) from inside the package; the alias modules themselves are exempt from the
layering (they exist to point old paths at moved modules).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "muse_hf"

LAYERS: dict[str, int] = {
    "muse_hf.validation": 0,
    "muse_hf.compat": 0,
    "muse_hf.configs": 0,
    "muse_hf.models": 1,
    "muse_hf.objectives": 2,
    "muse_hf.data": 2,
    "muse_hf.pipelines": 3,
    "muse_hf": 3,
    "muse_hf.evaluation": 4,
    "muse_hf.hub": 5,
    "muse_hf.training": 6,
    "muse_hf.experiments": 7,
    "muse_hf.cli": 8,
    "muse_hf.demo": 8,
}
TOP_LAYER = max(LAYERS.values())


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


MODULES = all_modules()


def moved_modules() -> dict[str, str]:
    """``MOVED_MODULES`` of ``muse_hf/compat.py``, read without importing it."""
    tree = ast.parse((SRC / PACKAGE / "compat.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "MOVED_MODULES":
            return ast.literal_eval(node.value)
    raise AssertionError("muse_hf/compat.py has no MOVED_MODULES mapping")


MOVED = moved_modules()


def layer_of(module: str) -> int:
    """The layer of the longest ``LAYERS`` prefix of ``module``; ``__main__`` modules are entry points (top)."""
    if module.split(".")[-1] == "__main__":
        return TOP_LAYER
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer; add its package to LAYERS in {__file__}")


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def resolve_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` node names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str) -> Iterator[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import of a ``muse_hf`` module in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = resolve_from(module, node)
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # ``from package import submodule``
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES if m not in MOVED}
    for module in graph:
        for target, _, _ in imports_of(module):
            if target != module and target in graph:
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_scan_sees_the_package() -> None:
    # guards against a silently empty scan (a wrong SRC would make every other test pass)
    assert {"muse_hf.models.modeling_muse", "muse_hf.training.loop", "muse_hf.cli"} <= set(MODULES)
    assert "muse_hf.experiments.quickstart" in edges()["muse_hf.cli"]


def test_no_import_circle() -> None:
    cycle = find_cycle(edges())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_up_the_layers() -> None:
    upward = [
        f"{MODULES[m].relative_to(SRC)}:{line} imports {target} (layer {layer_of(target)} > {layer_of(m)})"
        for m in MODULES
        if m not in MOVED
        for target, _, line in imports_of(m)
        if target not in MOVED and layer_of(target) > layer_of(m)
    ]
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_no_private_name_imported_across_modules() -> None:
    private = [
        f"{MODULES[m].relative_to(SRC)}:{line} imports {name} from {target}"
        for m in MODULES
        for target, name, line in imports_of(m)
        if name is not None and name.startswith("_") and not name.startswith("__") and target != m
    ]
    assert not private, "private names used outside their module:\n" + "\n".join(private)


def test_package_does_not_import_its_deprecated_aliases() -> None:
    used = [
        f"{MODULES[m].relative_to(SRC)}:{line} imports the deprecated path {target} (use {MOVED[target]})"
        for m in MODULES
        if m not in MOVED
        for target, _, line in imports_of(m)
        if target in MOVED
    ]
    assert not used, "\n".join(used)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_deprecated_alias_modules_only_point_to_the_new_path(old: str) -> None:
    assert old in MODULES, f"{old} is listed in MOVED_MODULES but has no alias module"
    assert MOVED[old] in MODULES, f"{old} points to {MOVED[old]}, which does not exist"
    text = MODULES[old].read_text()
    assert f'alias_module("{old}", "{MOVED[old]}")' in text


def test_a_circle_and_an_upward_import_are_caught() -> None:
    # the checks themselves, on a made-up graph and module names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("muse_hf.training.loop") > layer_of("muse_hf.evaluation.metrics")
    assert layer_of("muse_hf.hub.__main__") == TOP_LAYER
