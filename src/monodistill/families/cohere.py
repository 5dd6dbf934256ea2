"""Cohere's Command-R layout (Aya 23, Aya Expanse: ``cohere``; Command R7B, Aya Vision's text model: ``cohere2``).

Llama's projections in a parallel block (attention and feed-forward read the same LayerNorm's output and are
added together), LayerNorm without bias, rotary positions, embeddings tied to the head, and logits multiplied by
``logit_scale`` (0.0625 in Aya Expanse: ``MaskedLMHead.scale``). ``cohere2`` adds sliding-window layers, three to
one full (``layer_types``).
"""

from __future__ import annotations

from typing import Any

from monodistill.families.decoder import DecoderFamily


class CohereFamily(DecoderFamily):
    model_types = ("cohere", "cohere2")
    narrow_refusal = "its parallel attention and gated feed-forward and rotary positions"

    def logit_scaling(self, model_config: Any) -> dict[str, Any]:
        return {"scale": float(model_config.logit_scale)}


FAMILY = CohereFamily()
