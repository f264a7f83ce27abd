"""Build the Python API reference from the docstrings (``make docs``; ``make test`` runs it too, so a
docstring or import that breaks the reference fails the tests).

    python docs/build_api.py [OUT]      # default build/api; open OUT/index.html

Every module of the package gets a page (pdoc), including those a package's ``__all__`` does not
list; ``promptvec.__main__`` is left out (it is the command line, not an API).
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

import promptvec


def modules() -> list[str]:
    """Every module, named: pdoc walks a subpackage's modules only when its ``__all__`` allows."""
    found = [m.name for m in pkgutil.walk_packages(promptvec.__path__, "promptvec.")]
    return ["promptvec", *sorted(name for name in found if not name.endswith("__main__"))]


def main(out: Path) -> None:
    pdoc.render.configure(docformat="google", show_source=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules(), output_directory=out)
    # a module both named here and walked by pdoc is reported as "already added": one page, no problem
    problems = [w for w in caught if "pdoc" in w.filename and "already been added" not in str(w.message)]
    for w in problems:
        print(f"docs: {w.message}", file=sys.stderr)
    pages = len(list(out.rglob("*.html")))
    print(f"API reference: {pages} pages in {out}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/api"))
