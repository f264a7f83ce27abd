"""The project documents its own methods: docs/methods.md names everything the registries offer, and no
docstring or doc sends a reader to a file the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS_DOC = ROOT / "docs" / "methods.md"


def test_methods_doc_covers_every_registered_method_grouping_merge_and_similarity():
    from promptvec.experiments.methods import METHODS
    from promptvec.prompts.dtvg import GROUPING_CHOICES
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
