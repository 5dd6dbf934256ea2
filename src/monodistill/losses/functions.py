"""The distillation losses as small pure functions of tensors.

N is the number of masked positions in a batch of B blocks of T tokens, V the (student) vocabulary,
H a hidden size, R a number of heads. Each function returns the mean (``reduction="mean"``: over
positions, or over blocks for the relation, hidden and attention terms, each a mean within its
block) or the sum of the same per-position or per-block values (``"sum"``), which a loss term
divides by the count of its whole optimizer step (``losses.terms``).

Terms, with the work they come from:
- ``kl_divergence``: KL(teacher_T || student_T) * T^2 at masked positions (the paper; Hinton et al.).
- ``logit_mse``: mean squared error of the logits at masked positions (Kim et al. 2021; Gurgurov et al. 2025).
- ``masked_lm_loss``: cross-entropy on the true tokens.
- ``hidden_cosine_loss``: 1 - cosine of the last hidden states (DistilBERT).
- ``relation_loss``: MiniLMv2's Q-Q, K-K, V-V self-attention relations of one layer (TiME).
- ``hidden_mse`` and ``attention_mse``: TinyBERT's (and BiStil's) per-layer hidden-state and attention terms.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum"]
"""The mean of a term's per-position (or per-block) values, or their sum."""


def _reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """(M,) per-position or per-block values -> their mean or their sum."""
    return values.mean() if reduction == "mean" else values.sum()


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged (or summed) over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0. The T^2 factor keeps gradient magnitudes comparable
            across temperatures (Hinton et al., 2015).
        reduction: ``mean`` over the N positions, or ``sum``.

    Returns:
        A scalar.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    # Reduced inside kl_div: no (N, V) intermediate beyond the one it builds anyway.
    kl = F.kl_div(
        student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean" if reduction == "mean" else "sum"
    )
    return kl * temperature**2


def reverse_kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """KL(student_T || teacher_T) * T^2, averaged (or summed) over positions: the mode-seeking divergence of
    MiniLLM (Gu et al. 2024), which keeps a small student from spreading mass where the teacher has little.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0.
        reduction: ``mean`` over the N positions, or ``sum``.
    """
    return kl_divergence(teacher_logits, student_logits, temperature, reduction)


def jensen_shannon_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """JSD(teacher_T, student_T) * T^2 = (KL(teacher_T || M) + KL(student_T || M)) / 2 * T^2 with M their mean, averaged
    (or summed) over positions: GKD's generalised JSD at beta = 0.5 (Agarwal et al. 2024), bounded by ln 2 * T^2.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0.
        reduction: ``mean`` over the N positions, or ``sum``.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    mixture = torch.logaddexp(student_log_probs, teacher_log_probs) - math.log(2)  # (N, V) log M, with its gradient
    per_position = 0.5 * (
        F.kl_div(mixture, teacher_log_probs, log_target=True, reduction="none").sum(-1)
        + F.kl_div(mixture, student_log_probs, log_target=True, reduction="none").sum(-1)
    )
    return _reduce(per_position, reduction) * temperature**2


def logit_mse(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Mean squared error of the logits, averaged over the vocabulary, then averaged (or summed) over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V).
        reduction: ``mean`` over the N positions, or ``sum``.
    """
    per_position = (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)  # (N,)
    return _reduce(per_position, reduction)


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Cross-entropy of the student on the true tokens.

    Args:
        student_logits: (N, V).
        labels: (N,) true token ids.
        reduction: ``mean`` over the N positions, or ``sum``.
    """
    return F.cross_entropy(student_logits.float(), labels, reduction=reduction)


def hidden_cosine_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """1 - cosine similarity of hidden states, averaged (or summed) over positions (DistilBERT's alignment term).

    Args:
        student_hidden: (M, H).
        teacher_hidden: (M, H).
        reduction: ``mean`` over the M positions, or ``sum``.
    """
    return _reduce(1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1), reduction)


def _split_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H) -> (B, R, T, H / R)."""
    batch, length, width = states.shape
    return states.float().view(batch, length, heads, width // heads).transpose(1, 2)


def relation_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], heads: int, reduction: Reduction = "mean"
) -> torch.Tensor:
    """MiniLMv2's self-attention relation loss: KL(teacher || student) of the Q-Q, K-K and V-V relations.

    For each of Q, K and V, (B, T, H) is split into ``heads`` relation heads of H / R dimensions and
    the relation is softmax(X X^T / sqrt(H / R)) over the block's positions, (B, R, T, T). The KL is
    taken per row, averaged over the rows of a block and over the three relations. Widths and head
    counts of the two models may differ: only R must divide both widths.

    Args:
        student: [q, k, v] of the student's layer, (B, T, H_s) each.
        teacher: [q, k, v] of the teacher's layer, (B, T, H_t) each.
        heads: R.
        reduction: ``mean`` over the B blocks, or ``sum``.

    Returns:
        A scalar.
    """
    per_block = torch.zeros(student[0].shape[0], device=student[0].device)
    for student_states, teacher_states in zip(student, teacher, strict=True):
        s, t = _split_heads(student_states, heads), _split_heads(teacher_states, heads)  # (B, R, T, d)
        student_log = F.log_softmax(s @ s.transpose(-1, -2) / s.shape[-1] ** 0.5, dim=-1)  # (B, R, T, T)
        teacher_log = F.log_softmax(t @ t.transpose(-1, -2) / t.shape[-1] ** 0.5, dim=-1)
        kl = F.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)  # (B, R, T)
        per_block = per_block + kl.mean(dim=(1, 2)) / len(student)
    return _reduce(per_block, reduction)


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) per head, as a softmax-attention layer computes it: (B, T, H) -> (B, R, T, T)."""
    q, k = _split_heads(query, heads), _split_heads(key, heads)
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)


def attention_mse(
    student: list[torch.Tensor], teacher: list[torch.Tensor], heads: int, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Mean squared error of the attention probabilities of two layers with the same number of heads.

    Args:
        student: [q, k, ...] of the student's layer, (B, T, H_s).
        teacher: [q, k, ...] of the teacher's layer, (B, T, H_t).
        heads: R, the heads of both.
        reduction: ``mean`` over the B blocks (of the mean within each), or ``sum``.
    """
    difference = attention_probabilities(student[0], student[1], heads) - attention_probabilities(
        teacher[0], teacher[1], heads
    )
    return _reduce(difference.pow(2).mean(dim=(1, 2, 3)), reduction)


def hidden_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Mean squared error of (B, T, H) hidden states of equal width, each normalised first, averaged within each block.

    Every state is brought to zero mean and unit variance over H (a layer norm without affine
    parameters), in every family alike. A pre-LayerNorm model (ModernBERT) passes its raw residual
    stream between layers, whose norm grows with depth, and norms only the last: unnormalised, the
    largest middle layers' errors would make up nearly all of the mean over layers. The term is thus
    blind to each state's scale and offset.

    Args:
        student_hidden: (B, T, H), the student's projected to the teacher's width.
        teacher_hidden: (B, T, H).
        reduction: ``mean`` over the B blocks (of the mean within each), or ``sum``.
    """
    student, teacher = (F.layer_norm(states.float(), states.shape[-1:]) for states in (student_hidden, teacher_hidden))
    return _reduce((student - teacher).pow(2).mean(dim=(1, 2)), reduction)


def default_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's map: the embeddings to the embeddings, student layer m to teacher layer m * L_t / L_s.

    A map that is not an exact multiple takes the nearest teacher layer, a tie going to the even one
    (Python's ``round``), so it is symmetric end to end: 4 from 6 is 0, 2, 3, 4, 6.
    """
    return [(layer, round(layer * teacher_layers / student_layers)) for layer in range(student_layers + 1)]
