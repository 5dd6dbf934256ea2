"""The reduction itself, as pure maps of float64 tensors: teacher weights, statistics and bases in, the student's
narrower weights out (the package docstring gives the maths). Nothing here reads a model."""

from __future__ import annotations

import torch

from monodistill.families.base import LayerWeights, LinearWeights, NormWeights
from monodistill.student.narrow.bases import Bases
from monodistill.student.narrow.statistics import LayerStatistics, TransformStatistics


def plus_dropped_mean(
    bias: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor | None, kept: torch.Tensor
) -> torch.Tensor:
    """The bias, plus what the weights make of the part of the mean input outside the kept subspace."""
    return bias if mean is None else bias + weight @ (mean - kept @ (kept.T @ mean))


def reduce_layer(weights: LayerWeights, statistics: LayerStatistics, bases: Bases) -> LayerWeights:
    """One transformer layer at the student's widths: every map that reads the stream reads P^T x, every map
    that writes it writes into P's coordinates, each head keeps its bases' directions, the FFN its kept neurons."""
    stream, means = bases.stream, statistics.mean_inputs
    _, head_dim, kept_dim = bases.query_key.shape
    scale = (kept_dim / head_dim) ** 0.5  # the student divides scores by sqrt(d_s), the teacher by sqrt(d_t)
    query = reduce_heads(weights.query, bases.query_key, stream, means.get("query"))
    return LayerWeights(
        query=LinearWeights(query.weight * scale, query.bias * scale),
        key=reduce_heads(weights.key, bases.query_key, stream, means.get("key")),
        value=reduce_heads(weights.value, bases.value, stream, means.get("value")),
        attention_output=reduce_attention_output(
            weights.attention_output, bases.value, stream, means.get("attention_output")
        ),
        ffn_in=reduce_ffn_in(weights.ffn_in, bases.neurons, stream, means.get("ffn_in")),
        ffn_out=reduce_ffn_out(weights.ffn_out, bases.neurons, stream, means.get("ffn_out")),
        norms={path: reduce_norm(norm, statistics.norms.get(path), stream) for path, norm in weights.norms.items()},
    )


def reduce_heads(
    linear: LinearWeights, bases: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> LinearWeights:
    """A query, key or value map (heads * d_t, H_t) -> (heads * d_s, H_s): head h's outputs U_h^T (W_h P x + b_h),
    for ``bases`` U (heads, d_t, d_s)."""
    heads, head_dim, kept_dim = bases.shape
    bias = plus_dropped_mean(linear.bias, linear.weight, mean, stream)
    per_head = (linear.weight @ stream).reshape(heads, head_dim, -1)  # (heads, d_t, H_s)
    weight = torch.einsum("hdk,hdi->hki", bases, per_head).reshape(heads * kept_dim, -1)
    bias = torch.einsum("hdk,hd->hk", bases, bias.reshape(heads, head_dim)).reshape(-1)
    return LinearWeights(weight, bias)


def reduce_attention_output(
    linear: LinearWeights, bases: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> LinearWeights:
    """The attention output map (H_t, heads * d_t) -> (H_s, heads * d_s): P^T W V, reading the heads' values in
    their bases V (heads, d_t, d_s); with a ``mean`` input, the bias gains what V drops of it."""
    weight, bias = linear.weight, linear.bias
    heads, head_dim, _ = bases.shape
    if mean is not None:
        per_head = mean.reshape(heads, head_dim, 1)
        dropped = per_head - bases @ (bases.transpose(1, 2) @ per_head)
        bias = bias + weight @ dropped.reshape(-1)
    weight = torch.einsum("ohd,hdk->ohk", weight.reshape(-1, heads, head_dim), bases).reshape(weight.shape[0], -1)
    return LinearWeights(stream.T @ weight, stream.T @ bias)


def reduce_ffn_in(
    linear: LinearWeights, kept: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> LinearWeights:
    """The FFN input map (I_t, H_t) -> (I_s, H_s): the ``kept`` neurons' rows, reading P^T x."""
    bias = plus_dropped_mean(linear.bias, linear.weight, mean, stream)
    return LinearWeights(linear.weight[kept] @ stream, bias[kept])


def reduce_ffn_out(
    linear: LinearWeights, kept: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> LinearWeights:
    """The FFN output map (H_t, I_t) -> (H_s, I_s): the ``kept`` neurons' columns, written into P's coordinates;
    with a ``mean`` input (the neurons' mean activations), the bias gains the dropped neurons' mean output."""
    bias = linear.bias
    if mean is not None:
        dropped = torch.ones(linear.weight.shape[1], dtype=torch.bool)
        dropped[kept] = False
        bias = bias + linear.weight[:, dropped] @ mean[dropped]
    return LinearWeights(stream.T @ linear.weight[:, kept], stream.T @ bias)


def reduce_norm(norm: NormWeights, directions: torch.Tensor | None, stream: torch.Tensor) -> NormWeights:
    """gamma_s[j] = s * sum_i P[i, j]^2 gamma_t[i] (the diagonal of P^T diag(gamma) P), beta_s = P^T beta.

    The student normalises P^T x by its own standard deviation over H_s coordinates; s = r sqrt(H_t / H_s)
    undoes the difference, r^2 being the mean share of the centred input's squared norm that P keeps, read
    from ``directions`` (H_t, H_t), the second moment of the norm's centred input direction. A norm of another
    width than the stream's (factorised embeddings, RemBERT's output embeddings) is kept as it is.
    """
    teacher_hidden, hidden = stream.shape
    if norm.weight.shape[0] != teacher_hidden:
        return norm
    scale = 1.0
    if hidden < teacher_hidden:
        if directions is None:
            raise ValueError("a LayerNorm of the residual stream needs the moment of its input directions")
        kept_share = torch.trace(stream.T @ directions @ stream)
        scale = float(kept_share.clamp_min(1e-12).sqrt()) * (teacher_hidden / hidden) ** 0.5
    return NormWeights((stream**2).T @ norm.weight * scale, stream.T @ norm.bias)


def reduce_embedding(weight: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """(V, H_t) rows that enter the stream -> E P (V, H_s); factorised embeddings (another width) are kept."""
    return weight @ stream if weight.shape[1] == stream.shape[0] else weight


def reduce_linear(linear: LinearWeights, stream: torch.Tensor, mean: torch.Tensor | None) -> LinearWeights:
    """A map outside the layers: W P where it reads the stream (ELECTRA's and RemBERT's heads, the decoder), P^T W
    where it writes it (ELECTRA's ``embeddings_project``, RemBERT's ``embedding_hidden_mapping_in``)."""
    weight, bias = linear.weight, linear.bias
    teacher_hidden = stream.shape[0]
    if weight.shape[1] == teacher_hidden:  # reads the stream
        bias = plus_dropped_mean(bias, weight, mean, stream)
        weight = weight @ stream
    if weight.shape[0] == teacher_hidden:  # writes it
        weight, bias = stream.T @ weight, stream.T @ bias
    return LinearWeights(weight, bias)


def reduce_head_transform(
    linear: LinearWeights, statistics: TransformStatistics | None, stream: torch.Tensor, mean: torch.Tensor | None
) -> LinearWeights:
    """The MLM head's transform, P^T W P, with the activation after it linearised: a GELU in P's coordinates is
    not the teacher's GELU in its own, so the teacher's is replaced by its least-squares affine fit per coordinate
    (g(a) ~ alpha * a + c on the ``statistics``), and the student's is kept in its linear range by a constant
    added to every coordinate, which the LayerNorm after it subtracts again.
    """
    weight, bias = linear.weight, linear.bias
    if stream.shape[0] == stream.shape[1] or statistics is None:
        # As wide as the teacher nothing changes. Data-free (the embedding rows are no fit for the head's
        # inputs: an affine fit on them measured worse on mmt-mini), or for an activation that never turns
        # into the identity, the activation stays.
        return LinearWeights(stream.T @ weight @ stream, stream.T @ plus_dropped_mean(bias, weight, mean, stream))
    output_mean, output_moment = statistics.mean, statistics.moment
    variance = (output_moment.diagonal() - output_mean**2).clamp_min(1e-12)
    cross = statistics.cross - statistics.activated * output_mean
    slope = cross / variance
    intercept = statistics.activated - slope * output_mean
    bias = slope * plus_dropped_mean(bias, weight, mean, stream) + intercept
    weight = stream.T @ (slope[:, None] * weight) @ stream
    bias = stream.T @ bias
    # The student's pre-activations: mean P^T (slope * a_mean + c), covariance P^T diag(slope) Cov(a) diag(slope) P.
    covariance = output_moment - torch.outer(output_mean, output_mean)
    spread = (stream.T @ (slope[:, None] * covariance * slope[None, :]) @ stream).diagonal().clamp_min(0).sqrt()
    student_mean = stream.T @ (slope * output_mean + intercept)
    # GELU(z) = z within 3e-5 relative from z = 4: lift 6 standard deviations below the mean above that.
    lift = float((6 * spread - student_mean).max().clamp_min(0)) + 4.0
    return LinearWeights(weight, bias + lift)
