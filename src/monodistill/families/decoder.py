"""What every decoder (causal LM) adapter shares, in Llama's layout, which most decoders copy.

A ``*ForCausalLM`` model is a base model (``model``: ``layers`` of ``self_attn.{q,k,v}_proj``, a final norm)
and an ``lm_head`` Linear, tied to the word embeddings or not. The LM head is ``MaskedLMHead`` with the identity
as its transform: the base model's output has already passed its final norm, as the model's own forward feeds
it to ``lm_head``. Attention probabilities are not softmax(Q K^T / sqrt(d)) of the projections alone (rotary
positions, ALiBi, causal masks, sliding windows), so no loss recomputes them; and no decoder layer can be
narrowed by the BERT-layout reduction (``DecoderFamily.narrow_refusal`` says why, per family).

A student of a decoder keeps the teacher's config at the student's shape: its grouped-query attention (as many
query heads per key-value head as the teacher: ``key_value_heads``), ``head_dim = hidden / heads`` where the
config has the field, its pattern of sliding-window and full-attention layers over the student's depth
(``student_layer_types``), and its embeddings tied or not as the teacher's are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from monodistill.errors import MonodistillError
from monodistill.families.base import Family, MaskedLMHead, sliced_linear

CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")
"""How the architectures of a checkpoint with an LM head end (GPT-2's class is ``GPT2LMHeadModel``)."""
FULL_ATTENTION = "full_attention"
"""The ``layer_types`` entry of a layer that attends to the whole context (the others: a sliding window)."""


def key_value_heads(teacher_config: Any, num_heads: int) -> int:
    """The student's key-value heads: as many query heads share one as in the teacher (grouped-query attention).

    Raises:
        MonodistillError: where ``num_heads`` is not a multiple of the teacher's query heads per key-value head.
    """
    teacher_heads = int(teacher_config.num_attention_heads)
    teacher_groups = int(getattr(teacher_config, "num_key_value_heads", None) or teacher_heads)
    per_group = teacher_heads // teacher_groups
    if num_heads % per_group:
        raise MonodistillError(
            f"student.num_heads {num_heads} is not a multiple of {per_group}, the teacher's query heads per key-value "
            f"head ({teacher_heads} heads, {teacher_groups} key-value heads), which a student keeps"
        )
    return num_heads // per_group


def check_rotary_heads(shape: Any) -> None:
    """Refuse a rotary student whose heads (hidden / heads) have an odd width: rotary positions pair a head's
    dimensions."""
    head_dim = shape.hidden_size // shape.num_heads
    if head_dim % 2:
        raise MonodistillError(
            f"student.hidden_size {shape.hidden_size} / student.num_heads {shape.num_heads} gives heads of "
            f"{head_dim} dimensions; rotary positions pair a head's dimensions, so it must be even"
        )


def student_layer_types(teacher_types: list[str], num_layers: int) -> list[str]:
    """Each student layer's attention: the shortest period of the teacher's pattern, repeated over the student's depth.

    Gemma-2 alternates sliding and full layers, Gemma-3 has five sliding to one full. A student shallower than one
    period would have no full-attention layer at all; its last layer is then made one, so that it still reads the
    whole context (as the teacher's stack does).
    """
    period = next(
        length
        for length in range(1, len(teacher_types) + 1)
        if all(kind == teacher_types[index % length] for index, kind in enumerate(teacher_types))
    )
    types = [teacher_types[index % period] for index in range(num_layers)]
    if FULL_ATTENTION in teacher_types and FULL_ATTENTION not in types:
        types[-1] = FULL_ATTENTION
    return types


class DecoderFamily(Family):
    """Llama's layout; each decoder adapter overrides what differs."""

    objective = "causal"
    model_class = AutoModelForCausalLM
    head_name = "LM head"
    layers_path = "layers"
    attention_path = "self_attn"
    projection_names: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj")
    softmax_attention = False  # rotary positions and causal masks: the probabilities are not recomputed
    layer_roles = None
    narrow_refusal = "its gated feed-forward, RMSNorm and rotary positions"
    head_prefixes = ("lm_head.",)
    task_head_prefixes: ClassVar[tuple[str, ...]] = ("score.",)
    missing_head_hint = "it is a decoder without its LM head; use a checkpoint saved from a *ForCausalLM class"

    def head_drops(self) -> tuple[str, ...]:
        return self.head_prefixes

    # ------------------------------------------------------------------------------ the head

    def logit_scaling(self, model_config: Any) -> dict[str, Any]:
        """``MaskedLMHead``'s ``scale`` and ``softcap`` where the family's head applies them to its logits."""
        return {}

    def mlm_head(self, model: Any) -> MaskedLMHead:
        head = model.lm_head
        return MaskedLMHead(nn.Identity(), head.weight, head.bias, **self.logit_scaling(model.config))

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        model.lm_head = sliced_linear(model.lm_head, rows)  # re-tied by the caller when the config ties it

    # ------------------------------------------------------------------------------ loading

    def check_architectures(self, name: str, architectures: list[str]) -> None:
        if architectures and not any(entry.endswith(CAUSAL_ARCHITECTURES) for entry in architectures):
            raise MonodistillError(
                f"teacher {name} is a decoder without an LM head (architectures: {architectures}); "
                "use a checkpoint saved from a *ForCausalLM class"
            )

    # ------------------------------------------------------------------------------ students

    rotary: ClassVar[bool] = True
    """Whether queries and keys are rotated by position (RoPE), which pairs the dimensions of a head."""

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        if self.rotary:
            check_rotary_heads(shape)
        head_dim = shape.hidden_size // shape.num_heads
        config = super().student_config(teacher_config, shape, vocab_size, keep_embedding)
        if hasattr(teacher_config, "num_key_value_heads"):
            config.num_key_value_heads = key_value_heads(teacher_config, shape.num_heads)
        if getattr(teacher_config, "head_dim", None) is not None and (shape.hidden_size, shape.num_heads) != (
            teacher_config.hidden_size,
            teacher_config.num_attention_heads,
        ):
            # A student of the teacher's width and heads keeps its head width (Gemma's and Qwen3's are their own,
            # 256 at Gemma-3-270m's hidden 640), so teacher-layers copies its projections; another shape, hidden/heads.
            config.head_dim = head_dim
        teacher_types = getattr(teacher_config, "layer_types", None)
        if teacher_types:
            config.layer_types = student_layer_types(list(teacher_types), shape.num_layers)
        return config  # tie_word_embeddings as the teacher has it

    def copied_layers_config(self, student_config: Any, teacher_config: Any, layer_indices: list[int]) -> None:
        # Each copied layer keeps the attention it was trained with (full, or the teacher's sliding window).
        teacher_types = getattr(teacher_config, "layer_types", None)
        if teacher_types:
            student_config.layer_types = [teacher_types[index] for index in layer_indices]
