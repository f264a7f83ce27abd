"""The one registry type: duplicates refused, unknown names answered with close matches or the
list, lazy population, and every named family of the package uses it."""

from __future__ import annotations

import pytest

from promptvec.errors import ConfigError, TaskError
from promptvec.registry import Registry


def test_a_name_is_registered_once():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    registry.add("a", 1)  # the same component again (a re-imported module) is harmless
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.add("a", 2)
    assert registry["a"] == 1 and len(registry) == 1


def test_an_unknown_name_names_close_matches_or_lists_the_known_ones():
    registry: Registry[int] = Registry("widget")
    for name in ("task_arithmetic", "ties", "dare_ties"):
        registry.add(name, 0)
    with pytest.raises(ConfigError) as close:
        registry["tie"]
    assert close.value.message == "unknown widget 'tie'" and "did you mean ties" in close.value.hint
    with pytest.raises(ConfigError) as far:
        registry["zzz"]
    assert far.value.hint == "known: dare_ties, task_arithmetic, ties"
    with pytest.raises(ValueError, match=r"unknown widget 'zzz' \(known: dare_ties"):
        registry.check("zzz")
    assert registry.check("ties") == "ties" and registry.names() == ["dare_ties", "task_arithmetic", "ties"]


def test_the_family_error_and_lazy_population():
    calls = []

    def fill(registry):
        calls.append(1)
        registry.add("x", 1)

    registry: Registry[int] = Registry("thing", TaskError, populate=fill)
    assert calls == []
    assert "x" in registry and registry["x"] == 1 and list(registry) == ["x"]
    assert calls == [1]  # filled once
    with pytest.raises(TaskError):
        registry["y"]


def test_a_component_registers_under_its_own_name():
    registry: Registry[type] = Registry("kind")

    @registry.register()
    class Named:
        name = "named"

    assert registry["named"] is Named
    with pytest.raises(ValueError, match="needs a name"):
        registry.register()(type("Anonymous", (), {}))


def test_every_named_family_of_the_package_is_a_registry():
    from promptvec.backbones import BACKBONES
    from promptvec.evaluation import METRIC_FUNCTIONS
    from promptvec.experiments.plots import FIGURE_MAKERS
    from promptvec.methods.dtvg import GROUPINGS
    from promptvec.prompts import PROMPT_MODULES
    from promptvec.suites.analysis import ANALYSES
    from promptvec.suites.method import METHODS
    from promptvec.tasks.registry import BUILTIN_TASKS
    from promptvec.vectors import MERGE_METHODS, SIMILARITIES

    families = [BACKBONES, METRIC_FUNCTIONS, ANALYSES, METHODS, FIGURE_MAKERS, GROUPINGS, PROMPT_MODULES,
                BUILTIN_TASKS, MERGE_METHODS, SIMILARITIES]
    assert all(isinstance(f, Registry) and len(f) > 0 for f in families)
    assert {"pt", "tpv-init", "spot", "attempt", "dtvg", "fusion"} <= set(METHODS)


def test_a_scope_drops_what_was_registered_inside():
    registry: Registry[int] = Registry("widget")
    registry.add("kept", 1)
    with registry.scope():
        registry.add("throwaway", 2)
        assert registry["throwaway"] == 2
    assert list(registry) == ["kept"]
