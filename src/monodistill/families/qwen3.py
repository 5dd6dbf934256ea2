"""Qwen3: Llama's layout with an RMSNorm on each head's queries and keys (``q_norm``, ``k_norm``) and an explicit
``head_dim`` (a student's is hidden / heads).

The projections are read before those norms and before the rotation, as in every decoder.
"""

from __future__ import annotations

from monodistill.families.decoder import DecoderFamily


class Qwen3Family(DecoderFamily):
    model_types = ("qwen3",)
    narrow_refusal = "its gated feed-forward, RMSNorm (also on each head's queries and keys) and rotary positions"


FAMILY = Qwen3Family()
