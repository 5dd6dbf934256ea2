"""What the relation, hidden-state and attention losses read inside a model, for each supported family.

Hidden states come from transformers' ``output_hidden_states`` (numbered as it numbers them: 0 is the
embeddings' output, layer ``l`` is the output of the ``l``-th transformer layer). The query, key and
value projections are read from each family's own modules, by forward hooks on the layers asked for
only, so nothing is kept that no loss reads:

    bert, xlm-roberta, roberta, camembert, electra   encoder.layer[i].attention.self.{query, key, value}
    deberta-v2                                       encoder.layer[i].attention.self.{query,key,value}_proj
    distilbert                                       transformer.layer[i].attention.{q,k,v}_lin

The outputs are the projections before any scaling, (B, T, H) each, heads side by side along H.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.errors import MonodistillError

PROJECTIONS = {
    "bert": ("query", "key", "value"),
    "xlm-roberta": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "camembert": ("query", "key", "value"),
    "electra": ("query", "key", "value"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj"),
    "distilbert": ("q_lin", "k_lin", "v_lin"),
}
"""Each family's query, key and value projection modules, inside its attention module."""

SOFTMAX_ATTENTION = ("bert", "xlm-roberta", "roberta", "camembert", "electra", "distilbert")
"""Families whose attention probabilities are softmax(Q K^T / sqrt(d)) of those projections alone (DeBERTa-v2's
disentangled attention adds relative-position terms, so its probabilities cannot be recomputed from them)."""


def num_layers(model: PreTrainedModel) -> int:
    """The number of transformer layers."""
    return int(model.config.num_hidden_layers)


def num_heads(model: PreTrainedModel) -> int:
    """The number of attention heads."""
    return int(model.config.num_attention_heads)


def transformer_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's transformer layers, in order."""
    base: Any = getattr(model, model.base_model_prefix)
    family = model.config.model_type
    if family == "distilbert":
        return base.transformer.layer
    if family in PROJECTIONS:
        return base.encoder.layer
    raise MonodistillError(f"no layer layout known for model type {family!r}")


def attention_projections(model: PreTrainedModel, layer: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The query, key and value projection modules of transformer layer ``layer`` (1-based)."""
    block: Any = transformer_layers(model)[layer - 1]
    attention = block.attention if model.config.model_type == "distilbert" else block.attention.self
    query, key, value = (getattr(attention, name) for name in PROJECTIONS[model.config.model_type])
    return query, key, value


def _keeper(into: list[torch.Tensor]) -> Any:
    """A forward hook that appends the module's output to ``into``."""

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        into.append(output)

    return keep


@contextmanager
def capture_projections(model: PreTrainedModel, layers: Iterable[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Hooks on the Q, K, V projections of ``layers`` (1-based) for the block: ``{layer: [q, k, v]}`` after a forward.

    Each is (B, T, H). For a model that runs with gradients the tensors carry them, so losses on them
    train the projections.
    """
    captured: dict[int, list[torch.Tensor]] = {}
    handles = []
    for layer in sorted(set(layers)):
        captured[layer] = []
        for module in attention_projections(model, layer):

            def keep(
                module: nn.Module, inputs: Any, output: torch.Tensor, into: list[torch.Tensor] = captured[layer]
            ) -> None:
                into.append(output)

            handles.append(module.register_forward_hook(keep))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def freeze_below(model: PreTrainedModel, trainable_layers: int) -> None:
    """Leave only the top ``trainable_layers`` transformer layers and the MLM head's other weights trainable.

    The embeddings and the lower layers stop training; an MLM decoder tied to the word embeddings stays
    with them (its bias and the head's transform still train).
    """
    layers = transformer_layers(model)
    if trainable_layers > len(layers):
        raise MonodistillError(
            f"{trainable_layers} trainable layers asked for, but the model has {len(layers)} "
            "(student.trainable_layers, or adapt.train_layers)"
        )
    model.get_input_embeddings().requires_grad_(False)
    base: Any = getattr(model, model.base_model_prefix)
    base.embeddings.requires_grad_(False)
    for layer in layers[: len(layers) - trainable_layers]:
        layer.requires_grad_(False)
