"""What the narrow reduction reads of the teacher, as typed statistics: from its activations on a sample
(``hooks.sample_statistics``) or, data-free, from its weights alone (``weight_statistics`` here).

Every moment is a mean over tokens; with a sample, over its real (not padding) tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from monodistill.families.base import LayerWeights, LinearWeights


@dataclass(frozen=True)
class LayerStatistics:
    """What the reduction reads of one taken transformer layer."""

    query: torch.Tensor
    """(heads, d, d) second moment of each head's queries."""
    key: torch.Tensor
    """(heads, d, d) second moment of each head's keys."""
    context: torch.Tensor
    """(heads, d, d) second moment of each head's attention output (the attention output map's input)."""
    activity: torch.Tensor
    """(I,) mean |activation| of each FFN neuron (the FFN output map's input)."""
    norms: dict[str, torch.Tensor]
    """(H, H) second moment of the direction of each LayerNorm's centred input, by path inside the layer."""
    mean_inputs: dict[str, torch.Tensor]
    """(D,) mean input of each role's module (query, ..., ffn_out); empty data-free. The mean of what a projection
    drops is added to its bias."""


@dataclass(frozen=True)
class TransformStatistics:
    """The MLM head transform's output a (before its activation g), per coordinate: for the affine fit of g."""

    mean: torch.Tensor
    """(H,) E[a]"""
    moment: torch.Tensor
    """(H, H) E[a a^T]"""
    activated: torch.Tensor
    """(H,) E[g(a)]"""
    cross: torch.Tensor
    """(H,) E[g(a) * a]"""


@dataclass(frozen=True)
class TeacherStatistics:
    """Everything the reduction reads of the teacher; modules outside the layers by their teacher names."""

    stream: torch.Tensor
    """(H, H) uncentred second moment of the residual stream (the first layer's input and every layer's output)."""
    layers: list[LayerStatistics]
    """One per taken layer, in order."""
    norms: dict[str, torch.Tensor]
    """(H, H) as ``LayerStatistics.norms``, for the LayerNorms outside the layers."""
    mean_inputs: dict[str, torch.Tensor]
    """(D,) mean input of the linear maps outside the layers that read the stream; empty data-free."""
    transforms: dict[str, TransformStatistics]
    """The MLM head's transform, where its activation is linearised (with a sample only)."""


def direction_moment(inputs: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (D, D): the sum over rows of the outer products of their LayerNorm-centred directions."""
    centred = inputs - inputs.mean(dim=-1, keepdim=True)
    direction = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction.T @ direction


def head_moments(values: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, heads * d) -> (heads, d, d): the sum of each head's outer products."""
    per_head = values.reshape(values.shape[0], num_heads, -1)
    return torch.einsum("nhi,nhj->hij", per_head, per_head)


def output_head_moments(
    linear: LinearWeights, moment: torch.Tensor, mean: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """(heads, d, d) per-head second moments of W x + b over inputs x of (H, H) second moment and (H,) mean."""
    weight, bias = linear.weight, linear.bias
    # E[(W x + b)(W x + b)^T] from the inputs' second moment and mean.
    cross = torch.outer(weight @ mean, bias)
    output = weight @ moment @ weight.T + cross + cross.T + torch.outer(bias, bias)
    blocks = output.reshape(num_heads, output.shape[0] // num_heads, num_heads, -1)
    return blocks.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # the diagonal blocks: (heads, d, d)


def weight_statistics(
    rows: torch.Tensor, layers: list[LayerWeights], outer_norms: list[str], num_heads: int
) -> TeacherStatistics:
    """Data-free stand-ins for sample statistics: the (V, H) embedding rows, as they enter the residual stream,
    stand for every input to it.

    Queries, keys and values are those of the rows (exactly, through second moments); the attention output
    reads the values; an FFN neuron's activity is the norm of its input weights. Every LayerNorm (those of
    ``layers``, and ``outer_norms`` outside them) reads the rows' directions.
    """
    moment, mean = rows.T @ rows / len(rows), rows.mean(dim=0)
    directions = direction_moment(rows) / len(rows)
    statistics = [
        LayerStatistics(
            query=output_head_moments(layer.query, moment, mean, num_heads),
            key=output_head_moments(layer.key, moment, mean, num_heads),
            context=output_head_moments(layer.value, moment, mean, num_heads),
            activity=layer.ffn_in.weight.norm(dim=1),
            norms=dict.fromkeys(layer.norms, directions),
            mean_inputs={},
        )
        for layer in layers
    ]
    return TeacherStatistics(
        stream=moment, layers=statistics, norms=dict.fromkeys(outer_norms, directions), mean_inputs={}, transforms={}
    )
