"""Llama (Llama-2, Llama-3) and Mistral: the decoder layout of ``families.decoder`` as it is.

Grouped-query attention (``num_key_value_heads``), rotary positions, RMSNorm, a gated (SwiGLU) feed-forward and an
``lm_head`` untied from the embeddings (tied in Llama-3.2's small models). Mistral is the same layout with a
sliding window in every layer (``sliding_window``, kept by its students).

Llama is also the family of a decoder student built fresh for a decoder teacher of another family
(``student.family=llama``, as BERT is for encoders): Llama's defaults (every query head its own key-value head,
rotary positions, RMSNorm, SwiGLU, no biases, full attention in every layer) at the student's shape, over the
teacher's vocabulary, BOS, EOS and padding ids and position limit, with its embeddings tied to the head where the
teacher's are (Qwen2.5's small models, Gemma's, GPT-2's and BLOOM's are; Llama-3 8B's are not).
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig

from monodistill.families.base import shape_fields
from monodistill.families.decoder import DecoderFamily, check_rotary_heads

SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")
"""The special ids a fresh Llama config takes from the teacher's (a decoder has no CLS or SEP)."""


class LlamaFamily(DecoderFamily):
    model_types = ("llama", "mistral")
    builds_fresh = True

    def fresh_config(
        self, teacher_config: Any, shape: Any, vocab_size: int, specials: dict[str, Any], positions: int
    ) -> Any:
        check_rotary_heads(shape)
        return LlamaConfig(
            **shape_fields(shape, vocab_size),
            num_key_value_heads=shape.num_heads,
            **{name: specials[name] for name in SPECIAL_IDS},
            max_position_embeddings=positions,
            tie_word_embeddings=bool(getattr(teacher_config, "tie_word_embeddings", False)),
        )


FAMILY = LlamaFamily()
