"""lm-evaluation-harness task files read as promptvec tasks.

promptvec's task keys already follow lm-eval's names, and :func:`translate` covers the rest of the
subset that ordinary task files use: ``include`` (a base file, relative to the including one),
``dataset_kwargs.data_files`` (relative to the current folder, as lm-eval reads them), lm-eval's
split rule, ``doc_to_target`` given as a column, an index into the choices or a template,
``doc_to_choice`` as a list, ``description`` (put before every input, as lm-eval does),
``metric_list`` entries with ``aggregation``/``higher_is_better``, ``generation_kwargs``, and keys
that only describe the task (``metadata``, ``tag``, ...).

What promptvec cannot honour is refused by name with the reason, never dropped silently:
Python hooks (``!function``: promptvec never runs code from task files), per-example choices (a
promptvec task has one label set, the prompt learns to rank it), in-context few-shot examples (the
soft prompt takes their place), output filters beyond the ones greedy decoding makes no-ops,
log-likelihood-only output types. Keys that are read but change nothing (``metadata``, ``tag``,
decontamination settings, ...) and scoring that differs in detail (exact match always uses SQuAD's
normalisation) are listed in the task's ``notes``, which the command line prints when it loads the task.

Splits, as lm-eval uses them: it scores ``test_split``, else ``validation_split``. promptvec tests on
that same split and trains on ``training_split``; its validation split (checkpoint selection) is
``validation_split`` only when that is not the split being tested, otherwise it is carved from the
training split.

A file is read this way when it uses a key only lm-eval task files have (:data:`LM_EVAL_ONLY`, or a
``metric_list`` entry with ``aggregation``/``higher_is_better``); promptvec's own task files are read
as they always were.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

from promptvec.errors import TaskError
from promptvec.io import read_yaml_mapping

#: keys that only lm-eval task files use: their presence marks a file as an lm-eval task
LM_EVAL_ONLY = frozenset({
    "include", "dataset_kwargs", "metadata", "tag", "task_alias", "group_alias", "num_fewshot", "fewshot_split",
    "fewshot_config", "fewshot_delimiter", "filter_list", "process_docs", "process_results", "should_decontaminate",
    "doc_to_decontamination_query", "repeats", "unsafe_code", "use_prompt", "doc_to_image", "doc_to_audio",
    "gen_prefix", "multiple_input", "multiple_target", "class", "custom_dataset",
})
#: keys refused outright, with the reason and the fix
REFUSED = {
    "process_docs": "it rewrites the rows with Python code, which promptvec never runs from a task file",
    "process_results": "it scores with Python code, which promptvec never runs from a task file",
    "class": "it defines the task in Python, which promptvec never runs from a task file",
    "custom_dataset": "it builds the dataset in Python, which promptvec never runs from a task file",
    "use_prompt": "promptsource templates are not supported; write doc_to_text as a Jinja template",
    "doc_to_image": "promptvec tasks are text only",
    "doc_to_audio": "promptvec tasks are text only",
    "unsafe_code": "promptvec never runs code from a task",
    "multiple_input": "a promptvec task has one input template",
    "multiple_target": "a promptvec task has one target per row",
    "gen_prefix": "an answer prefix is not supported; put it at the end of doc_to_text",
}
#: keys read and ignored, with what that means (listed in the task's notes)
IGNORED = {
    "metadata": "descriptive only",
    "tag": "lm-eval's task grouping",
    "task_alias": "a display name",
    "group_alias": "a display name",
    "should_decontaminate": "contamination checks are not run",
    "doc_to_decontamination_query": "contamination checks are not run",
    "fewshot_split": "no in-context examples are used",
    "fewshot_delimiter": "no in-context examples are used",
    "fewshot_config": "no in-context examples are used",
}
#: lm-eval metric -> (promptvec metric, the aggregation lm-eval pairs it with)
METRICS = {"acc": ("acc", "mean"), "exact_match": ("exact_match", "mean"), "f1": ("f1", "f1"),
           "mcc": ("mcc", "matthews_corrcoef")}
#: output filters that change nothing for one greedy answer (promptvec strips whitespace itself)
NO_OP_FILTERS = {"remove_whitespace", "take_first"}
#: dataset builders that read local files (``dataset_path: json`` + ``data_files``)
FILE_BUILDERS = {"json", "csv", "parquet"}
_MAX_INCLUDES = 8


class PythonHook(str):
    """A ``!function module.name`` value: recognised so it can be refused by name, never imported."""


class _TaskLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader that also reads lm-eval's ``!function`` tag (as a :class:`PythonHook`)."""


_TaskLoader.add_constructor("!function", lambda loader, node: PythonHook(loader.construct_scalar(node)))


def read_task_file(path: Path, depth: int = 0) -> dict[str, Any]:
    """A task file's mapping with its ``include`` chain merged in (the including file wins)."""
    raw = read_yaml_mapping(path, "task YAML", TaskError, loader=_TaskLoader)
    base = raw.pop("include", None)
    if base is None:
        return raw
    if not isinstance(base, str) or isinstance(base, PythonHook):
        raise TaskError(f"{path}: include must name a YAML file", "e.g. include: _default_template_yaml")
    if depth >= _MAX_INCLUDES:
        raise TaskError(f"{path}: more than {_MAX_INCLUDES} nested includes", "check for an include cycle")
    included = (path.parent / base).resolve()
    if not included.is_file():
        raise TaskError(f"{path}: included file not found: {included}", "copy the file it includes next to it")
    return {**read_task_file(included, depth + 1), **raw}


def is_lm_eval_task(raw: dict[str, Any]) -> bool:
    metrics = raw.get("metric_list")
    detailed = isinstance(metrics, list) and any(
        isinstance(m, dict) and ({"aggregation", "higher_is_better"} & set(m)) for m in metrics)
    return bool(LM_EVAL_ONLY & set(raw)) or detailed or any(isinstance(v, PythonHook) for v in raw.values())


def translate(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """promptvec :class:`~promptvec.tasks.spec.TaskSpec` keys for an lm-eval task mapping (with ``notes``)."""
    notes: list[str] = []

    def refuse(key: str, reason: str, fix: str) -> TaskError:
        return TaskError(f"{path}: lm-eval key '{key}' cannot be honoured: {reason}", fix)

    for key, value in raw.items():
        if isinstance(value, PythonHook):
            raise refuse(key, f"it is a Python hook (!function {value}), and promptvec never runs code from a "
                              "task file", f"remove '{key}' (or rewrite it as a Jinja template)")
    for key, reason in REFUSED.items():
        if key in raw:
            raise refuse(key, reason, f"remove '{key}' from the task file")
    out = {k: v for k, v in raw.items() if k not in IGNORED and k not in LM_EVAL_ONLY}
    ignored = [k for k in raw if k in IGNORED]
    if ignored:
        notes.append("read but not used: " + "; ".join(f"{k} ({IGNORED[k]})" for k in ignored))
    _check_fewshot(raw, refuse)
    _check_filters(raw.get("filter_list"), refuse)
    output_type = raw.get("output_type", "multiple_choice")
    if output_type in ("loglikelihood", "loglikelihood_rolling"):
        raise refuse("output_type", f"'{output_type}' tasks have no label or answer for a prompt to learn",
                     "score such a task with a trained prompt through `promptvec lm-eval --model promptvec`")
    if raw.get("description"):
        out["doc_to_text"] = str(raw["description"]) + str(raw.get("doc_to_text", ""))
        out["description"] = str(raw["description"]).strip()
    out.update(_data_source(raw, path, refuse))
    out.update(_splits(raw, notes))
    if output_type == "multiple_choice":
        out.update(_choices(raw, refuse))
    else:
        out.pop("doc_to_choice", None)
    if "doc_to_target" in raw:
        out["doc_to_target"] = _target(raw["doc_to_target"], refuse)
    if "metric_list" in raw:
        out["metric_list"] = _metrics(raw["metric_list"], output_type, refuse, notes)
    if "generation_kwargs" in raw:
        out["generation_kwargs"] = _generation(raw["generation_kwargs"], refuse, notes)
    if output_type == "generate_until" and "metric_list" not in raw:
        out["metric_list"] = [{"metric": "exact_match"}]  # lm-eval's default for generate_until
    out["notes"] = notes
    return out


def _check_fewshot(raw: dict[str, Any], refuse) -> None:
    shots = raw.get("num_fewshot", 0)
    if shots not in (0, None):
        raise refuse("num_fewshot", f"it asks for {shots} in-context examples; promptvec's trained soft prompt "
                                    "takes their place", "set num_fewshot: 0 (or remove it)")
    repeats = raw.get("repeats", 1)
    if repeats not in (1, None):
        raise refuse("repeats", f"{repeats} samples per row need sampling; promptvec decodes greedily once",
                     "set repeats: 1")


def _check_filters(filters: Any, refuse) -> None:
    if filters is None:
        return
    functions = {step.get("function") for f in filters if isinstance(f, dict)
                 for step in f.get("filter") or [] if isinstance(step, dict)}
    extra = sorted(str(fn) for fn in functions - NO_OP_FILTERS)
    if extra or not isinstance(filters, list) or len(filters) > 1:
        what = f"filter function(s) {extra}" if extra else "several filter pipelines"
        raise refuse("filter_list", f"{what} rewrite the generated answer before scoring; promptvec scores one "
                                    "answer, stripped of whitespace (numeric_match extracts a final number)",
                     "remove filter_list (and use metric numeric_match for a final-number answer)")


def _data_source(raw: dict[str, Any], path: Path, refuse) -> dict[str, Any]:
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise refuse("dataset_kwargs", "it must be a mapping", "e.g. dataset_kwargs: {data_files: {test: x.jsonl}}")
    other = sorted(set(kwargs) - {"data_files"})
    if other:
        raise refuse(f"dataset_kwargs.{other[0]}", "only data_files is supported (promptvec never runs dataset "
                                                   "scripts or passes other loader options)",
                     f"remove {other} from dataset_kwargs")
    files = kwargs.get("data_files")
    if files is None:
        if raw.get("dataset_path") in FILE_BUILDERS:
            raise refuse("dataset_path", f"'{raw['dataset_path']}' reads local files but no data_files are given",
                         "add dataset_kwargs: {data_files: {...}}")
        return {}
    if isinstance(files, str | list):
        files = {"train": files}
    if not isinstance(files, dict):
        raise refuse("dataset_kwargs.data_files", "it must be a file, a list of one file, or split -> file",
                     "e.g. data_files: {train: train.jsonl, test: test.jsonl}")
    single: dict[str, str] = {}
    for split, value in files.items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str) or "://" in value:
            raise refuse("dataset_kwargs.data_files", f"split '{split}' must be one local file, got {value!r:.60}",
                         "give one local file per split (download remote files first)")
        # relative to the current folder, as lm-eval (datasets.load_dataset) reads them: the same file must
        # find the same data in both tools
        single[str(split)] = str(Path(value).resolve())
    train_key = raw.get("training_split") or "train"
    tested = raw.get("test_split") or raw.get("validation_split")
    val_key = raw.get("validation_split") if raw.get("test_split") else None
    mapped = {"train": single.get(train_key), "test": single.get(str(tested)) if tested else None,
              "validation": single.get(str(val_key)) if val_key else None}
    missing = [f"{ours} ('{key}')" for ours, key in (("train", train_key), ("test", tested)) if not mapped[ours]]
    if missing:
        raise refuse("dataset_kwargs.data_files", f"no file for the {', '.join(missing)} split(s); it has "
                                                  f"{sorted(single)}",
                     "name a file for training_split and for test_split (or validation_split)")
    return {"data_files": {k: v for k, v in mapped.items() if v}, "dataset_path": None
            if raw.get("dataset_path") in FILE_BUILDERS else raw.get("dataset_path")}


def _splits(raw: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """lm-eval scores test_split, else validation_split: promptvec tests on that one."""
    training = raw.get("training_split") or "train"
    if not raw.get("training_split"):
        notes.append("no training_split (lm-eval evaluates only): promptvec trains on 'train'")
    test, validation = raw.get("test_split"), raw.get("validation_split")
    if not test:
        if not validation:
            raise TaskError("an lm-eval task needs test_split or validation_split (the split it is scored on)",
                            "add test_split: test (or validation_split: validation)")
        notes.append(f"from the Hub: tested on '{validation}' (the split lm-eval scores, as there is no test_split), "
                     f"validation carved from '{training}' (a local data folder keeps its own splits)")
        return {"training_split": training, "test_split": validation, "validation_split": None}
    return {"training_split": training, "test_split": test, "validation_split": validation or None}


def _choices(raw: dict[str, Any], refuse) -> dict[str, Any]:
    choices = raw.get("doc_to_choice")
    if isinstance(choices, dict) and all(isinstance(k, int) for k in choices):
        choices = [choices[k] for k in sorted(choices)]
    if not isinstance(choices, list) or not all(isinstance(c, str | int | float) for c in choices):
        raise refuse("doc_to_choice", "per-example choices (a template or a column) are not supported: a promptvec "
                                      "task has one label set, which the prompt learns to rank",
                     "give doc_to_choice as a fixed list, e.g. [\"no\", \"yes\"]")
    names = [str(c) for c in choices]
    if len(set(names)) != len(names):
        raise refuse("doc_to_choice", f"it repeats a choice ({names}), so two labels could never be told apart",
                     "give distinct choices")
    index_map = {} if any(n.isdigit() for n in names) else {str(i): n for i, n in enumerate(names)}
    return {"doc_to_choice": names, "label_map": {**index_map, **(raw.get("label_map") or {})}}


def _target(target: Any, refuse) -> str:
    if isinstance(target, bool) or not isinstance(target, str):
        raise refuse("doc_to_target", f"a constant target ({target!r}) gives every row the same answer",
                     "name the label/answer column or give a template over the row")
    simple = re.fullmatch(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", target.strip())
    return simple.group(1) if simple else target


def _metrics(entries: Any, output_type: str, refuse, notes: list[str]) -> list[dict[str, str]]:
    if not isinstance(entries, list) or not entries:
        raise refuse("metric_list", "it must be a non-empty list", "e.g. metric_list: [{metric: acc}]")
    kept: list[dict[str, str]] = []
    for entry in entries:
        entry = {"metric": entry} if isinstance(entry, str) else entry
        name = entry.get("metric") if isinstance(entry, dict) else None
        if name == "acc_norm":
            notes.append("acc_norm (byte-length-normalised likelihood) is not computed; acc is")
            if not any(k["metric"] == "acc" for k in kept):
                kept.append({"metric": "acc"})
            continue
        if name not in METRICS:
            raise refuse("metric_list", f"metric {name!r} is not one promptvec computes",
                         f"use {sorted(METRICS)} (numeric_match, squad_f1 and rouge_l are promptvec's own)")
        ours, aggregation = METRICS[name]
        if entry.get("aggregation", aggregation) != aggregation:
            raise refuse("metric_list", f"{name} aggregated by {entry['aggregation']!r}; promptvec computes "
                                        f"{aggregation}", f"use aggregation: {aggregation}")
        if entry.get("higher_is_better", True) is not True:
            raise refuse("metric_list", f"{name} with higher_is_better: false", "remove higher_is_better")
        options = sorted(set(entry) - {"metric", "aggregation", "higher_is_better"})
        if options and name != "exact_match":
            raise refuse("metric_list", f"options {options} of {name} are not supported", f"remove {options}")
        if name == "exact_match":
            notes.append("exact_match uses SQuAD's normalisation (case, punctuation, articles and spaces ignored)"
                         + (f"; the file's {options} are not applied as such" if options else ""))
        if not any(k["metric"] == ours for k in kept):
            kept.append({"metric": ours})
    return kept


def _generation(settings: Any, refuse, notes: list[str]) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise refuse("generation_kwargs", "it must be a mapping", "e.g. generation_kwargs: {until: [\"\\n\"]}")
    if settings.get("do_sample") and settings.get("temperature", 1.0) not in (0, 0.0):
        raise refuse("generation_kwargs.do_sample", "promptvec decodes greedily", "set do_sample: false")
    out: dict[str, Any] = {}
    until = settings.get("until")
    if until is not None:
        out["until"] = [until] if isinstance(until, str) else list(until)
    tokens = settings.get("max_gen_toks", settings.get("max_new_tokens"))
    if tokens is not None:
        out["max_gen_toks"] = tokens
    unused = sorted(set(settings) - {"until", "max_gen_toks", "max_new_tokens", "do_sample", "temperature"})
    if unused:
        notes.append(f"generation_kwargs {unused} do not apply to greedy decoding")
    return out


def literal_answers(text: str) -> tuple[str, ...] | None:
    """A rendered target that is a Python list literal of strings (lm-eval reads ``{{answer.aliases}}``
    as several acceptable answers), else None. ``ast.literal_eval`` evaluates literals only."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None
