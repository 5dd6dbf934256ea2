"""Statistics of the teacher's activations on a sample, collected by one object of forward hooks."""

from __future__ import annotations

import contextlib
from dataclasses import fields
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from monodistill.errors import MonodistillError
from monodistill.families import Family
from monodistill.student.narrow.parts import Part, TakenLayer
from monodistill.student.narrow.statistics import (
    LayerStatistics,
    TeacherStatistics,
    TransformStatistics,
    direction_moment,
    head_moments,
)

IDENTITY_ABOVE_FOUR = ("gelu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "relu")
"""Activations within 3e-5 (relative) of the identity from 4 up: those the head's linearisation can lift there."""

Table = dict[nn.Module, torch.Tensor]
"""Float64 sums on the CPU, by the module whose activations they sum."""


class StopForward(Exception):
    """Raised by a hook to end a forward pass whose remaining output nobody reads."""


def sample_statistics(
    teacher: PreTrainedModel,
    family: Family,
    layers: list[TakenLayer],
    parts: list[Part],
    sample_ids: torch.Tensor,
    batch_tokens: int = 4096,
) -> TeacherStatistics:
    """Statistics of the teacher's activations on ``sample_ids`` (B, T), padding excluded."""
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    tokens = 0
    try:
        with StatisticsHooks(teacher, family, layers, parts) as hooks, torch.inference_mode():
            for batch in sample_ids.split(max(1, batch_tokens // sample_ids.shape[1])):
                tokens += hooks.observe(batch.to(device))
    finally:
        teacher.train(was_training)
    if tokens == 0:
        raise MonodistillError("student.init=teacher-layers: the sample blocks hold no token but padding")
    return hooks.statistics(tokens)


class StatisticsHooks:
    """Forward hooks on the teacher that sum, over the real tokens of the batches it ``observe``s, what the
    reduction reads: the residual stream (all layers, pooled), and in the taken layers and the ``parts`` outside
    them, each linear map's mean input and each LayerNorm's input directions, per head the moments of queries,
    keys and attention outputs, the FFN neurons' activity and the MLM head transform's output. Hooks are
    attached on entering the context and removed on leaving it; ``statistics`` gives the means."""

    def __init__(self, teacher: PreTrainedModel, family: Family, layers: list[TakenLayer], parts: list[Part]) -> None:
        self.teacher, self.layers, self.parts = teacher, layers, parts
        self.family = family
        self.num_heads, self.vocab_size = teacher.config.num_attention_heads, teacher.config.vocab_size
        activation = self.family.head_activation(teacher.config)
        self.activation = ACT2FN[activation] if activation in IDENTITY_ABOVE_FOUR else None
        """The MLM head's activation, where the reduction linearises it (``reduce_head_transform``)."""
        self.real = torch.ones(0, dtype=torch.bool)
        """The current batch's (B, T) mask of real tokens."""
        self.stream: torch.Tensor | None = None
        self.mean_inputs: Table = {}
        self.directions: Table = {}
        self.outputs: Table = {}  # per-head moments of queries and keys
        self.contexts: Table = {}  # per-head moments of the attention output map's input
        self.activity: Table = {}
        self.transforms: dict[nn.Module, TransformStatistics] = {}
        self.handles: list[RemovableHandle] = []

    def __enter__(self) -> StatisticsHooks:
        for layer in self.layers:
            self.hook_layer(layer)
        for part in self.parts:
            self.hook_part(part)
        # The residual stream: the first layer's input and every layer's output (all layers, pooled).
        all_layers = self.family.layers(self.teacher)
        self.handles.append(all_layers[0].register_forward_pre_hook(self.on_stream, with_kwargs=True))
        self.handles.extend(layer.register_forward_hook(self.on_stream, with_kwargs=True) for layer in all_layers)
        # The decoder's (V x H) product is most of the forward and nothing reads it: stop before it.
        decoder = self.teacher.get_output_embeddings()
        if decoder is not None:
            self.handles.append(decoder.register_forward_pre_hook(stop_forward))
        return self

    def __exit__(self, *exception: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def hook_layer(self, layer: TakenLayer) -> None:
        for role, module in self.family.layer_modules(layer.module).items():
            self.hook_input(module, role)
            if role in ("query", "key"):
                self.handles.append(module.register_forward_hook(partial(self.on_output, role)))
        for norm in self.family.layer_norms(layer.module).values():
            if norm.weight.shape == (self.teacher.config.hidden_size,):
                self.hook_input(norm, "norm")

    def hook_part(self, part: Part) -> None:
        module: Any = part.module
        hidden = self.teacher.config.hidden_size
        if part.role == "norm" and module.weight.shape == (hidden,):
            self.hook_input(module, "norm")
        elif part.role == "linear" and module.in_features == hidden and module.out_features != self.vocab_size:
            self.hook_input(module, "linear")  # ELECTRA's and RemBERT's head maps; not the decoder
        elif part.role == "head_transform":
            self.hook_input(module, "head_transform")
            if self.activation is not None:
                self.handles.append(module.register_forward_hook(partial(self.on_output, "head_transform")))

    def hook_input(self, module: nn.Module, role: str) -> None:
        self.handles.append(module.register_forward_pre_hook(partial(self.on_input, role), with_kwargs=True))

    def observe(self, batch: torch.Tensor) -> int:
        """Run the teacher on one (B, T) batch of ids, adding its statistics; the number of its real tokens."""
        pad_id = self.teacher.config.pad_token_id
        self.real = batch != pad_id if pad_id is not None else torch.ones_like(batch, dtype=torch.bool)
        with contextlib.suppress(StopForward):
            self.teacher(input_ids=batch, attention_mask=self.real.long())
        return int(self.real.sum())

    def on_input(self, role: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        inputs = first_input(args, kwargs)[self.real].float()  # (N, D)
        if role == "norm":
            add(self.directions, module, direction_moment(inputs))
            return
        add(self.mean_inputs, module, inputs.sum(dim=0))
        if role == "attention_output":
            add(self.contexts, module, head_moments(inputs, self.num_heads))
        elif role == "ffn_out":
            add(self.activity, module, inputs.abs().sum(dim=0))

    def on_output(self, role: str, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        values = output[self.real].float()  # (N, D)
        if role != "head_transform":
            add(self.outputs, module, head_moments(values, self.num_heads))
            return
        assert self.activation is not None
        activated = self.activation(values)
        batch = [values.sum(dim=0), values.T @ values, activated.sum(dim=0), (activated * values).sum(dim=0)]
        self.transforms[module] = summed(self.transforms.get(module), TransformStatistics(*batch))

    def on_stream(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any = None) -> None:
        state = first_input(args, kwargs) if output is None else output[0] if isinstance(output, tuple) else output
        stream = state[self.real].float()  # (N, H)
        value = (stream.T @ stream).detach().double().cpu()
        self.stream = value if self.stream is None else self.stream + value

    def statistics(self, tokens: int) -> TeacherStatistics:
        """The sums so far as means over ``tokens`` real tokens (the stream's over every layer's too)."""
        assert self.stream is not None

        def by_name(table: Table) -> dict[str, torch.Tensor]:
            return {part.name: table[part.module] / tokens for part in self.parts if part.module in table}

        return TeacherStatistics(
            stream=self.stream / (tokens * (len(self.family.layers(self.teacher)) + 1)),
            layers=[self.layer_statistics(layer, tokens) for layer in self.layers],
            norms=by_name(self.directions),
            mean_inputs=by_name(self.mean_inputs),
            transforms={
                part.name: divided(self.transforms[part.module], tokens)
                for part in self.parts
                if part.module in self.transforms
            },
        )

    def layer_statistics(self, layer: TakenLayer, tokens: int) -> LayerStatistics:
        modules = self.family.layer_modules(layer.module)
        norms = self.family.layer_norms(layer.module)
        return LayerStatistics(
            query=self.outputs[modules["query"]] / tokens,
            key=self.outputs[modules["key"]] / tokens,
            context=self.contexts[modules["attention_output"]] / tokens,
            activity=self.activity[modules["ffn_out"]] / tokens,
            norms={path: self.directions[norm] / tokens for path, norm in norms.items() if norm in self.directions},
            mean_inputs={role: self.mean_inputs[module] / tokens for role, module in modules.items()},
        )


def add(table: Table, module: nn.Module, value: torch.Tensor) -> None:
    """Add ``value`` (as float64 on the CPU) to ``module``'s sum in ``table``."""
    value = value.detach().double().cpu()
    table[module] = table[module] + value if module in table else value


def summed(total: TransformStatistics | None, batch: TransformStatistics) -> TransformStatistics:
    """``total`` plus ``batch`` (as float64 on the CPU), statistic by statistic."""
    values = [getattr(batch, field.name).detach().double().cpu() for field in fields(batch)]
    if total is not None:
        values = [getattr(total, field.name) + value for field, value in zip(fields(total), values, strict=True)]
    return TransformStatistics(*values)


def divided(sums: TransformStatistics, count: int) -> TransformStatistics:
    return TransformStatistics(*(getattr(sums, field.name) / count for field in fields(sums)))


def first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else next(iter(kwargs.values()))


def stop_forward(module: nn.Module, args: tuple[Any, ...]) -> None:
    raise StopForward
