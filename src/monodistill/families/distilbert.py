"""DistilBERT: ``transformer.layer`` with ``q_lin``/``k_lin``/``v_lin``, a ``vocab_*`` head, its own config names."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from monodistill.families.base import Family, MaskedLMHead, sliced_linear


class DistilBertFamily(Family):
    model_types = ("distilbert",)
    layers_path = "transformer.layer"
    attention_path = "attention"
    projection_names = ("q_lin", "k_lin", "v_lin")
    layer_roles: ClassVar[dict[str, str] | None] = {
        "attention.q_lin": "query",
        "attention.k_lin": "key",
        "attention.v_lin": "value",
        "attention.out_lin": "attention_output",
        "ffn.lin1": "ffn_in",
        "ffn.lin2": "ffn_out",
    }
    head_prefixes = ("vocab_",)
    task_head_prefixes = ("classifier.", "pre_classifier.")
    # DistilBertConfig maps num_hidden_layers, hidden_size and num_attention_heads onto n_layers, dim and
    # n_heads itself; its feed-forward width has no alias.
    intermediate_field = "hidden_dim"

    def head_activation(self, model_config: Any) -> str:
        return str(model_config.activation)

    def head_drops(self) -> tuple[str, ...]:
        return ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")

    def mlm_head(self, model: Any) -> MaskedLMHead:
        def distilbert_transform(hidden: torch.Tensor) -> torch.Tensor:
            return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))

        return MaskedLMHead(distilbert_transform, model.vocab_projector.weight, model.vocab_projector.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        model.vocab_projector = sliced_linear(model.vocab_projector, rows)


FAMILY = DistilBertFamily()
