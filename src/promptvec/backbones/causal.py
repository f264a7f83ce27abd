"""Decoder-only language models (Llama, GPT-2, Qwen, SmolLM, ...).

Layout of every sequence: ``[prompt (R)] [left padding] [templated input] [label tokens]``.
The prompt sits at the front and padding after it; the attention mask hides the padding and
explicit position ids number the real tokens contiguously, which is equivalent to left-padding
the whole sequence and keeps the label tokens at the end — so only the ``k`` positions that predict
label tokens need logits (``logits_to_keep``), never the whole vocabulary at every position. A training
row is fed without its label's last token, which is predicted but predicts nothing that is scored.

A prompt given as ``[R, d]`` is the same for every example: its keys/values are computed once and
shared by the batch (:mod:`promptvec.backbones.prefix`); ``[B, R, d]`` (a prompt per input, e.g.
ATTEMPT) runs with the batch. Evaluation prepares a fixed prompt once (:meth:`prepare_prompt`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from promptvec.backbones.base import (
    Backbone,
    Batch,
    Encoded,
    Generated,
    cut_at_stop,
    left_pad,
    pad_token_id,
    per_example,
    register_backbone,
)
from promptvec.backbones.packing import BLOCK_ATTENTION, LAYOUT_KWARG, PackedRows, packs_exactly
from promptvec.backbones.prefix import PromptCache, SharedPrompt, cache_kwarg, returned_cache, shares_exactly
from promptvec.encoding import DEFAULT_MAX_LENGTH
from promptvec.modes import module_mode
from promptvec.tasks.spec import TaskSpec


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count the real tokens only (padding is masked and its position unused)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@register_backbone
class CausalLMBackbone(Backbone):
    family = "causal"
    auto_model_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    pipeline_tag = "text-generation"
    detect_order = 1
    serves_lm_eval = True

    def __init__(self, model: Any, tokenizer, name: str, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        super().__init__(model, tokenizer, name, max_length)
        # imported here: it registers with transformers, which a causal model has already loaded
        from promptvec.backbones.block_attention import use_block_attention

        use_block_attention(model)

    @classmethod
    def recognises(cls, config: Any) -> bool:
        """A decoder-only architecture (``…ForCausalLM``, ``…LMHeadModel``), or a config without one whose
        model type transformers loads as a causal LM — except encoder types (BERT, RoBERTa …), which also
        appear in that mapping as "as decoder" variants and are told apart by their token type embeddings."""
        architectures = getattr(config, "architectures", None) or []
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
            return True
        if any(a.endswith(("Model", "ForMaskedLM", "ForSequenceClassification")) for a in architectures):
            return False  # an encoder's architecture names
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(config, "type_vocab_size", 0)

    def tokenize_label(self, task: TaskSpec, verbalization: str) -> list[int]:
        return self.tokenizer(task.target_delimiter + verbalization, add_special_tokens=False)["input_ids"]

    def label_budget(self, longest_label: int) -> int:
        return longest_label

    def collate(self, task: TaskSpec, items: list[Encoded], train: bool) -> Batch:
        """Left-padded rows, and the same rows packed without padding (:mod:`promptvec.backbones.packing`;
        built here, on the host, for whichever path the step takes): a training batch's input + label
        tokens, or an evaluation batch's inputs with every label's continuation (not for free text)."""
        pad = pad_token_id(self.tokenizer)
        label_index = torch.tensor([i.label_index for i in items], dtype=torch.long)
        if not train:
            inputs = [i.input_ids for i in items]
            ids, mask = left_pad(inputs, pad)
            packed = None if task.generates else PackedRows.for_ranking(inputs, self.label_set(task).token_ids)
            return Batch(ids, mask, label_index, task=task.task, packed=packed)
        label_ids = [self.training_tokens(task, i) for i in items]
        rows = [i.input_ids + lab for i, lab in zip(items, label_ids, strict=True)]
        # a row's last token is predicted, never read: nothing after it is scored, so it is not fed at all
        ids, mask = left_pad([row[:-1] for row in rows], pad)
        longest = max(len(lab) for lab in label_ids)
        # targets[:, j] is the token predicted at position j of the last `longest` positions (a row's label
        # follows its input; shorter labels are -100 at the front)
        targets = torch.full((len(items), longest), -100, dtype=torch.long)
        input_mask = mask.clone()  # the label tokens fed (all but the last) end every row: not input
        for row, lab in enumerate(label_ids):
            targets[row, longest - len(lab): longest] = torch.tensor(lab)
            input_mask[row, ids.shape[1] - (len(lab) - 1):] = 0
        packed = PackedRows.for_training(rows, [len(lab) for lab in label_ids])
        return Batch(ids, mask, label_index, targets, task=task.task, input_mask=input_mask, packed=packed)

    @cached_property
    def shares_prompt_exactly(self) -> bool:
        """Whether this model gives the same logits with a shared prompt cache (checked once)."""
        return shares_exactly(self.model, self.name, pad_token_id(self.tokenizer))

    def prepare_prompt(self, prompt: torch.Tensor) -> torch.Tensor | SharedPrompt:
        """A fixed ``[R, d]`` prompt's keys/values, computed once for every batch of an evaluation."""
        if prompt.dim() == 2 and prompt.shape[0] > 0 and self.shares_prompt_exactly:
            return SharedPrompt(self.model, prompt.to(self.device))
        return prompt

    def _run(self, batch: Batch, prompt: torch.Tensor | PromptCache, **kwargs):
        """The model over prompt + batch, and the full attention mask and position ids (prompt rows
        included) that a continuation needs. ``[R, d]`` or prepared prompts (one shared by the batch,
        or one per row: :class:`~promptvec.backbones.prefix.MixedPrompts`) start from their cache."""
        embeds = self.input_embeds(batch.input_ids)
        size = batch.size
        if isinstance(prompt, torch.Tensor) and prompt.dim() == 2:
            prompt = self.prepare_prompt(prompt)
        if isinstance(prompt, PromptCache) and prompt.rows:
            mask = torch.cat([prompt.key_mask(size, batch.attention_mask), batch.attention_mask], dim=1)
            positions = _positions(mask)
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions[:, prompt.rows:],
                             **{cache_kwarg(self.model): prompt.for_batch(size)}, **kwargs)
            return out, mask, positions
        if isinstance(prompt, PromptCache):  # no row has a prompt
            prompt = embeds.new_zeros(0, embeds.shape[-1])
        prompt = per_example(prompt, size)
        full = torch.cat([prompt.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([batch.attention_mask.new_ones(size, prompt.shape[1]), batch.attention_mask], dim=1)
        positions = _positions(mask)
        return self.model(inputs_embeds=full, attention_mask=mask, position_ids=positions, **kwargs), mask, positions

    @cached_property
    def packs_batches(self) -> bool:
        """Whether a batch with a shared prompt runs packed, without padding (checked once)."""
        if not self.shares_prompt_exactly:
            return False
        embedding = self.embedding.weight
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, embedding.shape[0], (2, 6), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, :2] = 0  # rows of 4 and 6 tokens, the last two of each a label (its last one predicted, not fed)
        ids[0, :2] = pad_token_id(self.tokenizer)
        targets = torch.stack([ids[0, -2:], ids[1, -2:]])
        rows = [ids[0, 2:].tolist(), ids[1].tolist()]
        check = Batch(ids[:, :-1], mask[:, :-1], torch.zeros(2, dtype=torch.long), targets,
                      packed=PackedRows.for_training(rows, [2, 2])).to(self.device)
        start = embedding[torch.randint(0, embedding.shape[0], (3,), generator=generator).to(self.device)].detach()

        def loss_of(packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
            prompt = start.float().clone().requires_grad_(True)
            # the first loss may come under no_grad (init auto scores candidates so): the check needs gradients
            with module_mode(self.model, training=False), torch.enable_grad():
                loss = self._packed_loss(check, prompt) if packed else self._padded_loss(check, prompt)
            (grad,) = torch.autograd.grad(loss, prompt)
            return loss.detach(), grad

        return packs_exactly(self.model, self.name, loss_of)

    def runs_packed(self, batch: Batch, prompt: torch.Tensor | PromptCache) -> bool:
        """Whether this batch runs packed: its prompt is shared by every row (``[R, d]`` or prepared; none
        at all also packs), the model packs exactly, every example fits the model's sliding attention window
        (if it has one), and packing saves work on this batch."""
        if batch.packed is None or not (isinstance(prompt, SharedPrompt)
                                        or (isinstance(prompt, torch.Tensor) and prompt.dim() == 2)):
            return False
        rows = prompt.rows if isinstance(prompt, SharedPrompt) else prompt.shape[0]
        config = self.model.config
        return (self.packs_batches and batch.packed.within_window(rows, config)
                and batch.packed.pays(rows, config, self.attends_by_block))

    @property
    def attends_by_block(self) -> bool:
        """Whether the model computes a packed sequence's attention one example at a time
        (:mod:`promptvec.backbones.block_attention`), not over every pair of the sequence."""
        return bool(self.model.config._attn_implementation == BLOCK_ATTENTION)

    def _packed_run(self, packed: PackedRows, prompt: torch.Tensor | SharedPrompt):
        """The model over the packed sequence after a shared prompt, logits at ``packed.keep`` only. A prepared
        prompt (evaluation: computed once for every batch) starts from its cache. An ``[R, d]`` prompt (training:
        a new one every step) runs inline, its rows first in the same sequence: one pass whose matrix products
        have ``R + L`` rows, rather than a separate pass for its keys/values, whose products of only ``R`` rows
        a CPU runs far below its speed."""
        embeds = self.input_embeds(packed.ids)
        implementation = self.model.config._attn_implementation
        if isinstance(prompt, SharedPrompt):
            rows, inline = prompt.rows, False
            extra = {cache_kwarg(self.model): prompt.for_batch(1)}
        else:
            rows, inline, extra = prompt.shape[0], True, {}
            embeds = torch.cat([prompt.to(self.device, embeds.dtype)[None], embeds], dim=1)
        keep = packed.keep + rows if inline else packed.keep
        if self.attends_by_block:  # each example's attention apart: the whole sequence's mask is never needed
            mask, extra = None, {**extra, LAYOUT_KWARG: packed.blocks.after_prompt(rows)}
        else:
            mask = packed.mask(rows, implementation, embeds.dtype, inline)
        return self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=packed.positions(rows, inline),
                          use_cache=False, logits_to_keep=keep, **extra)

    def loss(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor | SharedPrompt) -> torch.Tensor:
        """Mean cross-entropy of the label tokens: packed without padding when the prompt is shared and
        packing saves work on this batch (:mod:`promptvec.backbones.packing`), else over the padded batch."""
        return self._packed_loss(batch, prompt) if self.runs_packed(batch, prompt) else self._padded_loss(batch, prompt)

    def _packed_loss(self, batch: Batch, prompt: torch.Tensor | SharedPrompt) -> torch.Tensor:
        packed = batch.packed
        if packed is None:
            raise ValueError("this batch was not collated with its packed rows")
        out = self._packed_run(packed, prompt)
        return F.cross_entropy(out.logits[0].float()[packed.read], packed.token)

    def _padded_loss(self, batch: Batch, prompt: torch.Tensor | SharedPrompt) -> torch.Tensor:
        # logits only where a label token is predicted: the last k positions (the label's last token is not
        # fed), never the whole vocabulary at every position. Asked for by index, not as the count ``k``: the
        # model then slices its hidden states, and a strided slice that needs gradients makes torch's matmul
        # run the vocabulary projection as a batched product with the weight broadcast over the batch (reading
        # it once per row: 163 ms of a 3.5 s step at batch 16 on SmolLM2, forward and backward, against ≈ 35 ms);
        # an index gathers the positions into a contiguous tensor, projected by one matrix product
        targets = batch.training_targets
        last = torch.arange(-targets.shape[1], 0, device=self.device)
        out, _, _ = self._run(batch, prompt, logits_to_keep=last, use_cache=False)
        logits = out.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def label_scores(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor | PromptCache,
                     length_normalize: bool = False) -> torch.Tensor:
        """Every label's log-likelihood after prompt + input: packed, one pass with each label's continuation
        inside (:mod:`promptvec.backbones.packing`), when the prompt is shared and that saves work; else one
        padded pass, with longer labels continuing from its key/value cache."""
        labels = self.label_set(task).token_ids
        if isinstance(prompt, torch.Tensor) and prompt.dim() == 2:
            prompt = self.prepare_prompt(prompt)
        scores = (self._packed_label_scores(batch, prompt, len(labels)) if self.runs_packed(batch, prompt)
                  else self._padded_label_scores(batch, prompt, labels))
        if length_normalize:
            scores = scores / torch.tensor([len(lab) for lab in labels], device=scores.device)
        return scores

    def _packed_label_scores(self, batch: Batch, prompt: torch.Tensor | PromptCache, n_labels: int) -> torch.Tensor:
        packed = batch.packed
        if packed is None or not isinstance(prompt, (torch.Tensor, SharedPrompt)):
            raise ValueError("packed scoring needs the batch's packed rows and a prompt shared by every row")
        out = self._packed_run(packed, prompt)
        picked = torch.log_softmax(out.logits[0].float(), dim=-1)[packed.read, packed.token]
        return picked.new_zeros(batch.size * n_labels).index_add_(0, packed.pair, picked).view(batch.size, n_labels)

    def _padded_label_scores(self, batch: Batch, prompt: torch.Tensor | PromptCache,
                             labels: list[list[int]]) -> torch.Tensor:
        n_labels, size = len(labels), batch.size
        longest = max(len(lab) for lab in labels)
        out, mask, positions = self._run(batch, prompt, logits_to_keep=1,
                                         use_cache=longest > 1)  # one-token labels: no cache
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        scores = first[:, [lab[0] for lab in labels]]
        if longest > 1:
            cont, target = self._continuation_tensors(labels, batch.input_ids.device)
            rows = torch.arange(size, device=mask.device).repeat_interleave(n_labels)
            picked, _ = self._continue(out, mask, positions, rows, cont.repeat(size, 1), target.repeat(size, 1))
            scores = scores + picked.view(size, n_labels)
        return scores

    @torch.no_grad()
    def choice_logprobs(self, contexts: list[list[int]], choices: list[list[list[int]]],
                        prompt: torch.Tensor | PromptCache) -> list[list[tuple[float, bool]]]:
        """For each context and each of its continuations, the log-likelihood of the continuation given
        the prompt and the context, and whether greedy decoding produces exactly it — the quantity
        lm-evaluation-harness's ``loglikelihood`` asks for. Each context runs once: its last position
        scores every continuation's first token, and longer continuations go on from its key/value cache
        (a multiple-choice question costs one pass over its text, not one per choice)."""
        ids, mask = left_pad(contexts, pad_token_id(self.tokenizer))
        batch = Batch(ids, mask, torch.zeros(len(contexts), dtype=torch.long)).to(self.device)
        longest = max(len(c) for options in choices for c in options)
        out, mask, positions = self._run(batch, prompt, logits_to_keep=1, use_cache=longest > 1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        pairs = [(row, c) for row, options in enumerate(choices) for c in options]
        scores = [float(first[row, c[0]]) for row, c in pairs]
        greedy = [bool(first[row].argmax() == c[0]) for row, c in pairs]
        if longest > 1:
            cont, target = self._continuation_tensors([c for _, c in pairs], batch.input_ids.device)
            rows = torch.tensor([row for row, _ in pairs], device=mask.device)
            picked, hits = self._continue(out, mask, positions, rows, cont, target, greedy=True)
            assert hits is not None  # asked for with greedy=True
            scores = [s + float(p) for s, p in zip(scores, picked, strict=True)]
            greedy = [g and bool(h) for g, h in zip(greedy, hits, strict=True)]
        results, start = [], 0
        for options in choices:
            results.append(list(zip(scores[start: start + len(options)], greedy[start: start + len(options)],
                                    strict=True)))
            start += len(options)
        return results

    def _continuation_tensors(self, sequences: list[list[int]],
                              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """What to feed after the first token of each sequence (all but its last token, padded) and what
        each position must predict (its tokens from the second on; -1 where there is none)."""
        steps = max(len(seq) for seq in sequences) - 1
        cont = torch.full((len(sequences), steps), pad_token_id(self.tokenizer), dtype=torch.long, device=device)
        target = torch.full((len(sequences), steps), -1, dtype=torch.long, device=device)
        for i, seq in enumerate(sequences):
            if len(seq) > 1:
                cont[i, : len(seq) - 1] = torch.tensor(seq[:-1])
                target[i, : len(seq) - 1] = torch.tensor(seq[1:])
        return cont, target

    def _continue(self, out, mask: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, cont: torch.Tensor,
                  target: torch.Tensor, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run continuation tokens ``cont`` (one per pair, each continuing batch row ``rows[i]``) from the key/
        value cache of ``out``; the summed log-probability of each pair's ``target`` tokens and, with
        ``greedy``, whether each target token was the most likely one."""
        steps = cont.shape[1]
        cache = returned_cache(out)
        cache.batch_select_indices(rows)
        cont_mask = torch.cat([mask[rows], mask.new_ones(len(rows), steps)], dim=1)
        cont_pos = positions[rows, -1:] + torch.arange(1, steps + 1, device=mask.device)
        cont_out = self.model(input_ids=cont, attention_mask=cont_mask, position_ids=cont_pos, use_cache=False,
                              **{cache_kwarg(self.model): cache})
        logp = torch.log_softmax(cont_out.logits.float(), dim=-1)
        valid = target >= 0
        picked = (logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid).sum(-1)
        hits = ((logp.argmax(-1) == target) | ~valid).all(-1) if greedy else None
        return picked, hits

    @torch.no_grad()
    def generate(self, batch: Batch, prompt: torch.Tensor | PromptCache, max_new_tokens: int,
                 until: tuple[str, ...] = ()) -> Generated:
        """Greedy decoding of the whole batch, one token per step from the key/value cache (the prompt's
        own keys/values shared when it is fixed). A row is done at EOS or once its text holds a stop
        string; the batch stops when every row is done."""
        out, mask, positions = self._run(batch, prompt, logits_to_keep=1, use_cache=True)
        eos = self.tokenizer.eos_token_id
        cache, last_pos = returned_cache(out), positions[:, -1:]
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        produced = [token]
        done = torch.zeros(batch.size, dtype=torch.bool, device=token.device)
        for _ in range(max_new_tokens):
            if eos is not None:
                done |= token.squeeze(-1) == eos
            if until:
                done |= self._stopped(produced, done, until)
            if bool(done.all()) or len(produced) == max_new_tokens:
                break
            mask = torch.cat([mask, mask.new_ones(batch.size, 1)], dim=1)
            last_pos = last_pos + 1
            step = self.model(input_ids=token, attention_mask=mask, position_ids=last_pos, use_cache=True,
                              **{cache_kwarg(self.model): cache})
            cache = returned_cache(step)
            token = step.logits[:, -1].argmax(-1, keepdim=True)
            produced.append(token)
        texts = [cut_at_stop(self._decode(seq, eos), until)[0] for seq in torch.cat(produced, dim=1).tolist()]
        return Generated(texts, batch.size * len(produced))

    def _decode(self, tokens: list[int], eos: int | None) -> str:
        if eos is not None and eos in tokens:
            tokens = tokens[: tokens.index(eos)]
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _stopped(self, produced: list[torch.Tensor], done: torch.Tensor, until: tuple[str, ...]) -> torch.Tensor:
        """Rows (not yet done) whose text so far holds a stop string."""
        eos = self.tokenizer.eos_token_id
        tokens = torch.cat(produced, dim=1)
        stopped = torch.zeros_like(done)
        for row in (~done).nonzero().flatten().tolist():
            stopped[row] = cut_at_stop(self._decode(tokens[row].tolist(), eos), until)[1]
        return stopped
