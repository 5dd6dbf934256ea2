"""What the relation, hidden-state and attention losses read inside a model, in any family.

Hidden states come from transformers' ``output_hidden_states`` (numbered as it numbers them: 0 is the
embeddings' output, layer ``l`` is the output of the ``l``-th transformer layer). The query, key and
value projections are read from the modules the family's adapter names (``Family.attention_projections``:
``encoder.layer[i].attention.self.{query, key, value}`` in BERT's layout, a fused ``Wqkv`` split into three
in ModernBERT's), by forward hooks on the layers asked for only, so nothing is kept that no loss reads.

The outputs are the projections before any scaling (and, for rotary families, before the rotation),
(B, T, H) each, heads side by side along H.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.errors import MonodistillError
from monodistill.families import family_of


def num_layers(model: PreTrainedModel) -> int:
    """The number of transformer layers."""
    return int(model.config.num_hidden_layers)


def num_heads(model: PreTrainedModel) -> int:
    """The number of attention heads."""
    return int(model.config.num_attention_heads)


def transformer_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's transformer layers, in order."""
    return family_of(model).layers(model)


def attention_projections(model: PreTrainedModel, layer: int) -> tuple[nn.Module, ...]:
    """The query, key and value projection modules of transformer layer ``layer`` (1-based); one fused
    module where the family fuses them, whose output holds the three side by side."""
    return family_of(model).attention_projections(model, layer)


class ProjectionHooks:
    """Forward hooks on the Q, K, V projections of ``layers`` (1-based), installed once and kept.

    ``capture()`` gives, for the block, ``{layer: [q, k, v]}`` of the forward run inside it, (B, T, H)
    each; a forward outside the block keeps nothing. Installed once, before any forward:
    ``torch.compile`` does not guard on module hooks, so a compiled graph traced while they were absent
    (a validation pass that needs no projections) would later run without hooks registered since,
    and capture nothing.
    """

    def __init__(self, model: PreTrainedModel, layers: Iterable[int]) -> None:
        # A fused projection holds the three side by side, or interleaved per head (BLOOM): its family splits it.
        split = functools.partial(family_of(model).split_projection, model_config=model.config)
        self.captured: dict[int, list[torch.Tensor]] = {layer: [] for layer in sorted(set(layers))}
        self.capturing = False
        self._handles = [
            module.register_forward_hook(self._keeper(self.captured[layer], split))
            for layer in self.captured
            for module in attention_projections(model, layer)
        ]

    @property
    def layers(self) -> frozenset[int]:
        """The layers hooked."""
        return frozenset(self.captured)

    @contextmanager
    def capture(self) -> Iterator[dict[int, list[torch.Tensor]]]:
        """``{layer: [q, k, v]}`` of the forward run in the block, filled as it exits (the block's own lists)."""
        self._clear()
        self.capturing = True
        taken: dict[int, list[torch.Tensor]] = {}
        try:
            yield taken
            taken.update({layer: list(states) for layer, states in self.captured.items()})
        finally:
            self.capturing = False
            self._clear()

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _clear(self) -> None:
        for states in self.captured.values():
            states.clear()

    def _keeper(self, into: list[torch.Tensor], split: Callable[[torch.Tensor], list[torch.Tensor]]) -> Any:
        """A forward hook that appends the module's output to ``into`` while capturing, ``split`` into q, k, v."""

        def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if self.capturing:
                into.extend(split(output))

        return keep


@contextmanager
def capture_projections(model: PreTrainedModel, layers: Iterable[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Hooks on the Q, K, V projections of ``layers`` (1-based) for the block only: ``{layer: [q, k, v]}`` after a
    forward, (B, T, H) each. For a model that is never compiled; a training loop keeps ``ProjectionHooks``.

    For a model that runs with gradients the tensors carry them, so losses on them train the projections.
    """
    hooks = ProjectionHooks(model, layers)
    try:
        with hooks.capture() as captured:
            yield captured
    finally:
        hooks.remove()


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
