"""BLOOM (and BLOOMZ): ``transformer.h`` layers with a fused ``self_attention.query_key_value`` whose output
interleaves the heads, (heads, 3, head_dim) per position, ALiBi attention biases instead of positions, a LayerNorm
on the word embeddings, and embeddings tied to ``lm_head``.

ALiBi has no position limit (the released models were trained on 2,048 tokens, ``seq_length``, and extrapolate
beyond it): ``max_positions`` is ``NO_POSITION_LIMIT``. The feed-forward is fixed at 4 x hidden, with no config
field: a student's ``intermediate_size`` must be that, or it is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from monodistill.errors import MonodistillError
from monodistill.families.decoder import DecoderFamily

NO_POSITION_LIMIT = 1 << 20
"""The input length reported for ALiBi, which has no position embeddings to run out of."""
FFN_RATIO = 4
"""BLOOM's feed-forward width over its hidden size, fixed in the model code."""


class BloomFamily(DecoderFamily):
    model_types = ("bloom",)
    # Sequence classifiers add ``score.*``; token classifiers (GPT2ForTokenClassification, BLOOM's) ``classifier.*``.
    task_head_prefixes = ("score.", "classifier.")
    rotary = False  # learned absolute positions (GPT-2), ALiBi (BLOOM)
    layers_path = "h"
    attention_path = "self_attention"
    projection_names = ("query_key_value",)  # fused, interleaved per head: split_projection
    narrow_refusal = "its fused query-key-value interleaved per head"
    intermediate_field = ""  # no field: the feed-forward is FFN_RATIO x hidden

    def split_projection(self, output: torch.Tensor, model_config: Any) -> list[torch.Tensor]:
        heads = int(model_config.num_attention_heads)
        per_head = output.unflatten(-1, (heads, 3, -1))  # (B, T, heads, 3, d), as BloomAttention reads it
        return [per_head[..., part, :].flatten(-2) for part in range(3)]  # q, k, v: (B, T, heads * d) each

    def max_positions(self, model_config: Any) -> int:
        return NO_POSITION_LIMIT

    def intermediate_size(self, model_config: Any) -> int:
        return FFN_RATIO * int(model_config.hidden_size)

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        if shape.intermediate_size != FFN_RATIO * shape.hidden_size:
            raise MonodistillError(
                f"student.intermediate_size {shape.intermediate_size} cannot apply to a BLOOM student: its "
                f"feed-forward is {FFN_RATIO} x hidden_size ({FFN_RATIO * shape.hidden_size}), with no config field"
            )
        return super().student_config(teacher_config, shape, vocab_size, keep_embedding)


FAMILY = BloomFamily()
