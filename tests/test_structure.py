"""The package's shape, checked: no import cycle anywhere in ``src/promptvec`` — between modules
(every import counts: inside functions and under ``if TYPE_CHECKING:`` too, so a dependency is never
hidden from a reader) and between packages (a package's modules only import packages below it) —
and each method's code under its own folder of ``promptvec.methods``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "promptvec"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the promptvec modules it imports (``from a import b`` counts ``a.b`` when that is a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between the top-level packages of promptvec (``promptvec.methods``, …); a
    top-level module (``promptvec.io``) is its own node."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {unit(m): set() for m in graph}
    for module, targets in graph.items():
        packages[unit(module)] |= {unit(t) for t in targets if unit(t) != unit(module)}
    packages.pop("promptvec", None)  # the package's own __init__ re-exports from everything, lazily
    return {k: {t for t in v if t != "promptvec"} for k, v in packages.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
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


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "promptvec.suites.plan" in graph["promptvec.methods.runs"]  # a module-level import
    assert "promptvec.suites.plan" in graph["promptvec.cli.experiment"]  # imported inside a function only
    assert cycles(graph) == []


def test_packages_import_only_downward():
    """At package level too: suites (schema, plan, results, the method and analysis contracts and
    their registries) sit below both the methods and the experiments (runner, reports, analyses,
    transfer), which find the methods and analyses through those registries."""
    packages = package_graph(import_graph())
    assert "promptvec.suites" in packages["promptvec.methods"] & packages["promptvec.experiments"]
    assert not packages["promptvec.suites"] & {"promptvec.methods", "promptvec.experiments"}
    assert "promptvec.experiments" not in packages["promptvec.methods"]
    assert cycles(packages) == []


def test_each_method_lives_in_its_own_folder():
    from promptvec.suites.method import METHODS

    for name, method in METHODS.items():
        parts = method.__module__.split(".")
        assert parts[:2] == ["promptvec", "methods"] and len(parts) >= 4, f"{name} is defined in {method.__module__}"
    homes = {METHODS[n].__module__.split(".")[2] for n in ("attempt", "dtvg", "fusion", "spot", "tpv-init")}
    assert homes == {"attempt", "dtvg", "fusion", "spot", "tpv_init"}


def _code_strings_and_names(path: Path) -> set[str]:
    """String constants (docstrings excluded) and names a module's code uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.add(node.value)
        elif isinstance(node, ast.Name | ast.alias):
            found.add(node.id if isinstance(node, ast.Name) else node.name)
    return found


@pytest.mark.slow
def test_the_peft_adapter_folder_is_read_and_written_in_one_module():
    markers = {"adapter_model.safetensors", "adapter_config.json", "PromptTuningConfig", "prompt_embeddings"}
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if markers & _code_strings_and_names(p))
    assert users == ["peft_folder.py"]
    graph = import_graph()
    assert not any(m.startswith("promptvec.training") for m in graph["promptvec.vectors.tpv"])  # vectors ⊥ training


def test_the_training_loop_calls_nothing_back_in_the_trainer():
    """The Trainer builds a run and hands the TrainingLoop its parts; the loop reads the trainer's
    settings but never calls a trainer method (the call-backs `_datasets`, `_evaluate`, `_save_best`,
    `_load_best` and a loop driven from the trainer were the old, two-way design)."""
    tree = ast.parse((PACKAGE / "training" / "trainer.py").read_text(encoding="utf-8"))
    loop = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingLoop")
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    trainer_methods = {n.name for n in trainer.body if isinstance(n, ast.FunctionDef)}
    called = set()
    for node in ast.walk(loop):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id == "trainer") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "trainer"):
                called.add(node.func.attr)
    assert called <= {"on_step"} and not called & (trainer_methods - {"on_step"})  # on_step: the caller's hook
    assert "run" in {n.name for n in loop.body if isinstance(n, ast.FunctionDef)}
