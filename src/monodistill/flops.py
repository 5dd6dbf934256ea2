"""Counted model FLOPs of one distillation step, for throughput and MFU figures.

A multiply-add counts as 2 FLOPs, as in ``torch.utils.flop_counter.FlopCounterMode``. Only matrix
products count: embedding lookups, norms, activations, softmax and the losses count 0. With hidden
size H, intermediate size I, sequence length T and L layers, one encoder layer costs per token

    8 H^2    Q, K, V and output projections (4 matmuls of H x H)
    4 H I    feed-forward (H -> I -> H)
    4 T H    attention scores (Q K^T) and the weighted sum of values (P V)

and a masked-LM head (transform H -> H, projection onto V vocabulary rows) costs per scored position

    2 H^2 + 2 H V.

One distillation step over B blocks of T tokens, with N masked positions, is

    teacher  1 x [L_t B T (8 H_t^2 + 4 H_t I_t + 4 T H_t) + N (2 H_t^2 + 2 H_t V_t)]
    student  3 x [L_s B T (8 H_s^2 + 4 H_s I_s + 4 T H_s) + N (2 H_s^2 + 2 H_s V_s)]

The teacher only runs forward; the student's backward costs twice its forward (gradients of inputs
and of weights). These are model FLOPs: attention kernels that recompute the scores in backward
(FlashAttention) do more work than this, which MFU does not credit. The "paper-style" loop applies
both heads at every position, which is the same formula with N = B T. For DeBERTa-v2 the
relative-position terms of disentangled attention are not counted, so its figure is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a transformer encoder that set its FLOPs (the vocabulary is passed separately)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """Read a transformers config: BERT, RoBERTa, XLM-R and DeBERTa-v2 names, or DistilBERT's."""
        if hasattr(config, "n_layers"):  # DistilBERT
            return cls(config.n_layers, config.dim, config.hidden_dim)
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size)


def encoder_forward_flops(shape: ModelShape, batch_size: int, seq_length: int) -> int:
    """Forward FLOPs of the encoder layers over ``batch_size`` blocks of ``seq_length`` tokens."""
    hidden, intermediate = shape.hidden_size, shape.intermediate_size
    per_token = 8 * hidden**2 + 4 * hidden * intermediate + 4 * seq_length * hidden
    return shape.num_layers * batch_size * seq_length * per_token


def head_forward_flops(hidden_size: int, vocab_size: int, positions: int) -> int:
    """Forward FLOPs of a masked-LM head (transform and projection) at ``positions`` positions."""
    return positions * (2 * hidden_size**2 + 2 * hidden_size * vocab_size)


def masked_lm_forward_flops(
    shape: ModelShape, vocab_size: int, batch_size: int, seq_length: int, positions: int
) -> int:
    """Forward FLOPs of a masked LM: the encoder over every token, the head at ``positions`` positions."""
    return encoder_forward_flops(shape, batch_size, seq_length) + head_forward_flops(
        shape.hidden_size, vocab_size, positions
    )


def distillation_step_flops(
    teacher: ModelShape,
    student: ModelShape,
    batch_size: int,
    seq_length: int,
    masked_positions: int,
    teacher_vocab: int,
    student_vocab: int,
) -> int:
    """Model FLOPs of one monodistill step: heads at the masked positions only.

    Args:
        teacher: The teacher's shape; it runs forward only.
        student: The student's shape; it runs forward and backward (3x forward).
        batch_size: Blocks in the batch (B).
        seq_length: Tokens per block (T).
        masked_positions: Positions both heads score (N, about 15% of B T).
        teacher_vocab: Rows the teacher's head projects onto: the student's vocabulary when the
            teacher head is restricted to a trimmed vocabulary, else the teacher's.
        student_vocab: The student's vocabulary size.

    Returns:
        FLOPs, counting a multiply-add as 2.
    """
    teacher_forward = masked_lm_forward_flops(teacher, teacher_vocab, batch_size, seq_length, masked_positions)
    student_forward = masked_lm_forward_flops(student, student_vocab, batch_size, seq_length, masked_positions)
    return teacher_forward + 3 * student_forward


def paper_style_step_flops(
    teacher: ModelShape,
    student: ModelShape,
    batch_size: int,
    seq_length: int,
    teacher_vocab: int,
    student_vocab: int,
) -> int:
    """Model FLOPs of one step that applies both heads at every position (``model(...).logits``)."""
    every_position = batch_size * seq_length
    return distillation_step_flops(
        teacher, student, batch_size, seq_length, every_position, teacher_vocab, student_vocab
    )
