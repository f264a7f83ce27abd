"""promptvec: multi-task soft-prompt transfer on frozen language models."""

from importlib import metadata

from promptvec.errors import PromptvecError

try:
    __version__ = metadata.version("promptvec")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["PromptvecError", "__version__"]
