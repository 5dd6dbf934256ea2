"""GPT-2 and GPT-2-style decoders: ``transformer.h`` layers with a fused ``attn.c_attn`` Conv1D, learned absolute
positions (``n_positions``), a GELU feed-forward of ``n_inner`` (4 x hidden when unset), embeddings tied to
``lm_head``. GPT-2's config names its sizes ``n_layer``, ``n_embd``, ``n_head``; the standard names are aliases.
"""

from __future__ import annotations

from typing import Any

from monodistill.families.decoder import DecoderFamily


class Gpt2Family(DecoderFamily):
    model_types = ("gpt2",)
    # Sequence classifiers add ``score.*``; token classifiers (GPT2ForTokenClassification, BLOOM's) ``classifier.*``.
    task_head_prefixes = ("score.", "classifier.")
    rotary = False  # learned absolute positions (GPT-2), ALiBi (BLOOM)
    layers_path = "h"
    attention_path = "attn"
    projection_names = ("c_attn",)  # fused: its output holds queries, keys and values side by side
    narrow_refusal = "its Conv1D projections (weights stored transposed) and fused query-key-value"
    intermediate_field = "n_inner"

    def max_positions(self, model_config: Any) -> int:
        return int(model_config.n_positions)

    def intermediate_size(self, model_config: Any) -> int:
        return int(model_config.n_inner or 4 * model_config.n_embd)


FAMILY = Gpt2Family()
