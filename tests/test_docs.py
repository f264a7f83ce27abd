"""The project documents its own methods: docs/methods.md names everything the registries offer, and no
docstring or doc sends a reader to a file the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS_DOC = ROOT / "docs" / "methods.md"


def test_methods_doc_covers_every_registered_method_grouping_merge_and_similarity():
    from promptvec.methods.dtvg import GROUPING_CHOICES
    from promptvec.suites.method import METHODS
    from promptvec.vectors import MERGE_METHODS
    from promptvec.vectors.similarity import SIMILARITIES

    text = METHODS_DOC.read_text(encoding="utf-8")
    names = [*METHODS, *GROUPING_CHOICES, *MERGE_METHODS, *SIMILARITIES]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/methods.md does not describe {missing}"
    assert "## promptvec vs the authors' code" in text


def test_no_reference_to_files_outside_the_repository():
    sources = [*ROOT.glob("src/**/*.py"), *ROOT.glob("docs/*.md"), *ROOT.glob("*.md"), *ROOT.glob("benchmarks/*.py"),
               *ROOT.glob("examples/**/*.py"), *ROOT.glob("examples/**/*.yaml")]
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if re.search(r"\b(METHODS|ARCHITECTURE)\.md\b", p.read_text(encoding="utf-8"))]
    assert not offenders, f"these cite METHODS.md/ARCHITECTURE.md, which a clone does not have: {offenders}"


def test_readme_points_to_the_methods_doc():
    assert "docs/methods.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def contributing_blocks() -> list[str]:
    """The Python blocks of docs/contributing.md, in page order: method, its test, family, its test."""
    text = (ROOT / "docs" / "contributing.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run_block(code: str, label: str) -> dict:
    """Execute one block as the page shows it; its names."""
    names: dict = {}
    exec(compile(code, f"docs/contributing.md ({label})", "exec"), names)
    return names


def test_the_contributing_example_works_as_written(tmp_path, tiny_models, toy_tasks, backbones):
    """docs/contributing.md's method and its test, run as the page shows them: the method registers,
    runs in a tiny suite and starts from the mean of the source prompts; the registry is left as it was."""
    from promptvec.suites.method import METHODS

    method_code, test_code, _, _ = contributing_blocks()
    with METHODS.scope():
        method = run_block(method_code, "method")
        assert METHODS["mean-source"] is method["MeanSourceInit"]
        test = run_block(test_code, "test")["test_mean_source_starts_from_the_mean_of_the_source_prompts"]
        test(tmp_path, tiny_models, toy_tasks, backbones)
    assert "mean-source" not in METHODS


def test_the_contributing_backbone_family_works_as_written(tmp_path, tiny_models, toy_task):
    """docs/contributing.md's backbone family and its test, as the page shows them: one module registers
    the family, which TrainConfig, suites and load_backbone then accept; the registry is left as it was."""
    from promptvec.backbones import BACKBONES
    from promptvec.suites.schema import BackboneSpec
    from promptvec.training.config import TrainConfig

    _, _, family_code, test_code = contributing_blocks()
    with BACKBONES.scope():
        family = run_block(family_code, "family")
        assert BACKBONES["encoder-max"] is family["MaxPooledEncoderBackbone"]
        assert BackboneSpec(model="m", family="encoder-max").family == "encoder-max"  # a suite accepts it
        test = run_block(test_code, "family test")["test_max_pooled_encoder_pools_by_the_maximum_and_trains"]
        test(tmp_path, tiny_models, toy_task)
    assert "encoder-max" not in BACKBONES
    with pytest.raises(ValueError, match="encoder-max"):
        TrainConfig(task="sst2", family="encoder-max")
