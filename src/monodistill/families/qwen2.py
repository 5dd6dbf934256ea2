"""Qwen2 and Qwen2.5: Llama's layout with biases on the query, key and value projections.

Grouped-query attention, and embeddings tied in the small models (Qwen2.5-0.5B, 1.5B). A sliding window, where
``use_sliding_window`` is set, covers the layers from ``max_window_layers`` on; a student takes the first of the
teacher's ``layer_types`` (``decoder.student_layer_types``).
"""

from __future__ import annotations

from monodistill.families.decoder import DecoderFamily


class Qwen2Family(DecoderFamily):
    model_types = ("qwen2",)


FAMILY = Qwen2Family()
