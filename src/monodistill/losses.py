"""Distillation losses: small pure functions over logits gathered at masked positions.

N is the number of masked positions in the batch, V the (student) vocabulary, H a hidden size.
Every part is returned by name so that all of them are logged.

A part is a mean over positions. Given the counts of the whole optimizer step (``step_targets``,
``step_positions``), each part is instead this micro-batch's sum divided by that count, so that the
parts of every micro-batch and rank add up to the step's mean over all of its tokens: accumulation
and data parallelism then weight tokens, not micro-batches (transformers fixed the same error in
its Trainer 4.46 with ``num_items_in_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from monodistill.config import LossConfig

LAST_LAYER = -1
"""A hidden-state layer index meaning the model's last layer, whatever its depth."""


@dataclass(frozen=True)
class Needs:
    """What a student's loss reads besides both models' logits at the masked positions.

    Layers are numbered as transformers' ``hidden_states`` (0: the embeddings' output; ``LAST_LAYER``:
    the last layer). The teacher computes the union of what the students of a run need, and no more.
    """

    teacher_hidden: frozenset[int] = frozenset()
    """Teacher layers whose (B, T, H) hidden states the loss reads."""
    student_hidden: frozenset[int] = frozenset()
    """Student layers whose hidden states the loss reads."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.teacher_hidden | other.teacher_hidden, self.student_hidden | other.student_hidden)


def loss_needs(config: LossConfig) -> Needs:
    """What ``distillation_loss`` reads under ``config``: last hidden states for the cosine term."""
    if config.alpha_cosine > 0:
        return Needs(frozenset({LAST_LAYER}), frozenset({LAST_LAYER}))
    return Needs()


def _reduce(values: torch.Tensor, total: float | None) -> torch.Tensor:
    """(M,) per-position values -> their mean, or their sum over ``total`` (the whole step's count)."""
    return values.mean() if total is None else values.sum() / total


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, total: float | None = None
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0. The T^2 factor keeps gradient magnitudes comparable
            across temperatures (Hinton et al., 2015).
        total: Divide the sum over positions by this count instead of N (see the module docstring).

    Returns:
        A scalar.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    # Reduced inside kl_div: no (N, V) intermediate beyond the one it builds anyway.
    if total is None:
        kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    else:
        kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum") / total
    return kl * temperature**2


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """Cross-entropy of the student on the true tokens.

    Args:
        student_logits: (N, V).
        labels: (N,) true token ids.
        total: Divide the sum over positions by this count instead of N.
    """
    if total is None:
        return F.cross_entropy(student_logits.float(), labels)
    return F.cross_entropy(student_logits.float(), labels, reduction="sum") / total


def hidden_cosine_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """1 - cosine similarity of hidden states, averaged over positions (DistilBERT's alignment term).

    Args:
        student_hidden: (M, H).
        teacher_hidden: (M, H).
        total: Divide the sum over positions by this count instead of M.
    """
    return _reduce(1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1), total)


def distillation_loss(
    config: LossConfig,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    step_targets: float | None = None,
    step_positions: float | None = None,
) -> dict[str, torch.Tensor]:
    """alpha_kl * T^2 * KL + alpha_mlm * CE (+ alpha_cosine * (1 - cos)), with every part.

    Args:
        config: Weights and temperature.
        student_logits: (N, V) at masked positions.
        teacher_logits: (N, V) at the same positions.
        labels: (N,) true token ids at those positions.
        student_hidden: (M, H) last hidden states at every position, needed when ``alpha_cosine > 0``.
        teacher_hidden: (M, H) the teacher's, at the same positions.
        step_targets: Masked positions in the whole optimizer step (KL and CE are sums over this).
        step_positions: Positions in the whole optimizer step (the cosine term is a sum over this).

    Returns:
        ``{"loss", "kl", "mlm"}`` plus ``"cosine"`` when that term is on; parts are unweighted.
    """
    parts = {
        "kl": kl_divergence(student_logits, teacher_logits, config.temperature, step_targets),
        "mlm": masked_lm_loss(student_logits, labels, step_targets),
    }
    loss = config.alpha_kl * parts["kl"] + config.alpha_mlm * parts["mlm"]
    if config.alpha_cosine > 0:
        if student_hidden is None or teacher_hidden is None:
            raise ValueError("alpha_cosine > 0 needs student_hidden and teacher_hidden")
        parts["cosine"] = hidden_cosine_loss(student_hidden, teacher_hidden, step_positions)
        loss = loss + config.alpha_cosine * parts["cosine"]
    return {"loss": loss, **parts}
