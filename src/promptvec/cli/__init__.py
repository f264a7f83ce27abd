"""The ``promptvec`` command: a thin layer over the library — each command parses its options, calls
library functions the Python API offers too, and prints. One module per command group; importing
this package registers them all on :data:`app`.

Lazy boundary: command modules import torch-heavy parts of promptvec inside the command functions,
so that ``promptvec --help`` and listing commands start without loading torch."""

from promptvec.cli import evaluate, experiment, hub, info, library, serve, store, train
from promptvec.cli.common import app

__all__ = ["app", "evaluate", "experiment", "hub", "info", "library", "serve", "store", "train"]
