"""Task-stage distillation (TinyBERT's second stage, BiStil's task stage) while fine-tuning.

With ``evaluate.distil_from``, one evaluated model is fine-tuned plainly first; every other model is
then fine-tuned on the same task and seed with

    loss = (1 - distil_alpha) * task loss + distil_alpha * T^2 * KL(teacher_T || student_T)

over the classification logits (sequence tasks) or the token logits at labelled positions (token tasks).

The fine-tuned teacher's logits are computed once per task and seed, over the training split, and
handed to every student, rather than per batch beside each student: one teacher pass instead of one
per student and epoch, and the teacher is off the device while students train. The teacher is in
eval mode, so the two give the same numbers.

Teacher and student read the same examples, each through its own tokenizer (a trimmed vocabulary
splits words differently): a sequence task's logits are per example, and a token task's are read per
word, at each word's first piece (as ``encode.align_labels`` labels it), and put on the student's
first piece of the same word. A word the teacher has no piece for (cut by its truncation, or
normalised away by its tokenizer) has no teacher distribution: it keeps its task loss, has no KL
term, and is counted (``words_without_teacher``).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from monodistill.config import EvaluateConfig
from monodistill.errors import MonodistillError
from monodistill.losses import kl_divergence

TEACHER_INDEX = "teacher_index"
"""Training-split column: the example's row in the teacher's logits (the collator turns it into them)."""
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_source(config: EvaluateConfig, labels: list[str]) -> int | None:
    """The index in ``config.models`` of the model named by ``evaluate.distil_from`` (None when unset).

    It may be named as given in ``models`` or by its label (``labels.evaluation_labels``); a reference wins.

    Raises:
        MonodistillError: with a single model, or a name that is no evaluated model.
    """
    name = config.distil_from
    if name is None:
        return None
    if len(config.models) < 2:
        raise MonodistillError(
            f"evaluate.distil_from={name} needs two or more models: the one distilled from and the ones it teaches"
        )
    for candidates in (config.models, labels):
        if name in candidates:
            return candidates.index(name)
    known = ", ".join(f"{label} ({model})" for label, model in zip(labels, config.models, strict=True))
    raise MonodistillError(f"evaluate.distil_from={name} is not an evaluated model; the models are {known}")


@dataclass
class TeacherLogits:
    """A fine-tuned model's logits over a task's (capped) training split, in its order; C labels."""

    logits: list[np.ndarray]
    """One per example: (C,) for a sequence task, (W, C) per word for a token task of W words."""
    seen: list[np.ndarray] | None
    """Token tasks: (W,) whether the model had a piece of each word (False: no logits for it)."""
    seconds: float
    """Time of the pass, in seconds."""


def model_columns(split: datasets.Dataset, model: Any, keep: tuple[str, ...] = ()) -> datasets.Dataset:
    """``split`` without the columns ``model.forward`` does not take (a DistilBERT has no ``token_type_ids``),
    as the Trainer drops them; ``keep`` names others to leave in."""
    accepted = set(inspect.signature(model.forward).parameters) | set(keep)
    return split.remove_columns([name for name in split.column_names if name not in accepted])


def predict_teacher(
    model: Any,
    split: datasets.Dataset,
    collator: Any,
    config: EvaluateConfig,
    word_ids: list[list[int | None]] | None,
    num_words: list[int] | None,
) -> TeacherLogits:
    """The frozen, fine-tuned ``model``'s logits over ``split`` (model inputs only), under evaluate.mixed_precision.

    Token tasks (``word_ids`` and ``num_words`` given) keep each word's logits at its first piece, read
    past the padding the collator put before the pieces when its tokenizer pads on the left.
    """
    start = time.perf_counter()
    device = next(model.parameters()).device
    dtype = AUTOCAST_DTYPES.get(config.mixed_precision)
    loader = DataLoader(split, batch_size=config.eval_batch_size, collate_fn=collator)  # in order, no shuffling
    logits: list[np.ndarray] = []
    for batch in loader:
        inputs = {name: value.to(device) for name, value in batch.items() if name != "labels"}
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits.extend(model(**inputs).logits.float().cpu().numpy())  # B x (C,) or B x (T, C)
    seconds = time.perf_counter() - start  # .cpu() waited for the device
    if word_ids is None or num_words is None:
        return TeacherLogits(logits, None, seconds)
    rows, seen = [], []
    left = _pads_left(collator)
    for piece_logits, pieces, words in zip(logits, word_ids, num_words, strict=True):
        row = np.zeros((words, piece_logits.shape[-1]), dtype=np.float32)  # (W, C)
        have = np.zeros(words, dtype=bool)
        padding = len(piece_logits) - len(pieces) if left else 0  # the batch's longest example has none
        for position, word in enumerate(pieces):
            if word is not None and not have[word]:
                row[word], have[word] = piece_logits[padding + position], True
        rows.append(row)
        seen.append(have)
    return TeacherLogits(rows, seen, seconds)


@dataclass
class DistilTargets:
    """The teacher's logits laid on one student's training inputs."""

    logits: list[np.ndarray]
    """Per example: (C,), or (T, C) on the student's T pieces (zeros where ``mask`` is False)."""
    mask: list[np.ndarray] | None
    """Token tasks: (T,) the pieces with a teacher distribution: first pieces of words the teacher saw."""
    words_without_teacher: int
    """Training words the student labels that the teacher had no piece for (no KL term there)."""


def align_targets(teacher: TeacherLogits, word_ids: list[list[int | None]] | None) -> DistilTargets:
    """The teacher's logits on the student's pieces: per example, or per word at the word's first student piece."""
    if teacher.seen is None or word_ids is None:
        return DistilTargets(teacher.logits, None, 0)
    logits, masks, missing = [], [], 0
    for row, seen, pieces in zip(teacher.logits, teacher.seen, word_ids, strict=True):
        target = np.zeros((len(pieces), row.shape[-1]), dtype=np.float32)  # (T, C)
        mask = np.zeros(len(pieces), dtype=bool)
        labelled: set[int] = set()
        for position, word in enumerate(pieces):
            if word is None or word in labelled:
                continue
            labelled.add(word)  # the first piece, where align_labels puts the word's label
            if seen[word]:
                target[position], mask[position] = row[word], True
            else:
                missing += 1
        logits.append(target)
        masks.append(mask)
    return DistilTargets(logits, masks, missing)


class TeacherCollator:
    """Wraps a collator: batches that carry ``TEACHER_INDEX`` also get ``teacher_logits`` (B, C) or (B, T, C)
    and, for token tasks, ``teacher_mask`` (B, T), padded as the labels are."""

    def __init__(self, collator: Any, targets: DistilTargets) -> None:
        self.collator = collator
        self.targets = targets

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if TEACHER_INDEX not in features[0]:  # the test split
            return self.collator(features)
        rows = [int(feature[TEACHER_INDEX]) for feature in features]
        batch = self.collator([{k: v for k, v in feature.items() if k != TEACHER_INDEX} for feature in features])
        logits = [self.targets.logits[row] for row in rows]
        if self.targets.mask is None:
            batch["teacher_logits"] = torch.from_numpy(np.stack(logits))  # (B, C)
            return batch
        length = batch["labels"].shape[1]
        padded = torch.zeros(len(rows), length, logits[0].shape[-1])  # (B, T, C)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)  # (B, T)
        left = _pads_left(self.collator)
        for index, (row, values) in enumerate(zip(rows, logits, strict=True)):
            pieces = slice(length - len(values), length) if left else slice(0, len(values))
            padded[index, pieces] = torch.from_numpy(values)
            mask[index, pieces] = torch.from_numpy(self.targets.mask[row])
        batch["teacher_logits"], batch["teacher_mask"] = padded, mask
        return batch


def _pads_left(collator: Any) -> bool:
    """Whether ``collator`` pads before the pieces: its tokenizer's ``padding_side`` (transformers' collators)."""
    return getattr(getattr(collator, "tokenizer", None), "padding_side", "right") == "left"


def task_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    teacher_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, a mean over examples or over labelled pieces with a teacher distribution.

    Args:
        student_logits: (B, C), or (B, T, C) for token tasks.
        teacher_logits: the same shape.
        labels: (B,) or (B, T); -100 marks pieces with no label (no term there).
        temperature: Softmax temperature T > 0.
        teacher_mask: (B, T) token tasks: pieces that have a teacher distribution.

    Returns:
        A scalar (0 when no piece has a term).
    """
    keep = labels.ne(-100)  # (B,) or (B, T)
    if teacher_mask is not None:
        keep &= teacher_mask
    student, teacher = student_logits[keep], teacher_logits[keep]  # (N, C)
    if student.shape[0] == 0:
        return student_logits.sum() * 0.0  # keeps the graph and the device
    return kl_divergence(student, teacher, temperature)


class DistillingTrainer(Trainer):
    """A Trainer whose training loss adds the KL to a teacher's task logits (``teacher_logits`` in the batch).

    The task loss is the Trainer's own, and the KL term a mean over this micro-batch as that loss is
    (the task heads' cross-entropy ignores ``num_items_in_batch``), so the Trainer scales both alike for
    gradient accumulation and ``distil_alpha=0`` fine-tunes exactly as plain fine-tuning does. Batches
    without teacher logits (evaluation, prediction) get the task loss alone.
    """

    def __init__(self, *args: Any, alpha: float, temperature: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.temperature = temperature
        self._parts: dict[str, list[torch.Tensor]] = {"task_loss": [], "distil_loss": []}  # read when logged

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """``(1 - alpha) * task loss + alpha * task_distillation_loss``; the task loss alone without teacher logits."""
        teacher_logits = inputs.pop("teacher_logits", None)
        teacher_mask = inputs.pop("teacher_mask", None)
        labels = inputs.get("labels")
        task_loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        loss = task_loss
        if teacher_logits is not None and labels is not None:
            distil = task_distillation_loss(outputs.logits, teacher_logits, labels, self.temperature, teacher_mask)
            loss = (1 - self.alpha) * task_loss + self.alpha * distil
            self._parts["task_loss"].append(task_loss.detach())
            self._parts["distil_loss"].append(distil.detach())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds the unweighted task and KL parts, each a mean since the last log, to the training loss."""
        if "loss" in logs and self._parts["task_loss"]:
            for name, values in self._parts.items():
                logs[name] = float(torch.stack(values).mean())
                values.clear()
        super().log(logs, *args, **kwargs)
