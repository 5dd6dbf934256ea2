"""Where the narrow reduction meets the teacher model: the layers the student takes (read and written through
the family adapter as ``LayerWeights``), the modules with weights outside them, and what each of those becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.errors import MonodistillError
from monodistill.families import Family
from monodistill.families.base import LinearWeights, NormWeights
from monodistill.student.narrow.reduce import reduce_embedding, reduce_head_transform, reduce_linear, reduce_norm
from monodistill.student.narrow.statistics import TeacherStatistics
from monodistill.student.shape import embedding_weight


@dataclass(frozen=True)
class TakenLayer:
    """A transformer layer of the teacher that the student takes."""

    name: str
    """Its module name in the teacher: the prefix of its weights' state-dict names."""
    module: nn.Module


@dataclass(frozen=True)
class Part:
    """A teacher module with weights that no taken layer's roles cover, and what the reduction does with it."""

    name: str
    module: nn.Module
    role: str
    """embedding, norm, head_transform (the MLM head's H x H map, before its activation), linear (any other linear
    map outside the layers), other (copied as it is, where it has no dimension of the stream's width)."""


def teacher_parts(
    teacher: PreTrainedModel, family: Family, layer_indices: list[int]
) -> tuple[list[TakenLayer], list[Part]]:
    """The layers the student takes, and the teacher's other modules with weights, outside every layer or in a
    taken one beyond its roles and LayerNorms."""
    names = {id(module): name for name, module in teacher.named_modules()}
    layers = family.layers(teacher)
    layer_names = [names[id(layer)] for layer in layers]
    taken = [TakenLayer(layer_names[index], layers[index]) for index in layer_indices]
    covered = {
        id(module)
        for layer in taken
        for module in [*family.layer_modules(layer.module).values(), *family.layer_norms(layer.module).values()]
    }
    taken_names = {layer.name for layer in taken}
    hidden = teacher.config.hidden_size
    parts = []
    for name, module in teacher.named_modules():
        if next(module.parameters(recurse=False), None) is None or id(module) in covered:
            continue
        layer = next((prefix for prefix in layer_names if name.startswith(prefix + ".")), None)
        if layer is not None and layer not in taken_names:
            continue
        if isinstance(module, nn.LayerNorm):
            role = "norm"
        elif isinstance(module, nn.Embedding):
            role = "embedding"
        elif isinstance(module, nn.Linear) and layer is None:
            role = "head_transform" if module.in_features == module.out_features == hidden else "linear"
        else:
            role = "other"
        parts.append(Part(name, module, role))
    return taken, parts


def stream_embeddings(teacher: PreTrainedModel, family: Family, vocab_ids: torch.Tensor | None) -> torch.Tensor:
    """(V, H) the word embeddings (kept rows) as they enter the residual stream (through ELECTRA's or RemBERT's
    map into it), float64."""
    rows = embedding_weight(teacher).detach().double().cpu()
    if vocab_ids is not None:
        rows = rows[vocab_ids]
    project = family.stream_input(teacher)
    if project is not None:
        linear = LinearWeights.of(project)
        rows = rows @ linear.weight.T + linear.bias
    return rows


def reduce_part(part: Part, statistics: TeacherStatistics, stream: torch.Tensor) -> dict[str, torch.Tensor]:
    """A part's weights at the student's widths (float64), under its state-dict names; ``stream`` is P (H_t, H_s)."""
    module: Any = part.module
    mean = statistics.mean_inputs.get(part.name)
    if part.role == "embedding":
        return {f"{part.name}.weight": reduce_embedding(module.weight.detach().double().cpu(), stream)}
    if part.role == "norm":
        return reduce_norm(NormWeights.of(module), statistics.norms.get(part.name), stream).state(part.name)
    if part.role == "head_transform":
        transform = statistics.transforms.get(part.name)
        return reduce_head_transform(LinearWeights.of(module), transform, stream, mean).state(part.name)
    if part.role == "linear":
        return reduce_linear(LinearWeights.of(module), stream, mean).state(part.name)
    weights = {
        f"{part.name}.{key}": value.detach().double().cpu() for key, value in module.named_parameters(recurse=False)
    }
    teacher_hidden, hidden = stream.shape
    if hidden < teacher_hidden and any(teacher_hidden in value.shape for value in weights.values()):
        raise MonodistillError(
            f"student.init=teacher-layers cannot reduce the teacher's {part.name} to a narrower student"
        )
    return weights
