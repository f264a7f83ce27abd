"""The frozen model side: token ids + a prompt tensor in, loss or per-label scores out.

A :class:`Backbone` knows nothing about how the prompt was produced (that is the prompt module's
job) nor about optimisation (the trainer's). Each family lives in its own file in this package and
registers itself in :data:`BACKBONES`; the registry imports every module of the package on its first
lookup, so a new family is one new file. A family describes itself — the ``transformers`` Auto class
that loads it, its PEFT task type, how it recognises a model config, what it can do — and every other
part of promptvec asks the class instead of naming families.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import nn

from promptvec.backbones.packing import PackedRows
from promptvec.encoding import DEFAULT_MAX_LENGTH, EncodingSpec
from promptvec.errors import ConfigError, ModelLoadError
from promptvec.registry import Registry
from promptvec.tasks.spec import Example, TaskSpec


def _import_families(registry: Registry[type[Backbone]]) -> None:
    """Import every module of :mod:`promptvec.backbones`: each family module registers its class."""
    package = importlib.import_module("promptvec.backbones")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


BACKBONES: Registry[type[Backbone]] = Registry("backbone family", ModelLoadError, populate=_import_families)


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    return BACKBONES.add(cls.family, cls)


@dataclass
class LabelSet:
    """Token ids of every label verbalization of a task, as this backbone scores them."""

    names: list[str]
    token_ids: list[list[int]]


@dataclass
class Encoded:
    """One example, tokenized: input ids (already truncated) and the gold label's index — or, for a
    free-text task, the target's token ids (the first answer, cut to ``max_gen_toks``, then EOS) and
    whether it was cut (``label_index`` is then -1)."""

    input_ids: list[int]
    label_index: int
    target_ids: list[int] | None = None
    target_truncated: bool = False

    @property
    def length(self) -> int:
        """Tokens of the training sequence (input and, for free text, its target): what bucketing sorts by."""
        return len(self.input_ids) + len(self.target_ids or [])


@dataclass
class Batch:
    """Padded tensors of one batch (of one task); ``targets`` only for training batches. ``task``
    names the task, for prompt modules that produce a different prompt per task (Fusion).

    ``input_mask`` marks the positions that hold the *input* — where a training sequence also holds
    the gold label (a causal LM's input + label tokens) it is 0 on the label. A module that reads
    the input (ATTEMPT's attention, Fusion's gate) must read :attr:`input_positions`, never the
    attention mask: otherwise its prompt would depend on the gold label while training and differ
    from the prompt evaluation computes for the same input. ``None``: every attended position is input.

    ``packed`` holds the same rows without padding, indexed on the host at collation, for families that
    can run a batch as one sequence (:mod:`promptvec.backbones.packing`)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    label_index: torch.Tensor
    targets: torch.Tensor | None = None
    task: str | None = None
    input_mask: torch.Tensor | None = None
    packed: PackedRows | None = None

    @property
    def training_targets(self) -> torch.Tensor:
        """The label tokens to predict — only batches collated for training have them."""
        if self.targets is None:
            raise ValueError("this batch has no targets: collate it with train=True to compute a loss")
        return self.targets

    @property
    def input_positions(self) -> torch.Tensor:
        """``[B, L]`` mask of the input tokens (padding and label positions 0)."""
        return self.attention_mask if self.input_mask is None else self.input_mask

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``. To a GPU through pinned memory and without blocking, so the host
        does not wait for the GPU to finish its queued work before the copy (a hidden sync per step)."""
        device = torch.device(device)
        pinned = device.type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.pin_memory().to(device, non_blocking=True) if pinned else t.to(device)

        moved: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                moved[field.name] = move(value)
            elif isinstance(value, PackedRows):
                moved[field.name] = value.to(move)
        return dataclasses.replace(self, **moved)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


class Backbone(ABC):
    """A frozen Hugging Face model that accepts a soft prompt ``[B, R, d]`` before its input. The backbone
    takes the model it is given as its own: frozen, in eval mode, and (a family may) on an attention
    implementation of promptvec's (:mod:`promptvec.backbones.block_attention`)."""

    #: the family's name (``--family``, ``family:`` in configs, recorded in every prompt folder)
    family: ClassVar[str]
    #: the ``transformers`` Auto class that loads such a model (by name: transformers is imported late)
    auto_model_class: ClassVar[str]
    #: PEFT's ``task_type`` for a prompt of this family (written in ``adapter_config.json``)
    peft_task_type: ClassVar[str]
    #: the Hub's ``pipeline_tag`` for a prompt of this family (in its model card; None: left out)
    pipeline_tag: ClassVar[str | None] = None
    #: order in which :func:`~promptvec.backbones.detect_family` asks the families (lowest first);
    #: a family that must be asked for explicitly (``--family``) never recognises a config
    detect_order: ClassVar[int] = 100
    #: whether this family can decode free text (a sentence encoder has no decoder)
    generates_text: ClassVar[bool] = True
    #: whether lm-evaluation-harness can evaluate it through promptvec's ``promptvec`` model (log-
    #: likelihoods of continuations and greedy decoding with a soft prompt: decoder-only models)
    serves_lm_eval: ClassVar[bool] = False

    @classmethod
    def recognises(cls, config: Any) -> bool:
        """Whether a ``transformers`` model config is of this family (asked in ``detect_order``)."""
        return False

    def __init__(self, model: nn.Module, tokenizer, name: str, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        #: a transformers model; ``Any`` because its methods (get_input_embeddings, generate, ...) are
        #: looked up on the model class at run time, which nn.Module's typing cannot describe
        self.model: Any = model
        self.tokenizer = tokenizer
        self.name = name
        #: how inputs are encoded; replaced only in a view (:meth:`with_encoding`), never in place
        self.encoding = EncodingSpec(max_length)
        model.requires_grad_(False)
        model.eval()
        self._label_sets: dict[tuple, LabelSet] = {}

    def with_encoding(self, encoding: EncodingSpec) -> Backbone:
        """This backbone with other encoding settings: itself when they are equal, else a view that
        shares the model, the tokenizer and the caches (label token ids do not depend on them) — the
        backbone a caller lent stays as it was."""
        if encoding == self.encoding:
            return self
        view = copy.copy(self)
        view.encoding = encoding
        return view

    def compiled(self) -> Backbone:
        """A view of this backbone whose model runs under ``torch.compile`` (dynamic shapes: batches differ
        in length). The compiled wrapper delegates attributes to the model, which stays as it was: a
        backbone lent to a run with ``--compile`` is still eager for everyone else."""
        view = copy.copy(self)
        view.model = torch.compile(self.model, dynamic=True)
        return view

    @property
    def max_length(self) -> int:
        """Tokens of prompt + input + label an example may take (inputs are cut to fit)."""
        return self.encoding.max_length

    @property
    def chat_template(self) -> bool:
        """Whether inputs are wrapped in the model's chat template (a user turn)."""
        return self.encoding.chat_template

    # ---- identity -----------------------------------------------------------------------
    @property
    def embedding(self) -> nn.Embedding:
        """The frozen input-embedding table: where origins come from and what prompts live beside."""
        return self.model.get_input_embeddings()

    @property
    def dim(self) -> int:
        """The embedding width d: a prompt of this model is ``[R, d]``."""
        return self.embedding.weight.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (prompts and batches are moved there)."""
        return self.embedding.weight.device

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the input-embedding matrix (fp32): identifies *these* weights, not a name."""
        weight = self.embedding.weight.detach().to("cpu", torch.float32).contiguous()
        return hashlib.sha256(weight.numpy().tobytes()).hexdigest()

    # ---- tokenization (shared by every family) ----------------------------------------
    def label_set(self, task: TaskSpec) -> LabelSet:
        """The token ids of every label's verbalization (cached per task): what rank classification scores."""
        key = (task.task, task.target_delimiter, tuple(task.verbalizations))
        if key not in self._label_sets:
            token_ids = [self.tokenize_label(task, v) for v in task.verbalizations]
            empty = [n for n, ids in zip(task.label_names, token_ids, strict=True) if not ids]
            if empty:
                raise ConfigError(f"task '{task.task}': label verbalization(s) {empty} tokenize to nothing",
                                  "give every label a non-empty verbalization")
            self._label_sets[key] = LabelSet(names=task.label_names, token_ids=token_ids)
        return self._label_sets[key]

    def label_index(self, task: TaskSpec, example: Example) -> int:
        """The position of an example's gold label among the task's labels (a regression value: its bin;
        -1: not a label of the task)."""
        if isinstance(example.label, float):
            return task.label_names.index(task.bin_of(example.label))
        return task.label_names.index(example.label) if example.label in task.label_names else -1

    @abstractmethod
    def tokenize_label(self, task: TaskSpec, verbalization: str) -> list[int]:
        """Token ids the model must produce for this label (or free-text answer), without EOS."""

    def tokenize_input(self, text: str) -> list[int]:
        """Token ids of an input text, in the chat template when the encoding asks for it."""
        if self.chat_template:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ConfigError(f"model '{self.name}' has no chat template", "drop --chat-template")
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def encode(self, task: TaskSpec, examples: list[Example], prompt_length: int) -> list[Encoded]:
        """Tokenize inputs, truncating the *input fields* (never the template's tail or the label)
        so that prompt + input + label fit in ``max_length``. Free-text tasks: prompt + input fit in
        ``max_length`` and the target (at most ``max_gen_toks`` tokens, then EOS) comes on top — the
        same room generation has at evaluation, so training and evaluation see the same inputs."""
        budget = self.input_budget(task, prompt_length)
        out = []
        for ex in examples:
            ids = self.tokenize_input(ex.text or task.render(ex.fields, ex.source))
            if len(ids) > budget:
                ids = self._truncate_fields(task, ex, budget)
            if task.generates:
                target, cut = self.target_ids(task, str(ex.label))
                out.append(Encoded(ids, -1, target, cut))
            else:
                out.append(Encoded(ids, self.label_index(task, ex)))
        return out

    def input_budget(self, task: TaskSpec, prompt_length: int) -> int:
        """Tokens an input of ``task`` may take after a prompt of ``prompt_length`` rows: ``max_length``
        less the prompt and, for a label task, the label's positions (a free-text answer comes on top)."""
        if task.generates:
            if not self.generates_text:
                raise ConfigError(f"task '{task.task}' answers in free text, which a {self.family} model cannot "
                                  "generate", "use a causal LM or a seq2seq model (e.g. --model default)")
            budget = self.max_length - prompt_length
        else:
            longest_label = max(len(ids) for ids in self.label_set(task).token_ids)
            budget = self.max_length - prompt_length - self.label_budget(longest_label)
        if budget < 8:
            raise ConfigError(f"max_length {self.max_length} leaves no room for the input after a prompt of "
                              f"{prompt_length} rows", "raise --max-length or shorten the prompt")
        return budget

    def target_ids(self, task: TaskSpec, answer: str) -> tuple[list[int], bool]:
        """A free-text training target: the answer's tokens cut to ``max_gen_toks``, then EOS (so a tuned
        prompt learns where to stop), and whether it was cut."""
        ids = self.tokenize_label(task, answer)
        limit = task.generation_kwargs.max_gen_toks
        eos = self.tokenizer.eos_token_id
        return ids[:limit] + ([int(eos)] if eos is not None else []), len(ids) > limit

    def training_tokens(self, task: TaskSpec, item: Encoded) -> list[int]:
        """The tokens a training example is scored on: its label's verbalization, or its free-text target."""
        if item.target_ids is not None:
            return item.target_ids
        return self.label_set(task).token_ids[item.label_index]

    def label_budget(self, longest_label: int) -> int:
        """Positions the label takes inside the model's sequence (causal LMs: all of it)."""
        return 0

    def _truncate_fields(self, task: TaskSpec, ex: Example, budget: int) -> list[int]:
        fields = dict(ex.fields)
        for _ in range(8):
            ids = self.tokenize_input(task.render(fields, ex.source))
            excess = len(ids) - budget
            if excess <= 0:
                return ids
            longest = max(fields, key=lambda f: len(str(fields[f])))
            field_ids = self.tokenizer(str(fields[longest]), add_special_tokens=False)["input_ids"]
            keep = max(0, len(field_ids) - excess - 1)
            fields[longest] = self.tokenizer.decode(field_ids[:keep])
        return ids[:budget]

    # ---- the model side -----------------------------------------------------------------
    @abstractmethod
    def collate(self, task: TaskSpec, items: list[Encoded], train: bool) -> Batch:
        """Pad a list of encoded examples into a batch (with training targets if ``train``)."""

    # Every method below takes the prompt as ``[R, d]`` (one prompt for the whole batch), ``[B, R, d]``
    # (one per example) or what :meth:`prepare_prompt` made of an ``[R, d]`` prompt.
    @abstractmethod
    def loss(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """Mean training loss on the label tokens."""

    @abstractmethod
    def label_scores(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor,
                     length_normalize: bool = False) -> torch.Tensor:
        """``[B, C]`` score of every label (log-likelihood or similarity) for rank classification."""

    def label_loss(self, task: TaskSpec, scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """The training loss (:meth:`loss`) of examples whose label scores (:meth:`label_scores`, not
        length-normalised) are ``scores`` ``[N, C]`` and gold label indices ``gold`` ``[N]`` — so a caller
        that needs both a prompt's loss and its rank classification (``init: auto``) runs the model once,
        not twice. Here, where a label's score is its tokens' summed log-likelihood, that is the gold
        tokens' mean negative log-likelihood: what :meth:`loss` averages over a batch's label tokens."""
        lengths = torch.tensor([len(ids) for ids in self.label_set(task).token_ids], device=scores.device)
        return -scores.gather(1, gold[:, None]).sum() / lengths[gold].sum()

    def prepare_prompt(self, prompt: torch.Tensor):
        """A fixed ``[R, d]`` prompt made ready once for every batch of an evaluation. Decoder-only
        models compute its keys/values here; other families take the prompt as it is."""
        return prompt

    def generate(self, batch: Batch, prompt: torch.Tensor, max_new_tokens: int,
                 until: tuple[str, ...] = ()) -> Generated:
        """Greedy decoding; the generated text per example, cut at the first ``until`` string or EOS, and the
        tokens decoded. Families with ``generates_text`` implement it."""
        able = "/".join(name for name, cls in BACKBONES.items() if cls.generates_text)
        raise ConfigError(f"generating text needs a backbone that decodes ({able}), not a {self.family}",
                          f"use --mode rank (label tasks), or a {able} model for free-text tasks")

    def choice_logprobs(self, contexts: list[list[int]], choices: list[list[list[int]]],
                        prompt: Any) -> list[list[tuple[float, bool]]]:
        """For each context and each of its continuations: the continuation's log-likelihood given the
        prompt and the context, and whether greedy decoding gives exactly it (lm-evaluation-harness's
        ``loglikelihood``). Families with ``serves_lm_eval`` implement it."""
        raise ConfigError(f"log-likelihoods of continuations are not defined for a {self.family} model",
                          "use a decoder-only model")

    def input_embeds(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token ids (what a prompt is prepended to; ATTEMPT and Fusion read them)."""
        return self.embedding(input_ids)


@dataclass(frozen=True)
class Generated:
    """What greedy decoding of a batch gave: each row's text (cut at its first stop string or EOS) and the
    tokens it decoded — every row of the batch for every step the batch ran, since a row that has stopped is
    still computed until the whole batch stops. That is the decoding work, which a run's phase timings count
    beside the input tokens."""

    texts: list[str]
    decoded: int


def cut_at_stop(text: str, until: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first of the stop strings, and whether one occurred."""
    cuts = [i for i in (text.find(stop) for stop in until) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def per_example(prompt: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, R, d]`` from a prompt shared by the batch (``[R, d]``, expanded as a view) or per example."""
    return prompt.unsqueeze(0).expand(size, -1, -1) if prompt.dim() == 2 else prompt


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids, mask


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
