"""ModernBERT (mmBERT): pre-LayerNorm ``layers`` with a fused ``attn.Wqkv``, rotary positions, global attention in
some layers and a local window in the others, a GLU feed-forward, and a ``head`` + ``decoder`` masked-LM head.

As a student of another family's teacher (``student.family=modernbert``) it takes mmBERT's layout: global
attention in every third layer from the first (``GLOBAL_EVERY``), a local window of 128 tokens in the others
(``LOCAL_ATTENTION``), mean pooling for classifiers (which reads no ``[CLS]``). From a ModernBERT teacher the
student keeps the teacher's config, with the teacher's period of global and local layers repeated over the
student's depth (``teacher-layers`` takes the type of each copied layer). ``intermediate_size`` is its GLU width
(the input projection is twice that).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import ModernBertConfig

from monodistill.families.base import Family, MaskedLMHead, shape_fields, sliced_linear

GLOBAL_EVERY = 3
"""A ModernBERT student of another family's teacher: global attention in layers 0, 3, 6, ... (mmBERT's layout)."""
LOCAL_ATTENTION = 128
"""Its local attention window, in tokens (mmBERT's)."""
MODEL_TYPE = "modernbert"


def layer_types(teacher_config: Any, num_layers: int) -> list[str]:
    """Each student layer's attention (``full_attention`` or ``sliding_attention``).

    From a ModernBERT teacher, the shortest period that repeats its layout (mmBERT: global, local, local),
    over the student's depth; from any other teacher, every ``GLOBAL_EVERY``-th layer global.
    """
    teacher_types = getattr(teacher_config, "layer_types", None) if teacher_config.model_type == MODEL_TYPE else None
    if not teacher_types:
        return ["full_attention" if index % GLOBAL_EVERY == 0 else "sliding_attention" for index in range(num_layers)]
    period = next(
        length
        for length in range(1, len(teacher_types) + 1)
        if all(kind == teacher_types[index % length] for index, kind in enumerate(teacher_types))
    )
    return [teacher_types[index % period] for index in range(num_layers)]


class ModernBertFamily(Family):
    model_types = (MODEL_TYPE,)
    layers_path = "layers"
    attention_path = "attn"
    projection_names = ("Wqkv",)  # fused: queries, keys and values side by side
    softmax_attention = False  # rotary positions, and a local window in most layers
    layer_roles = None
    narrow_refusal = "its fused query-key-value, gated feed-forward and rotary positions"
    head_prefixes = ("head.", "decoder.")
    builds_fresh = True

    def head_drops(self) -> tuple[str, ...]:
        # Its classifiers reuse the masked-LM head's dense, act and norm (``head.*``): only the decoder goes.
        return ("decoder.",)

    def mlm_head(self, model: Any) -> MaskedLMHead:
        # dense -> act -> norm, then the decoder (tied or not, with its own bias); the encoder's output already
        # passed the model's final_norm, as the model's own forward feeds it to the head.
        return MaskedLMHead(model.head, model.decoder.weight, model.decoder.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        model.decoder = sliced_linear(model.decoder, rows)  # re-tied by the caller when the config ties it

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        config = super().student_config(teacher_config, shape, vocab_size, keep_embedding)
        config.layer_types = layer_types(teacher_config, shape.num_layers)  # one per student layer
        return config

    def fresh_config(
        self, teacher_config: Any, shape: Any, vocab_size: int, specials: dict[str, Any], positions: int
    ) -> Any:
        return ModernBertConfig(
            **shape_fields(shape, vocab_size),
            **specials,
            max_position_embeddings=positions,
            layer_types=layer_types(teacher_config, shape.num_layers),
            local_attention=LOCAL_ATTENTION,
            classifier_pooling="mean",  # mmBERT's; reads no [CLS], which the teacher's tokenizer may not add
        )

    def copied_layers_config(self, student_config: Any, teacher_config: Any, layer_indices: list[int]) -> None:
        # Each copied layer keeps the attention it was trained with (global, or local in the teacher's window).
        student_config.layer_types = [teacher_config.layer_types[index] for index in layer_indices]


FAMILY = ModernBertFamily()
