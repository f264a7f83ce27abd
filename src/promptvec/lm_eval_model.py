"""promptvec as a model of lm-evaluation-harness: ``lm_eval --model promptvec``.

Why not lm-eval's ``hf`` model with ``peft=PROMPT``? Its log-likelihoods are right, but on
transformers 5.x PEFT's prompt-tuning ``generate`` inserts the soft prompt again at every decoding
step (transformers passes the key/value cache as ``cache``, PEFT looks for ``past_key_values`` to
know it is continuing), so generated text degenerates and ``generate_until`` tasks score near zero.
This model runs promptvec's own backbone instead: the prompt sits before the input exactly as in
training, its keys/values are computed once and shared by every batch (a causal model's shared
prompt cache), log-likelihoods take logits only at the continuation's positions, and greedy
decoding continues from the cache.

Requests are tokenised the way lm-eval's ``hf`` model tokenises them (its ``TemplateLM`` base does
the context/continuation split; empty contexts start from BOS, else EOS), so the two give the same
log-likelihoods for the same weights and prompt; inputs longer than ``max_length`` minus the
prompt's rows are cut from the left.

lm-eval 0.4 finds models in its own registry only, with no plugin entry points: this module
registers ``promptvec`` when it is imported, which ``promptvec lm-eval …`` (the same arguments as
``lm_eval``) does before handing over to lm-eval's command line. In Python, import this module
before ``lm_eval.simple_evaluate(model="promptvec", …)``.

Bookkeeping follows the ``hf`` model's: ``pretrained=`` and ``peft=`` are read as ``model=`` and
``prompt=`` (with a note); the results record the model's size, dtype and fingerprint and the
prompt's source and hash (:meth:`PromptvecLM.get_model_info`); ``promptvec lm-eval`` names its output
after the prompt (as ``hf`` names it after ``peft=``) and records the device the model ran on.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own models: registering ours first must not hide them)
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from promptvec.backbones import load_backbone
from promptvec.backbones.base import Batch, left_pad, pad_token_id
from promptvec.errors import ConfigError, describe_validation_error
from promptvec.io import file_sha256
from promptvec.peft_folder import WEIGHTS_FILE, check_compatible, load_prompt, locate_prompt
from promptvec.tasks.spec import GenerationSpec
from promptvec.training.config import TrainConfig

#: the shortest max_length promptvec accepts anywhere (TrainConfig's limit)
MIN_LENGTH = next(m.ge for m in TrainConfig.model_fields["max_length"].metadata if hasattr(m, "ge"))
#: lm-eval's own fallback when a model config names no context size
DEFAULT_CONTEXT = 2048
DEFAULT_BATCH_SIZE = 16
#: model_args lm-eval users write for its ``hf`` model, read as promptvec's own
ALIASES = {"pretrained": "model", "peft": "prompt"}

logger = logging.getLogger(__name__)


def _context_size(config: Any) -> int:
    """The model's context size as lm-eval's ``hf`` model reads it from the config."""
    for attribute in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_CONTEXT


def _batch_size(value: int | str | None) -> int:
    """lm-eval passes ``--batch_size`` through; ``auto`` has no memory probe here and means the default."""
    if value in (None, "auto") or (isinstance(value, str) and value.startswith("auto")):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"batch_size '{value}' is not a number", "pass --batch_size 16 (or auto)") from None
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}", "pass --batch_size 16 (or auto)")
    return size


def _usable(device: str) -> bool:
    """Whether torch can use ``device`` here. lm-eval passes ``cuda:0`` when the user names no device;
    like its ``hf`` model, promptvec then keeps the device it chose (a GPU if there is one, else the CPU)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return kind == "cpu"


class ModelArgs(BaseModel):
    """``--model_args`` of ``--model promptvec``, checked before anything loads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1, description="omit for the bare model; never empty")
    max_length: int | None = Field(None, ge=MIN_LENGTH, strict=True, description="tokens of prompt + input "
                                   "(default: the model's context size)")

    @classmethod
    def parse(cls, **values: Any) -> ModelArgs:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"invalid --model_args for promptvec: {describe_validation_error(exc)}",
                              "e.g. --model_args prompt=runs/sst2,max_length=512 (omit prompt for the bare model)"
                              ) from None


def _generation_spec(settings: dict[str, Any]) -> GenerationSpec:
    """An lm-eval task's generation settings, checked as promptvec checks its own task files."""
    until = settings.get("until")
    values: dict[str, Any] = {"max_gen_toks": settings.get("max_gen_toks")}
    if until is not None:
        values["until"] = [until] if isinstance(until, str) else list(until)
    try:
        return GenerationSpec.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"the task's generation_kwargs cannot be used: {describe_validation_error(exc)}",
                          "fix generation_kwargs in the task file (or pass --gen_kwargs)") from None


@register_model("promptvec")
class PromptvecLM(TemplateLM):
    """A frozen causal LM with (optionally) a promptvec soft prompt before every input.

    ``model_args``: ``model`` (promptvec's model name: ``default``, a Hub id or a folder; default: the
    prompt's own model, else ``default``), ``prompt`` (a prompt folder or run folder; omit for the bare
    model), ``max_length`` (tokens of prompt + input; default the model's context size).
    """

    backend = "causal"

    def __init__(self, model: str | None = None, prompt: str | None = None, max_length: int | None = None,
                 batch_size: int | str | None = None, device: str | None = None, **other: Any) -> None:
        super().__init__()
        given = {"model": model, "prompt": prompt}
        for alias, name in ALIASES.items():
            if alias not in other:
                continue
            if given[name] is not None:
                raise ConfigError(f"model_args give both {alias}= and {name}=", f"keep {name}= only")
            given[name] = other.pop(alias)
            logger.warning("promptvec reads %s= as %s= (the name promptvec's model uses)", alias, name)
        if other:
            raise ConfigError(f"unknown model_args for promptvec: {sorted(other)}",
                              "use model=, prompt=, max_length= (and lm-eval's --batch_size / --device)")
        args = ModelArgs.parse(**given, max_length=max_length)
        model, prompt, max_length = args.model, args.prompt, args.max_length
        checkpoint = load_prompt(prompt) if prompt is not None else None
        name = model or (checkpoint.metadata.get("model") if checkpoint else None) or "default"
        backbone = load_backbone(str(name))
        if not backbone.serves_lm_eval:
            raise ConfigError(f"lm-eval through promptvec needs a causal LM; '{name}' is a {backbone.family} model",
                              "use a decoder-only model (e.g. model=default)")
        if device and _usable(device):
            backbone.model.to(device)
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.prompt_path = str(prompt) if prompt else None
        self.prompt_source = checkpoint.source if checkpoint else None
        if checkpoint is not None:
            check_compatible(checkpoint.prompt, checkpoint.metadata, backbone, checkpoint.source)
            tensor = checkpoint.prompt.to(backbone.device, backbone.embedding.weight.dtype)
        else:
            tensor = torch.zeros(0, backbone.dim, device=backbone.device)
        #: the prompt's keys/values, computed once for every request
        self.prompt = backbone.prepare_prompt(tensor)
        self.prompt_rows = tensor.shape[0]
        self._max_length = max_length or _context_size(backbone.model.config)
        if self._max_length <= self.prompt_rows + 1:
            raise ConfigError(f"max_length {self._max_length} leaves no room for an input after the prompt's "
                              f"{self.prompt_rows} rows", f"pass max_length above {self.prompt_rows + 1} (or omit it: "
                              "the model's context size)")
        self.batch_size_per_call = _batch_size(batch_size)

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval records about the model in its results (as ``hf`` records it): size, dtype, the
        weights' identity — promptvec's fingerprint, the sha256 of the input-embedding matrix, which
        every prompt records too — and the prompt's source (a Hub id's commit) and file hash."""
        model = self.backbone.model
        info: dict[str, Any] = {"model_num_parameters": sum(p.numel() for p in model.parameters()),
                                "model_dtype": str(model.dtype), "model_name_or_path": self.backbone.name,
                                "model_fingerprint": self.backbone.fingerprint}
        if self.prompt_path is not None:
            located = locate_prompt(self.prompt_path).path
            weights = located if located.is_file() else located / WEIGHTS_FILE
            info.update({"prompt_source": self.prompt_source, "prompt_rows": self.prompt_rows,
                         "prompt_sha256": file_sha256(weights)})
        return info

    # ---- what lm-eval reads from a model ------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        """Tokens the input may take: the context size less the prompt's rows."""
        return self._max_length - self.prompt_rows

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos = self.tokenizer.bos_token
        if add_special_tokens is None and bos and string.startswith(bos):
            options["add_special_tokens"] = False
        return self.tokenizer.encode(string, **options)

    # ---- scoring ---------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """Score (context, continuation) token pairs. Each request is first cut from the left to
        ``max_length`` + 1 tokens, as lm-eval's ``hf`` model cuts it; requests that then share a context
        (the choices of a multiple-choice question) run that context once. Batches go longest first."""
        window = self.max_length + 1
        groups: dict[tuple[int, ...], list[int]] = {}
        continuations = []
        for i, (_, context, continuation) in enumerate(requests):
            sequence = (context + continuation)[-window:]
            if len(continuation) >= len(sequence):
                raise ConfigError(f"a continuation of {len(continuation)} tokens leaves no context within "
                                  f"max_length {self.max_length}", "raise max_length in --model_args")
            groups.setdefault(tuple(sequence[: -len(continuation)]), []).append(i)
            continuations.append(continuation)
        results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        by_length = sorted(groups, key=lambda c: -len(c))
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests")
        for start in range(0, len(by_length), self.batch_size_per_call):
            contexts = by_length[start: start + self.batch_size_per_call]
            scored = self.backbone.choice_logprobs([list(c) for c in contexts],
                                                   [[continuations[i] for i in groups[c]] for c in contexts],
                                                   self.prompt)
            for key, values in zip(contexts, scored, strict=True):
                for i, value in zip(groups[key], values, strict=True):
                    results[i] = value
                bar.update(len(groups[key]))
        bar.close()
        for (request, _, _), value in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", request, value)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-text log-likelihood in disjoint windows of ``max_length`` tokens (lm-eval's windowing)."""
        windows: list[tuple[int, list[int], list[int]]] = []
        for index, (text,) in enumerate(request.args for request in requests):
            tokens = self.tok_encode(text)
            for context, continuation in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                    context_len=1)):
                windows.append((index, context, continuation))
        scored = self._loglikelihood_tokens([(("", ""), context, cont) for _, context, cont in windows],
                                            disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for (index, _, _), (logprob, _) in zip(windows, scored, strict=True):
            totals[index] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding from the shared prompt cache, cut at ``until`` (and EOS) as lm-eval cuts it."""
        eos = self.tokenizer.decode([self.eot_token_id])
        results = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running generate_until requests")
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(index)
        for indices in groups.values():
            raw = dict(requests[indices[0]].args[1])
            settings = normalize_gen_kwargs(raw, 256)
            if settings.get("do_sample") and settings.get("temperature", 0) > 0:
                raise ConfigError("promptvec's lm-eval model decodes greedily; this task asks for sampling",
                                  "pass --gen_kwargs do_sample=False (or use a task that decodes greedily)")
            # the checks a promptvec task file gets, on the task's own values (lm-eval would cast True to 1)
            spec = _generation_spec({**settings, **{k: raw[k] for k in ("max_gen_toks", "until") if k in raw}})
            until = handle_stop_sequences(list(spec.until), eos=eos)
            max_gen_toks = spec.max_gen_toks
            budget = self.max_length - max_gen_toks
            if budget < 1:
                raise ConfigError(f"max_gen_toks {max_gen_toks} leaves no room for the input in {self.max_length} "
                                  "tokens", "raise max_length in --model_args or lower max_gen_toks")
            contexts = {i: self.tok_encode(requests[i].args[0])[-budget:] for i in indices}
            order = sorted(indices, key=lambda i: -len(contexts[i]))
            for start in range(0, len(order), self.batch_size_per_call):
                chunk = order[start: start + self.batch_size_per_call]
                ids, mask = left_pad([contexts[i] for i in chunk], pad_token_id(self.tokenizer))
                batch = Batch(ids, mask, torch.zeros(len(chunk), dtype=torch.long)).to(self.device)
                texts = self.backbone.generate(batch, self.prompt, max_gen_toks, tuple(until)).texts
                for i, text in zip(chunk, texts, strict=True):
                    results[i] = postprocess_generated_text(text, until, None)
                    self.cache_hook.add_partial("generate_until", requests[i].args, results[i])
                bar.update(len(chunk))
        bar.close()
        return results


def _option(arguments: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in an lm-eval command line."""
    for i, argument in enumerate(arguments):
        if argument == name and i + 1 < len(arguments):
            return arguments[i + 1]
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
    return None


def _device_used(arguments: list[str]) -> list[str]:
    """The command line with the device the model will really run on: lm-eval records ``--device``
    as given, ``cuda:0`` when none is, also on a machine without one."""
    asked = _option(arguments, "--device")
    if asked is not None and _usable(asked):
        return arguments
    real = "cuda" if torch.cuda.is_available() else "cpu"
    kept = [a for i, a in enumerate(arguments)
            if a != "--device" and not a.startswith("--device=") and not (i and arguments[i - 1] == "--device")]
    if asked is not None:
        logger.warning("--device %s cannot be used here: the model runs on %s", asked, real)
    return [*kept, "--device", real]


@contextmanager
def _named_after_the_prompt():
    """lm-eval names its output folder after ``peft=``/``pretrained=``/``model=`` in the model_args,
    else a random id; the promptvec model is named after its ``prompt=`` first, as ``hf`` after ``peft=``."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    original = GeneralConfigTracker._get_model_name

    def name(model_args: str | dict[str, Any] | None) -> str | None:
        if isinstance(model_args, str):
            model_args = dict(item.split("=", 1) for item in model_args.split(",") if "=" in item)
        if isinstance(model_args, dict) and model_args.get("prompt"):
            return str(model_args["prompt"])
        return original(model_args)

    GeneralConfigTracker._get_model_name = staticmethod(name)
    try:
        yield
    finally:
        GeneralConfigTracker._get_model_name = staticmethod(original)


def run_cli(arguments: list[str]) -> None:
    """lm-eval's own command line, with the ``promptvec`` model registered (this module is imported),
    its output named after the prompt and the device it really ran on recorded."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    if _option(arguments, "--model") == "promptvec":
        arguments = _device_used(arguments)
    sys.argv = ["lm_eval", *arguments]
    with _named_after_the_prompt():
        cli_evaluate()


__all__ = ["PromptvecLM", "run_cli"]
