"""Distillation losses: small pure functions over logits gathered at masked positions.

N is the number of masked positions in the batch, V the (student) vocabulary, H a hidden size.
Every part is returned by name so that all of them are logged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monodistill.config import LossConfig


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0. The T^2 factor keeps gradient magnitudes comparable
            across temperatures (Hinton et al., 2015).

    Returns:
        A scalar.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student on the true tokens.

    Args:
        student_logits: (N, V).
        labels: (N,) true token ids.
    """
    return F.cross_entropy(student_logits.float(), labels)


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of hidden states, averaged over positions (DistilBERT's alignment term).

    Args:
        student_hidden: (M, H).
        teacher_hidden: (M, H).
    """
    return 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1).mean()


def distillation_loss(
    config: LossConfig,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """alpha_kl * T^2 * KL + alpha_mlm * CE (+ alpha_cosine * (1 - cos)), with every part.

    Args:
        config: Weights and temperature.
        student_logits: (N, V) at masked positions.
        teacher_logits: (N, V) at the same positions.
        labels: (N,) true token ids at those positions.
        student_hidden: (M, H) last hidden states, needed when ``alpha_cosine > 0``.
        teacher_hidden: (M, H) the teacher's, at the same positions.

    Returns:
        ``{"loss", "kl", "mlm"}`` plus ``"cosine"`` when that term is on; parts are unweighted.
    """
    parts = {
        "kl": kl_divergence(student_logits, teacher_logits, config.temperature),
        "mlm": masked_lm_loss(student_logits, labels),
    }
    loss = config.alpha_kl * parts["kl"] + config.alpha_mlm * parts["mlm"]
    if config.alpha_cosine > 0:
        if student_hidden is None or teacher_hidden is None:
            raise ValueError("alpha_cosine > 0 needs student_hidden and teacher_hidden")
        parts["cosine"] = hidden_cosine_loss(student_hidden, teacher_hidden)
        loss = loss + config.alpha_cosine * parts["cosine"]
    return {"loss": loss, **parts}
