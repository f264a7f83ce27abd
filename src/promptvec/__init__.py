"""promptvec: multi-task soft-prompt transfer on frozen language models.

The main API, importable from the top level::

    from promptvec import load_backbone, get_task, load_task_data, train_prompt, TrainConfig, evaluate
    from promptvec import Predictor, Origin, TaskPromptVector, VectorStore, run_suite

The names resolve on first use (PEP 562), so ``import promptvec`` — and the command line, which
imports it — stays fast and does not load torch before it is needed.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

from promptvec.errors import PromptvecError

try:
    __version__ = metadata.version("promptvec")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

#: public name -> the module that defines it
_EXPORTS = {
    "load_backbone": "promptvec.backbones",
    "Backbone": "promptvec.backbones",
    "get_task": "promptvec.tasks",
    "load_task_data": "promptvec.tasks",
    "TaskSpec": "promptvec.tasks",
    "TrainConfig": "promptvec.training.config",
    "train_prompt": "promptvec.training.trainer",
    "evaluate": "promptvec.evaluation",
    "evaluate_split": "promptvec.scoring",
    "EvalResult": "promptvec.evaluation",
    "Predictor": "promptvec.inference",
    "Origin": "promptvec.vectors",
    "TaskPromptVector": "promptvec.vectors",
    "VectorStore": "promptvec.store",
    "load_suite": "promptvec.suites.schema",
    "run_suite": "promptvec.experiments.runner",
    "build_report": "promptvec.experiments.report",
    "load_prompt": "promptvec.peft_folder",
    "save_prompt": "promptvec.peft_folder",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from promptvec.backbones import Backbone, load_backbone
    from promptvec.evaluation import EvalResult, evaluate
    from promptvec.experiments.report import build_report
    from promptvec.experiments.runner import run_suite
    from promptvec.inference import Predictor
    from promptvec.peft_folder import load_prompt, save_prompt
    from promptvec.scoring import evaluate_split
    from promptvec.store import VectorStore
    from promptvec.suites.schema import load_suite
    from promptvec.tasks import TaskSpec, get_task, load_task_data
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt
    from promptvec.vectors import Origin, TaskPromptVector


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module 'promptvec' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [  # the names of _EXPORTS, spelled out for linters and type checkers (a test keeps them equal)
    "Backbone", "EvalResult", "Origin", "Predictor", "PromptvecError", "TaskPromptVector", "TaskSpec", "TrainConfig",
    "VectorStore", "__version__", "build_report", "evaluate", "evaluate_split", "get_task", "load_backbone",
    "load_prompt", "load_suite", "load_task_data", "run_suite", "save_prompt", "train_prompt",
]
