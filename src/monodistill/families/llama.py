"""Llama (Llama-2, Llama-3) and Mistral: the decoder layout of ``families.decoder`` as it is.

Grouped-query attention (``num_key_value_heads``), rotary positions, RMSNorm, a gated (SwiGLU) feed-forward and an
``lm_head`` untied from the embeddings (tied in Llama-3.2's small models). Mistral is the same layout with a
sliding window in every layer (``sliding_window``, kept by its students).
"""

from __future__ import annotations

from monodistill.families.decoder import DecoderFamily


class LlamaFamily(DecoderFamily):
    model_types = ("llama", "mistral")


FAMILY = LlamaFamily()
