"""The subspaces a narrower student keeps of the teacher: the residual stream's basis P, per head a query-key
basis U and a value basis V, and the FFN neurons. Each is chosen from statistics (``statistics``) alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from monodistill.families.base import LayerWeights, LinearWeights
from monodistill.student.narrow.statistics import LayerStatistics


@dataclass(frozen=True)
class Bases:
    """What one layer's reduction keeps of the teacher's coordinates."""

    stream: torch.Tensor
    """P (H_t, H_s), orthonormal columns, shared by every layer."""
    query_key: torch.Tensor
    """U (heads, d_t, d_s), orthonormal columns per head, shared by the head's queries and keys."""
    value: torch.Tensor
    """V (heads, d_t, d_s), orthonormal columns per head."""
    neurons: torch.Tensor
    """(I_s,) the kept FFN neurons, ascending."""


def stream_basis(moment: torch.Tensor, dim: int) -> torch.Tensor:
    """P (H, dim), orthonormal columns, from the stream's (H, H) uncentred second moment.

    The span is the best one that holds the all-ones direction: the LayerNorm-centred stream's top
    ``dim - 1`` principal directions plus ones / sqrt(H). Inside it, the basis is chosen so that
    (1) P^T ones / sqrt(H) = ones / sqrt(dim): the student's LayerNorm then subtracts exactly the mean
    the teacher's subtracts; and (2) among those, P is closest (orthogonal Procrustes) to a selection
    of the ``dim`` teacher coordinates the span holds most of: the MLM head's GELU and every
    LayerNorm's gain act coordinate by coordinate, and commute with P only as far as P selects
    coordinates. The identity when ``dim`` is the teacher's size.
    """
    hidden = moment.shape[0]
    eye = torch.eye(hidden, dtype=torch.float64)
    if dim == hidden:
        return eye
    ones = torch.full((hidden, 1), hidden**-0.5, dtype=torch.float64)
    centring = eye - ones @ ones.T
    _, vectors = torch.linalg.eigh(centring @ moment @ centring)  # ascending eigenvalues
    top = centring @ vectors[:, hidden - dim + 1 :].flip(1)  # (H, dim - 1), orthogonal to ones
    span, triangle = torch.linalg.qr(torch.cat([ones, top], dim=1))
    span = span * torch.sign(torch.diagonal(triangle))  # first column +ones / sqrt(H)
    # (1): a rotation R with R^T e_1 = w, the student's ones / sqrt(dim), is R = Householder(e_1 <-> w) T for
    # any T that fixes w; (2) picks T, a Procrustes rotation on w's orthogonal complement N.
    student_ones = torch.full((dim, 1), dim**-0.5, dtype=torch.float64)
    normal = torch.eye(dim, dtype=torch.float64)[:, :1] - student_ones
    if normal.norm() > 1e-12:
        span = span @ (torch.eye(dim, dtype=torch.float64) - 2 * normal @ normal.T / (normal.T @ normal))
    selection = eye[:, span.norm(dim=1).topk(dim).indices.sort().values]  # (H, dim)
    complement = torch.linalg.qr(torch.cat([student_ones, torch.eye(dim, dtype=torch.float64)[:, : dim - 1]], 1))
    others = complement.Q[:, 1:]  # (dim, dim - 1)
    left, _, right = torch.linalg.svd(others.T @ span.T @ selection @ others)
    return span @ (student_ones @ student_ones.T + others @ left @ right @ others.T)


def head_bases(moments: list[torch.Tensor], dim: int) -> torch.Tensor:
    """(heads, d, dim): per head, the top eigenvectors of the trace-normalised sum of (heads, d, d) moments."""
    heads, head_dim, _ = moments[0].shape
    if dim == head_dim:
        return torch.eye(head_dim, dtype=torch.float64).expand(heads, -1, -1)
    combined = sum(
        moment / moment.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)[:, None, None] for moment in moments
    )
    _, vectors = torch.linalg.eigh(combined)  # ascending eigenvalues
    return vectors[..., head_dim - dim :].flip(-1)


def kept_neurons(activity: torch.Tensor, ffn_out: LinearWeights, stream: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` neurons of most mean |activation| times the norm of their (projected) output weights."""
    if count == ffn_out.weight.shape[1]:
        return torch.arange(count)
    importance = activity * (stream.T @ ffn_out.weight).norm(dim=0)
    return importance.topk(count).indices.sort().values


def layer_bases(
    weights: LayerWeights, statistics: LayerStatistics, stream: torch.Tensor, head_dim: int, intermediate_size: int
) -> Bases:
    """One layer's bases: queries and keys share the heads' ``head_dim`` top directions of both, values get
    those of the attention output, and the FFN keeps ``intermediate_size`` neurons."""
    return Bases(
        stream=stream,
        query_key=head_bases([statistics.query, statistics.key], head_dim),
        value=head_bases([statistics.context], head_dim),
        neurons=kept_neurons(statistics.activity, weights.ffn_out, stream, intermediate_size),
    )
