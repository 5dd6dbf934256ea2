"""teacher-layers for a narrower student (BiStil, Ansell et al. 2023; Gurgurov et al. 2025) reduces each
taken weight to the student's widths. It needs the teacher's head count (each student head is one
teacher head, narrowed) and no size above the teacher's. What it reads of the teacher is either
statistics of its activations on ``sample_ids`` (corpus blocks), or, without them, stand-ins computed
from its weights alone (noted as "data-free" below). The choices, and why:

- The residual stream: one projection P (H_t x H_s, orthonormal columns) shared by every layer, since
  the residual connections add every layer's output into the same coordinates. Its span is the
  top principal directions of the teacher's hidden states (all layers' outputs pooled, uncentred
  across tokens, so that the stream's mean, which biases and LayerNorm betas put there, survives),
  always including the all-ones direction; data-free, of the word-embedding rows as they enter the
  stream. Within the span, the basis lines the ones direction up with the student's, so that the
  student's LayerNorm subtracts exactly the mean the teacher's subtracts, and is otherwise the
  closest to a selection of teacher coordinates (orthogonal Procrustes), since LayerNorm gains and
  the MLM head's activation act coordinate by coordinate (data-free on mmt-mini, where the head
  keeps its GELU, the KL to the teacher fell from 10.2 to 2.9; with a sample it changes little).
  Embeddings (word, position, token type) become E P; a map that reads the stream becomes W P, one
  that writes it P^T W (and its bias P^T b). The decoder stays tied to the projected word embeddings
  (kept rows of a trimmed vocabulary) and its bias is sliced as before.
- The MLM head's transform becomes P^T W P. Its activation, elementwise in the teacher's
  coordinates, does not commute with P: with a sample, the teacher's is replaced by its affine
  least-squares fit per coordinate and the student's kept in its linear range by a constant that
  the head's LayerNorm subtracts again (on mmt-mini: masked-token accuracy 0.03 -> 0.10). Data-free
  the activation stays as it is (an affine fit on the embedding rows measured worse).
- LayerNorm cannot be projected exactly (its gain is diagonal in the teacher's coordinates, not in
  P's): gamma_s[j] = s * sum_i P[i, j]^2 gamma_t[i], the diagonal of P^T diag(gamma) P, and
  beta_s = P^T beta. The factor s = r * sqrt(H_t / H_s) makes up for the student normalising over
  H_s coordinates: r^2 is the mean share of the centred input's squared norm that P keeps (on the
  sample; data-free, on the embedding rows).
- Attention, one head at a time. Q K^T is unchanged only by a transform applied to both sides, so a
  head's queries and keys share one orthonormal basis U (d_t x d_s): the top eigenvectors of the sum
  of their trace-normalised second moments (data-free, those of the embedding rows' queries and keys).
  Queries are scaled by sqrt(d_s / d_t), since the student divides scores by sqrt(d_s). Values get
  their own basis V, the principal directions of the head's attention output (data-free, of its
  values); the attention output projection takes its inverse side, P^T W_o V.
- Feed-forward: the I_s neurons of each taken layer with the most mean |activation| times the norm of
  their projected output weights (data-free, input-weight norm times output-weight norm), kept in
  order: their rows of the input map and columns of the output map.
- With a sample, what a projection drops is replaced by its mean: each bias gains W (x_mean minus its
  projection), and the output map's bias the dropped neurons' mean output.

Families: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA generators (the factorised embeddings kept; the
projection into the stream reduced) and DistilBERT. DeBERTa-v2 is refused for a narrower student: its
relative-position projections are not reduced.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from monodistill.errors import MonodistillError
from monodistill.families import family_of
from monodistill.internals import transformer_layers
from monodistill.student.shape import embedding_weight, intermediate_field

Statistics = dict[str, torch.Tensor]
"""What the reduction reads of the teacher, from a sample or from its weights alone, by key:
``stream`` (H, H) uncentred second moment of the residual stream; ``norm:M`` (H, H) second moment of
the direction of LayerNorm M's centred input; ``output:M`` (heads, d, d) second moments of a query or
key projection's output, per head; ``context:M`` (heads, d, d) the same of the attention output
projection's input; ``activity:M`` (I,) mean absolute input of an FFN output projection; for the MLM head's
transform, ``transform_mean:M`` (H,) and ``transform_moment:M`` (H, H) of its output a, and the means
``transform_act:M`` of g(a) and ``transform_cross:M`` of g(a) * a (g its activation, per coordinate);
``mean:M`` the mean input of a module (sample only: the mean of what a projection drops is added to a bias)."""


IDENTITY_ABOVE_FOUR = ("gelu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "relu")
"""Activations within 3e-5 (relative) of the identity from 4 up: those the head's linearisation can lift there."""


def head_activation(config: Any) -> str:
    """The activation between the MLM head's transform and its LayerNorm (RoBERTa's heads call GELU directly)."""
    return family_of(config).head_activation(config)


@dataclass(frozen=True)
class TeacherPart:
    """A teacher module that holds weights, and what the reduction does with it."""

    name: str
    module: nn.Module
    role: str
    """embedding, norm, query, key, value, attention_output, ffn_in, ffn_out; outside the layers head_transform
    (the MLM head's H x H map, before its activation), linear (any other), other."""
    layer: str | None
    """The name of its transformer layer; None outside the layers."""


def teacher_parts(teacher: PreTrainedModel, layer_indices: list[int]) -> list[TeacherPart]:
    """The teacher's modules with weights, outside the layers or in the layers the student takes."""
    names = {id(module): name for name, module in teacher.named_modules()}
    layers = [names[id(layer)] for layer in transformer_layers(teacher)]
    taken = {layers[index] for index in layer_indices}
    roles = family_of(teacher).layer_roles or {}
    parts = []
    for name, module in teacher.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        layer = next((prefix for prefix in layers if name.startswith(prefix + ".")), None)
        if layer is not None and layer not in taken:
            continue
        if isinstance(module, nn.LayerNorm):
            role = "norm"
        elif isinstance(module, nn.Embedding):
            role = "embedding"
        elif layer is not None:
            role = roles.get(name[len(layer) + 1 :], "other")
        elif isinstance(module, nn.Linear):
            square = module.in_features == module.out_features == teacher.config.hidden_size
            role = "head_transform" if square else "linear"
        else:
            role = "other"
        parts.append(TeacherPart(name, module, role, layer))
    return parts


def narrow_teacher_state(
    teacher: PreTrainedModel,
    student_config: Any,
    layer_indices: list[int],
    vocab_ids: torch.Tensor | None,
    sample_ids: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The teacher's weights (taken layers only, teacher names) reduced to the student's widths, float32."""
    parts = teacher_parts(teacher, layer_indices)
    if sample_ids is not None:
        statistics = sample_statistics(teacher, parts, sample_ids)
    else:
        statistics = weight_statistics(teacher, parts, vocab_ids)
    return reduce_parts(
        parts,
        statistics,
        hidden_size=student_config.hidden_size,
        intermediate_size=getattr(student_config, intermediate_field(student_config)),
        num_heads=student_config.num_attention_heads,
    )


def _head_moments(values: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, heads * d) -> (heads, d, d): the sum of each head's outer products."""
    per_head = values.reshape(values.shape[0], num_heads, -1)
    return torch.einsum("nhi,nhj->hij", per_head, per_head)


def _first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else next(iter(kwargs.values()))


def sample_statistics(
    teacher: PreTrainedModel, parts: list[TeacherPart], sample_ids: torch.Tensor, batch_tokens: int = 4096
) -> Statistics:
    """Statistics of the teacher's activations on ``sample_ids`` (B, T), padding excluded."""
    num_heads = teacher.config.num_attention_heads
    hidden, vocab_size = teacher.config.hidden_size, teacher.config.vocab_size
    activation = ACT2FN[head_activation(teacher.config)]
    linearise = head_activation(teacher.config) in IDENTITY_ABOVE_FOUR
    sums: Statistics = {}
    real: list[torch.Tensor] = []  # the current batch's (B, T) mask of real tokens

    def add(key: str, value: torch.Tensor) -> None:
        value = value.detach().double().cpu()
        sums[key] = sums[key] + value if key in sums else value

    def on_input(part: TeacherPart) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs = _first_input(args, kwargs)[real[0]].float()  # (N, D)
            if part.role == "norm":
                centred = inputs - inputs.mean(dim=-1, keepdim=True)
                direction = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                add(f"norm:{part.name}", direction.T @ direction)
                return
            add(f"mean:{part.name}", inputs.sum(dim=0))
            if part.role == "attention_output":
                add(f"context:{part.name}", _head_moments(inputs, num_heads))
            elif part.role == "ffn_out":
                add(f"activity:{part.name}", inputs.abs().sum(dim=0))

        return hook

    def on_output(part: TeacherPart) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            values = output[real[0]].float()  # (N, D)
            if part.role != "head_transform":
                add(f"output:{part.name}", _head_moments(values, num_heads))
                return
            activated = activation(values)
            add(f"transform_mean:{part.name}", values.sum(dim=0))
            add(f"transform_moment:{part.name}", values.T @ values)
            add(f"transform_act:{part.name}", activated.sum(dim=0))
            add(f"transform_cross:{part.name}", (activated * values).sum(dim=0))

        return hook

    handles = []
    for part in parts:
        module: Any = part.module
        if part.role == "norm":
            wanted = module.weight.shape == (hidden,)
        elif part.role == "linear":  # ELECTRA's generator head; not the decoder
            wanted = module.in_features == hidden and module.out_features != vocab_size
        else:
            wanted = part.role in ("query", "key", "value", "attention_output", "ffn_in", "ffn_out", "head_transform")
        if wanted:
            handles.append(module.register_forward_pre_hook(on_input(part), with_kwargs=True))
        if part.role in ("query", "key") or (part.role == "head_transform" and linearise):
            handles.append(module.register_forward_hook(on_output(part)))
    # The residual stream: the first layer's input and every layer's output (all layers, pooled).
    layers = transformer_layers(teacher)

    def on_stream(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any = None) -> None:
        state = _first_input(args, kwargs) if output is None else output[0] if isinstance(output, tuple) else output
        stream = state[real[0]].float()  # (N, H)
        add("stream", stream.T @ stream)

    handles.append(layers[0].register_forward_pre_hook(on_stream, with_kwargs=True))
    handles.extend(layer.register_forward_hook(on_stream, with_kwargs=True) for layer in layers)

    # The decoder's (V x H) product is most of the forward and nothing reads it: stop before it.
    def stop(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _StopForward

    decoder = teacher.get_output_embeddings()
    if decoder is not None:
        handles.append(decoder.register_forward_pre_hook(stop))
    device = next(teacher.parameters()).device
    pad_id = teacher.config.pad_token_id
    tokens = 0
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.inference_mode():
            for batch in sample_ids.split(max(1, batch_tokens // sample_ids.shape[1])):
                batch = batch.to(device)
                real[:] = [batch != pad_id if pad_id is not None else torch.ones_like(batch, dtype=torch.bool)]
                with contextlib.suppress(_StopForward):
                    teacher(input_ids=batch, attention_mask=real[0].long())
                tokens += int(real[0].sum())
    finally:
        teacher.train(was_training)
        for handle in handles:
            handle.remove()
    if tokens == 0:
        raise MonodistillError("student.init=teacher-layers: the sample blocks hold no token but padding")
    return {key: value / (tokens * (len(layers) + 1) if key == "stream" else tokens) for key, value in sums.items()}


class _StopForward(Exception):
    """Raised by a hook to end a forward pass whose remaining output nobody reads."""


def _stream_embeddings(teacher: PreTrainedModel, vocab_ids: torch.Tensor | None) -> torch.Tensor:
    """(V, H) the word embeddings (kept rows) as they enter the residual stream (through ELECTRA's projection)."""
    rows = embedding_weight(teacher).detach().double().cpu()
    if vocab_ids is not None:
        rows = rows[vocab_ids]
    project = family_of(teacher).stream_input(teacher)
    if project is not None:
        rows = rows @ project.weight.detach().double().cpu().T + project.bias.detach().double().cpu()
    return rows


def weight_statistics(teacher: PreTrainedModel, parts: list[TeacherPart], vocab_ids: torch.Tensor | None) -> Statistics:
    """Data-free stand-ins for ``sample_statistics``: the embedding rows stand for every residual-stream input.

    Queries, keys and values are those of the rows (exactly, through second moments); the attention
    output reads the values; an FFN neuron's activity is the norm of its input weights.
    """
    num_heads = teacher.config.num_attention_heads
    rows = _stream_embeddings(teacher, vocab_ids)  # (V, H)
    moment, mean = rows.T @ rows / len(rows), rows.mean(dim=0)
    centred = rows - rows.mean(dim=-1, keepdim=True)
    direction = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    statistics: Statistics = {"stream": moment}
    by_role = {(part.layer, part.role): part for part in parts}
    for part in parts:
        if part.role == "norm":
            statistics[f"norm:{part.name}"] = direction.T @ direction / len(rows)
        elif part.role in ("query", "key", "value"):
            weight, bias = _weight_and_bias(part.module)
            # E[(W x + b)(W x + b)^T] over the rows, from their second moment and mean.
            cross = torch.outer(weight @ mean, bias)
            output = weight @ moment @ weight.T + cross + cross.T + torch.outer(bias, bias)
            blocks = output.reshape(num_heads, output.shape[0] // num_heads, num_heads, -1)
            per_head = blocks.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (heads, d, d)
            if part.role == "value":
                statistics[f"context:{by_role[(part.layer, 'attention_output')].name}"] = per_head
            else:
                statistics[f"output:{part.name}"] = per_head
        elif part.role == "ffn_in":
            weight, _ = _weight_and_bias(part.module)
            statistics[f"activity:{by_role[(part.layer, 'ffn_out')].name}"] = weight.norm(dim=1)
    return statistics


def _weight_and_bias(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    weight = module.weight.detach().double().cpu()
    bias = module.bias.detach().double().cpu() if getattr(module, "bias", None) is not None else None
    return weight, bias if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)


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


def _plus_dropped_mean(
    bias: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor | None, kept: torch.Tensor
) -> torch.Tensor:
    """The bias, plus what the weights make of the part of the mean input outside the kept subspace."""
    return bias if mean is None else bias + weight @ (mean - kept @ (kept.T @ mean))


def reduce_parts(
    parts: list[TeacherPart], statistics: Statistics, hidden_size: int, intermediate_size: int, num_heads: int
) -> dict[str, torch.Tensor]:
    """Each part's weights reduced to the student's widths (teacher names, float32)."""
    stream = stream_basis(statistics["stream"], hidden_size)  # P (H_t, H_s)
    teacher_hidden = stream.shape[0]
    head_dim = hidden_size // num_heads
    by_role = {(part.layer, part.role): part for part in parts}
    state: dict[str, torch.Tensor] = {}
    for part in parts:
        mean = statistics.get(f"mean:{part.name}")
        if part.role == "embedding":
            weight, _ = _weight_and_bias(part.module)
            reduced = {"weight": weight @ stream if weight.shape[1] == teacher_hidden else weight}
        elif part.role == "norm":
            reduced = _reduce_norm(part, statistics, stream)
        elif part.role in ("query", "key", "value", "attention_output"):
            attention = "value" if part.role in ("value", "attention_output") else "query"
            if attention == "value":
                context = statistics[f"context:{by_role[(part.layer, 'attention_output')].name}"]
                bases = head_bases([context], head_dim)
            else:
                pair = [by_role[(part.layer, role)].name for role in ("query", "key")]
                bases = head_bases([statistics[f"output:{name}"] for name in pair], head_dim)
            reduced = _reduce_attention(part, bases, stream, mean)
        elif part.role in ("ffn_in", "ffn_out"):
            ffn_out = by_role[(part.layer, "ffn_out")]
            kept = _kept_neurons(statistics[f"activity:{ffn_out.name}"], ffn_out.module, stream, intermediate_size)
            reduced = _reduce_ffn(part, kept, stream, mean)
        elif part.role == "head_transform":
            reduced = _reduce_head_transform(part, statistics, stream, mean)
        elif part.role == "linear":
            weight, bias = _weight_and_bias(part.module)
            reads, writes = weight.shape[1] == teacher_hidden, weight.shape[0] == teacher_hidden
            if reads:
                bias = _plus_dropped_mean(bias, weight, mean, stream)
                weight = weight @ stream
            if writes:
                weight, bias = stream.T @ weight, stream.T @ bias
            reduced = {"weight": weight, "bias": bias}
        else:
            reduced = {key: value.detach().double().cpu() for key, value in part.module.named_parameters(recurse=False)}
            if hidden_size < teacher_hidden and any(teacher_hidden in value.shape for value in reduced.values()):
                raise MonodistillError(
                    f"student.init=teacher-layers cannot reduce the teacher's {part.name} to a narrower student"
                )
        for key, value in reduced.items():
            state[f"{part.name}.{key}"] = value.float()
    return state


def _reduce_head_transform(
    part: TeacherPart, statistics: Statistics, stream: torch.Tensor, mean: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The MLM head's transform, with the activation after it linearised: a GELU in P's coordinates is not the
    teacher's GELU in its own, so the teacher's is replaced by its least-squares affine fit per coordinate
    (g(a) ~ alpha * a + c on the statistics), and the student's is kept in its linear range by a constant
    added to every coordinate, which the LayerNorm after it subtracts again.
    """
    weight, bias = _weight_and_bias(part.module)
    if stream.shape[0] == stream.shape[1] or f"transform_mean:{part.name}" not in statistics:
        # As wide as the teacher nothing changes. Data-free (the embedding rows are no fit for the head's
        # inputs: an affine fit on them measured worse on mmt-mini), or for an activation that never turns
        # into the identity, the activation stays.
        return {"weight": stream.T @ weight @ stream, "bias": stream.T @ _plus_dropped_mean(bias, weight, mean, stream)}
    output_mean = statistics[f"transform_mean:{part.name}"]
    output_moment = statistics[f"transform_moment:{part.name}"]
    variance = (output_moment.diagonal() - output_mean**2).clamp_min(1e-12)
    cross = statistics[f"transform_cross:{part.name}"] - statistics[f"transform_act:{part.name}"] * output_mean
    slope = cross / variance
    intercept = statistics[f"transform_act:{part.name}"] - slope * output_mean
    bias = slope * _plus_dropped_mean(bias, weight, mean, stream) + intercept
    weight = stream.T @ (slope[:, None] * weight) @ stream
    bias = stream.T @ bias
    # The student's pre-activations: mean P^T (slope * a_mean + c), covariance P^T diag(slope) Cov(a) diag(slope) P.
    covariance = output_moment - torch.outer(output_mean, output_mean)
    spread = (stream.T @ (slope[:, None] * covariance * slope[None, :]) @ stream).diagonal().clamp_min(0).sqrt()
    student_mean = stream.T @ (slope * output_mean + intercept)
    # GELU(z) = z within 3e-5 relative from z = 4: lift 6 standard deviations below the mean above that.
    lift = float((6 * spread - student_mean).max().clamp_min(0)) + 4.0
    return {"weight": weight, "bias": bias + lift}


def _reduce_norm(part: TeacherPart, statistics: Statistics, stream: torch.Tensor) -> dict[str, torch.Tensor]:
    """gamma_s[j] = s * sum_i P[i, j]^2 gamma_t[i] (the diagonal of P^T diag(gamma) P), beta_s = P^T beta.

    The student normalises P^T x by its own standard deviation over H_s coordinates; s = r sqrt(H_t / H_s)
    undoes the difference, r^2 being the mean share of the centred input's squared norm that P keeps.
    """
    weight, bias = _weight_and_bias(part.module)
    teacher_hidden, hidden = stream.shape
    if weight.shape[0] != teacher_hidden:  # ELECTRA's factorised embeddings and generator head
        return {"weight": weight, "bias": bias}
    scale = 1.0
    if hidden < teacher_hidden:
        kept_share = torch.trace(stream.T @ statistics[f"norm:{part.name}"] @ stream)
        scale = float(kept_share.clamp_min(1e-12).sqrt()) * (teacher_hidden / hidden) ** 0.5
    return {"weight": (stream**2).T @ weight * scale, "bias": stream.T @ bias}


def _reduce_attention(
    part: TeacherPart, bases: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """One head at a time: queries and keys share a basis U, values a basis V; ``bases`` (heads, d_t, d_s)."""
    weight, bias = _weight_and_bias(part.module)
    heads, head_dim, kept_dim = bases.shape
    if part.role == "attention_output":  # reads the heads' values: (H_t, heads * d_t) -> P^T W V
        if mean is not None:
            per_head = mean.reshape(heads, head_dim, 1)
            dropped = per_head - bases @ (bases.transpose(1, 2) @ per_head)
            bias = bias + weight @ dropped.reshape(-1)
        weight = torch.einsum("ohd,hdk->ohk", weight.reshape(-1, heads, head_dim), bases).reshape(weight.shape[0], -1)
        return {"weight": stream.T @ weight, "bias": stream.T @ bias}
    bias = _plus_dropped_mean(bias, weight, mean, stream)
    weight = torch.einsum("hdk,hdi->hki", bases, (weight @ stream).reshape(heads, head_dim, -1)).reshape(
        heads * kept_dim, -1
    )
    bias = torch.einsum("hdk,hd->hk", bases, bias.reshape(heads, head_dim)).reshape(-1)
    if part.role == "query":  # the student divides scores by sqrt(d_s), the teacher by sqrt(d_t)
        scale = (kept_dim / head_dim) ** 0.5
        weight, bias = weight * scale, bias * scale
    return {"weight": weight, "bias": bias}


def _kept_neurons(activity: torch.Tensor, ffn_out: nn.Module, stream: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` neurons of most mean |activation| times the norm of their (projected) output weights."""
    weight, _ = _weight_and_bias(ffn_out)
    if count == weight.shape[1]:
        return torch.arange(count)
    importance = activity * (stream.T @ weight).norm(dim=0)
    return importance.topk(count).indices.sort().values


def _reduce_ffn(
    part: TeacherPart, kept: torch.Tensor, stream: torch.Tensor, mean: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    weight, bias = _weight_and_bias(part.module)
    if part.role == "ffn_in":  # (I_t, H_t) -> (I_s, H_s)
        bias = _plus_dropped_mean(bias, weight, mean, stream)
        return {"weight": weight[kept] @ stream, "bias": bias[kept]}
    if mean is not None:  # the dropped neurons' mean output
        dropped = torch.ones(weight.shape[1], dtype=torch.bool)
        dropped[kept] = False
        bias = bias + weight[:, dropped] @ mean[dropped]
    return {"weight": stream.T @ weight[:, kept], "bias": stream.T @ bias}
