"""The house's arrows: the layer order docs/architecture.md states, between hmrec's packages and inside serving/, no
import circle, and bench imports nothing from tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hmrec"

# hmrec's packages and top-level modules, lowest first: each may import its own layer and those before it
# (docs/architecture.md). `hmrec` (the package itself), `logs`, `cpus`, `allocator` and `workdir` (leaves that import
# only the standard library and numpy) are imported by any layer.
LAYERS = [{"hmrec", "logs", "cpus", "allocator", "workdir"}, {"raw"}, {"sample"}, {"store"}, {"data"}, {"recommenders"}, {"retrieval"},
          {"candidates"}, {"ranking"}, {"evaluation"}, {"registry"}, {"feedback"}, {"serving"}, {"scale"}, {"support"},
          {"pipeline", "scoring", "retrain"}, {"cli", "commands"}]
# The one arrow upward on purpose (docs/architecture.md): the ranker chooses its leader with the report's metrics,
# pure functions that import only `data`, so both measure MAP@12 the same way.
ALLOWED_UPWARD = {("hmrec.ranking.training", "hmrec.evaluation.metrics")}
# serving/'s modules, lowest first: the leaves, the read model and the event stores, the parts that own the served
# data, the two services that answer, their wiring (one dependency per resource, the lifespan's builder), the
# routers, and the app and its processes.
SERVING_LAYERS = [{"settings", "schemas", "metrics", "limits", "edges", "images", "docs", "launch", "precomputed"},
                  {"model", "events"},
                  {"model_holder", "live", "cards", "reasons", "cold_start", "batching", "cache", "impressions"},
                  {"recommend", "catalogue_views"}, {"deps", "services"}, {"routes"}, {"app", "workers"}]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (type-only imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def rank_of(layers: list[set[str]], name: str) -> float:
    for i, layer in enumerate(layers):
        if name in layer:
            return i
    raise KeyError(f"{name} is in no layer: place it in the list (and docs/architecture.md)")


def upward_imports(graph: dict[str, set[str]], rank) -> list[tuple[str, str]]:
    """Every (importer, imported) pair whose imported module sits in a higher layer than its importer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if rank(b) > rank(a) and (a, b) not in ALLOWED_UPWARD)


def package_rank(module: str) -> float:
    parts = module.split(".")
    return rank_of(LAYERS, parts[1] if len(parts) > 1 else parts[0])


def serving_rank(module: str) -> float:
    return rank_of(SERVING_LAYERS, module.split(".")[2])


def test_upward_imports_finds_a_planted_one():
    graph = {"hmrec.store.x": {"hmrec.raw.y", "hmrec.ranking.z"}, "hmrec.raw.y": set(), "hmrec.ranking.z": set()}
    assert upward_imports(graph, package_rank) == [("hmrec.store.x", "hmrec.ranking.z")]
    routes = {"hmrec.serving.cards": {"hmrec.serving.routes.admin"}, "hmrec.serving.routes.admin": set()}
    assert upward_imports(routes, serving_rank) == [("hmrec.serving.cards", "hmrec.serving.routes.admin")]


def test_no_package_imports_one_above_it():
    assert upward_imports(import_graph(), package_rank) == []


def test_inside_serving_no_module_imports_one_above_it():
    graph = {name: {m for m in targets if m.startswith("hmrec.serving.")} for name, targets in import_graph().items()
             if name.startswith("hmrec.serving.")}
    unplaced = sorted({name.split(".")[2] for name in graph} - set().union(*SERVING_LAYERS))
    assert unplaced == [], f"place these serving modules in SERVING_LAYERS (and docs/architecture.md): {unplaced}"
    assert upward_imports(graph, serving_rank) == []


def test_find_cycle_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_hmrec_imports_itself_round_a_circle():
    assert find_cycle(import_graph()) is None


def test_bench_imports_nothing_from_tests():
    test_modules = {path.stem for path in (ROOT / "tests").glob("*.py")}
    for script in (ROOT / "bench").glob("*.py"):
        text = script.read_text()
        assert "tests" not in {m.split(".")[0] for m in imports_of(script)} and "sys.path" not in text, script.name
        assert not imports_of(script) & test_modules, script.name
