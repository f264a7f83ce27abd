"""Task prompt vectors (Belanec et al., 2024): ``τ = θ_tuned − θ_origin``.

A :class:`TaskPromptVector` is an ``[R, d]`` tensor plus the metadata that makes arithmetic safe:
the model fingerprint (hash of the input-embedding matrix), R and d, the task(s), the origin it
was taken from and its provenance (which operations produced it). Combining vectors of different
models, widths or lengths is refused with a clear message; nothing here trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError
from promptvec.io import load_tensors, save_tensors
from promptvec.tensor_checks import check_prompt_tensor
from promptvec.vectors.origin import Origin

VECTOR_KEY = "task_vector"
FORMAT = "promptvec.task_vector.v1"


class VectorMismatchError(CheckpointError):
    """Vectors (or a vector and a prompt/origin) that cannot be combined."""


@dataclass(frozen=True)
class VectorMeta:
    model_fingerprint: str
    rows: int
    dim: int
    model: str = ""
    task: str = ""
    origin: dict[str, Any] | None = None  # Origin.to_dict() of the origin it was taken from
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


class TaskPromptVector:
    """``τ`` with metadata; supports ``+``, ``-``, unary ``-``, scalar ``*`` and ``/``."""

    def __init__(self, tensor: torch.Tensor, meta: VectorMeta) -> None:
        if tensor.dim() != 2 or tuple(tensor.shape) != (meta.rows, meta.dim):
            raise VectorMismatchError(f"a task prompt vector is [{meta.rows}, {meta.dim}], got "
                                      f"{tuple(tensor.shape)}", "re-create the vector")
        if not torch.isfinite(tensor).all():
            raise VectorMismatchError("task prompt vector contains NaN or infinite values", "re-create it")
        self.tensor = tensor.detach().to("cpu", torch.float32)
        self.meta = meta

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_prompts(cls, tuned: torch.Tensor, origin: torch.Tensor, *, model_fingerprint: str, model: str = "",
                     task: str = "", origin_info: Origin | None = None) -> TaskPromptVector:
        """τ = ``tuned`` − ``origin`` (same ``[R, d]``), labelled with the model it belongs to."""
        if tuned.shape != origin.shape:
            raise VectorMismatchError(f"tuned prompt {tuple(tuned.shape)} and origin {tuple(origin.shape)} differ "
                                      "in shape", "take the vector against the origin the prompt was trained from")
        meta = VectorMeta(model_fingerprint, tuned.shape[0], tuned.shape[1], model, task,
                          origin_info.to_dict() if origin_info else None, {"op": "tuned - origin"})
        return cls(tuned.float() - origin.float(), meta)

    @classmethod
    def from_checkpoint(cls, path: str | Path, backbone) -> TaskPromptVector:
        """τ of a promptvec prompt (PEFT folder or run folder), rebuilding its recorded origin."""
        from promptvec.peft_folder import load_prompt

        checkpoint = load_prompt(path, backbone)
        origin_data = checkpoint.metadata.get("origin")
        if not origin_data:
            raise VectorMismatchError(f"{path} does not record the origin it was trained from",
                                      "train it with promptvec (or give the origin explicitly to from_prompts)")
        origin = Origin.from_dict(origin_data)
        return cls.from_prompts(checkpoint.prompt, origin.tensor(backbone), model_fingerprint=backbone.fingerprint,
                                model=backbone.name, task=checkpoint.metadata.get("task", ""), origin_info=origin)

    @property
    def recorded_origin(self) -> Origin:
        """The origin this vector was taken from, as recorded (to apply it back to that origin)."""
        if not self.meta.origin:
            raise VectorMismatchError(f"vector '{self.meta.task or '?'}' does not record the origin it was taken from",
                                      "take it with TaskPromptVector.from_checkpoint from a promptvec prompt")
        return Origin.from_dict(self.meta.origin)

    # ---- compatibility -----------------------------------------------------------------------
    def check_compatible(self, other: TaskPromptVector | torch.Tensor, what: str = "vector") -> None:
        """Refuse to combine with a vector of another model or a tensor of another shape (one message
        naming both)."""
        if isinstance(other, TaskPromptVector):
            if other.meta.model_fingerprint != self.meta.model_fingerprint:
                raise VectorMismatchError(
                    f"cannot combine vectors of different models ('{self.meta.model or '?'}' "
                    f"{self.meta.model_fingerprint[:12]} vs '{other.meta.model or '?'}' "
                    f"{other.meta.model_fingerprint[:12]})", "use vectors trained on the same backbone")
            other_shape: tuple[int, ...] = (other.meta.rows, other.meta.dim)
        else:
            other_shape = tuple(other.shape)
        if other_shape != (self.meta.rows, self.meta.dim):
            raise VectorMismatchError(
                f"cannot combine a [{self.meta.rows}, {self.meta.dim}] vector with a {what} of shape "
                f"{list(other_shape)} (prompt length or model width differs)",
                "use vectors and origins with the same number of rows R and the same model")

    # ---- arithmetic --------------------------------------------------------------------------
    def _derive(self, tensor: torch.Tensor, op: str, inputs: list[TaskPromptVector], task: str) -> TaskPromptVector:
        origins = {json.dumps(v.meta.origin, sort_keys=True) for v in inputs}
        meta = replace(self.meta, task=task, origin=self.meta.origin if len(origins) == 1 else None,
                       provenance={"op": op, "inputs": [v.meta.task or "?" for v in inputs]})
        return TaskPromptVector(tensor, meta)

    def __add__(self, other: TaskPromptVector) -> TaskPromptVector:
        if not isinstance(other, TaskPromptVector):
            return NotImplemented
        self.check_compatible(other)
        return self._derive(self.tensor + other.tensor, "add", [self, other], f"{self.meta.task}+{other.meta.task}")

    def __radd__(self, other: object) -> TaskPromptVector:
        """``0 + τ = τ``: Python's ``sum`` starts from 0, so ``sum([τa, τb])`` is ``τa + τb``."""
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __sub__(self, other: TaskPromptVector) -> TaskPromptVector:
        if not isinstance(other, TaskPromptVector):
            return NotImplemented
        self.check_compatible(other)
        return self._derive(self.tensor - other.tensor, "sub", [self, other], f"{self.meta.task}-{other.meta.task}")

    def __neg__(self) -> TaskPromptVector:
        return self._derive(-self.tensor, "neg", [self], f"-{self.meta.task}")

    def __mul__(self, scale: float) -> TaskPromptVector:
        if not isinstance(scale, int | float):
            return NotImplemented
        return self._derive(self.tensor * float(scale), f"scale {scale:g}", [self], f"{scale:g}*{self.meta.task}")

    __rmul__ = __mul__

    def __truediv__(self, scale: float) -> TaskPromptVector:
        return self * (1.0 / scale)

    @classmethod
    def mean(cls, vectors: list[TaskPromptVector]) -> TaskPromptVector:
        """The element-wise mean of compatible vectors (its provenance lists them)."""
        if not vectors:
            raise VectorMismatchError("mean of no vectors", "give at least one vector")
        for v in vectors[1:]:
            vectors[0].check_compatible(v)
        tensor = torch.stack([v.tensor for v in vectors]).mean(0)
        return vectors[0]._derive(tensor, "mean", vectors, "mean(" + ",".join(v.meta.task for v in vectors) + ")")

    def apply_to(self, origin: torch.Tensor | Origin, scale: float = 1.0, backbone=None) -> torch.Tensor:
        """``θ = θ0' + λ τ`` — on this vector's own origin or any other origin of the same model."""
        if isinstance(origin, Origin):
            if origin.model_fingerprint != self.meta.model_fingerprint:
                raise VectorMismatchError("the origin belongs to another model than the vector",
                                          "sample the origin on the vector's backbone")
            if backbone is None:
                raise VectorMismatchError("applying to an Origin needs the backbone to rebuild it", "pass backbone=")
            origin = origin.tensor(backbone)
        self.check_compatible(origin, "prompt/origin")
        return origin.float() + float(scale) * self.tensor

    def norm(self) -> float:
        """‖τ‖ (Frobenius): how far training moved the prompt from its origin."""
        return float(self.tensor.norm())

    # ---- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the vector and its metadata as one safetensors file."""
        path = Path(path)
        save_tensors(path, {VECTOR_KEY: self.tensor}, {"format": FORMAT, "promptvec": self.meta.to_json()})
        return path

    @classmethod
    def load(cls, path: str | Path, backbone=None) -> TaskPromptVector:
        """Read a vector file written by :meth:`save` (checked against ``backbone`` when given)."""
        tensors, metadata = load_tensors(path)
        if metadata.get("format") != FORMAT or VECTOR_KEY not in tensors:
            raise CheckpointError(f"{path} is not a promptvec task prompt vector file",
                                  "create one with `promptvec vector create`")
        try:
            meta = VectorMeta(**json.loads(metadata["promptvec"]))
        except (KeyError, TypeError, json.JSONDecodeError):
            raise CheckpointError(f"{path}: task vector metadata is damaged", "re-create the vector") from None
        tensor = check_prompt_tensor(tensors[VECTOR_KEY], f"{path}: the vector", rows=meta.rows, dim=meta.dim,
                                     fix="the file is damaged or was not written by promptvec; re-create the vector")
        vector = cls(tensor, meta)
        if backbone is not None and backbone.fingerprint != meta.model_fingerprint:
            raise VectorMismatchError(
                f"{path} was made on model '{meta.model}' ({meta.model_fingerprint[:12]}), not on "
                f"'{backbone.name}' ({backbone.fingerprint[:12]})", "use the backbone the vector was made on")
        return vector

    def __repr__(self) -> str:
        return (f"TaskPromptVector(task={self.meta.task!r}, shape=[{self.meta.rows}, {self.meta.dim}], "
                f"norm={self.norm():.3f}, model={self.meta.model_fingerprint[:12]})")
