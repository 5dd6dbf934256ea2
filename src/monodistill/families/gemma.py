"""Gemma-2 and Gemma-3's text models (``gemma3_text``: Gemma-3-270m and 1b): Llama's layout with norms before and
after each block, RMSNorm's weight read as ``1 + weight``, embeddings scaled by sqrt(hidden) and tied to the head.

Gemma-2 alternates sliding-window and full-attention layers and caps its logits, ``cap * tanh(logits / cap)``
(``final_logit_softcapping``, 30 in its releases; its head applies the cap: ``MaskedLMHead.softcap``); Gemma-3 has
five sliding layers to one full, and no cap. Both have an explicit ``head_dim`` (256, wider than hidden / heads in
the small models) and scale attention scores by ``query_pre_attn_scalar ** -0.5``: a student's ``head_dim`` is
hidden / heads, and its scalar follows it where the teacher's equals its ``head_dim``.
"""

from __future__ import annotations

from typing import Any

from monodistill.families.decoder import DecoderFamily


class GemmaFamily(DecoderFamily):
    model_types = ("gemma2", "gemma3_text")
    narrow_refusal = "its gated feed-forward, RMSNorm before and after each block and rotary positions"

    def logit_scaling(self, model_config: Any) -> dict[str, Any]:
        cap = getattr(model_config, "final_logit_softcapping", None)
        return {"softcap": float(cap)} if cap is not None else {}

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        config = super().student_config(teacher_config, shape, vocab_size, keep_embedding)
        if getattr(teacher_config, "query_pre_attn_scalar", None) == teacher_config.head_dim:
            config.query_pre_attn_scalar = config.head_dim
        return config


FAMILY = GemmaFamily()
