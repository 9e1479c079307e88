"""The layers of `bench/` import one way: from `cli` down to `metrics`, never up, never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"

#: Top to bottom; a module may import its own layer and the layers below it.
LAYERS = ("cli", "studies", "report", "analysis", "run", "metrics")


def module_name(path: Path) -> str:
    parts = path.relative_to(BENCH.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def bench_imports(path: Path) -> set[str]:
    """Every ``bench.*`` module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "bench"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            found.add(node.module)
            # ``from bench.report import figures`` imports the module bench.report.figures
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (BENCH.parent / node.module.replace(".", "/") / f"{alias.name}.py").exists()}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in BENCH.rglob("*.py")}
    return {name: {target for target in bench_imports(path) if target in modules and target != name}
            for name, path in modules.items()}


def layer_rank(module: str) -> int | None:
    """Index in `LAYERS` (0 = top), ``len(LAYERS)`` for `bench.errors`, None for `bench` itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] == "errors":
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    for module in import_graph():
        if module != "bench":
            assert layer_rank(module) is not None, module


def test_imports_never_run_upward():
    upward = [f"{source} imports {target}" for source, targets in import_graph().items() for target in targets
              if layer_rank(target) is not None and layer_rank(source) is not None
              and layer_rank(target) < layer_rank(source)]
    assert upward == []


def test_imports_form_no_cycle():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def later():\n    from bench.cli.options import parse_weights_options\n")
    assert "bench.cli.options" in bench_imports(source)
