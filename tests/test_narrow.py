"""The narrow reduction's pure maps (student.narrow.reduce, .bases, .statistics) on random tensors, without a model;
and where it meets one: the family adapter's reading and writing of a layer, and the sample statistics' hooks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from monodistill.families import family_of, supported_families
from monodistill.families.base import LayerWeights, LinearWeights, NormWeights
from monodistill.student.narrow import stream_basis
from monodistill.student.narrow.bases import kept_neurons, layer_bases
from monodistill.student.narrow.hooks import sample_statistics
from monodistill.student.narrow.parts import teacher_parts
from monodistill.student.narrow.reduce import (
    reduce_embedding,
    reduce_ffn_in,
    reduce_ffn_out,
    reduce_head_transform,
    reduce_layer,
    reduce_linear,
    reduce_norm,
)
from monodistill.student.narrow.statistics import (
    TransformStatistics,
    direction_moment,
    head_moments,
    weight_statistics,
)

from .conftest import build_tiny_teacher

NARROW_FAMILIES = [name for name in supported_families("masked") if family_of(name).layer_roles is not None]
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


def random_linear(out_features: int, in_features: int, generator: torch.Generator) -> LinearWeights:
    weight = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
    return LinearWeights(weight, torch.randn(out_features, generator=generator, dtype=torch.float64))


def random_layer(hidden: int, intermediate: int, generator: torch.Generator) -> LayerWeights:
    """A BERT-layout layer of random weights, as wide in its heads (heads * d) as the stream."""
    norms = {
        path: NormWeights(
            1 + 0.5 * torch.randn(hidden, generator=generator, dtype=torch.float64),
            torch.randn(hidden, generator=generator, dtype=torch.float64),
        )
        for path in ("attention.output.LayerNorm", "output.LayerNorm")
    }
    return LayerWeights(
        query=random_linear(hidden, hidden, generator),
        key=random_linear(hidden, hidden, generator),
        value=random_linear(hidden, hidden, generator),
        attention_output=random_linear(hidden, hidden, generator),
        ffn_in=random_linear(intermediate, hidden, generator),
        ffn_out=random_linear(hidden, intermediate, generator),
        norms=norms,
    )


def orthonormal(rows: int, columns: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(rows, columns, generator=generator, dtype=torch.float64)).Q


def assert_same_layer(actual: LayerWeights, expected: LayerWeights) -> None:
    for role in ROLES:
        torch.testing.assert_close(getattr(actual, role).weight, getattr(expected, role).weight, msg=role)
        torch.testing.assert_close(getattr(actual, role).bias, getattr(expected, role).bias, msg=role)
    assert actual.norms.keys() == expected.norms.keys()
    for path, norm in expected.norms.items():
        torch.testing.assert_close(actual.norms[path].weight, norm.weight)
        torch.testing.assert_close(actual.norms[path].bias, norm.bias)


@pytest.mark.parametrize("with_means", [False, True], ids=["data-free", "means"])
def test_a_layer_reduced_at_full_width_is_the_layer(with_means: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    hidden, heads, intermediate = 8, 2, 16
    layer = random_layer(hidden, intermediate, generator)
    rows = torch.randn(50, hidden, generator=generator, dtype=torch.float64)
    statistics = weight_statistics(rows, [layer], [], heads).layers[0]
    if with_means:  # every dropped mean is zero: nothing is dropped
        means = {role: torch.randn(getattr(layer, role).weight.shape[1], generator=generator) for role in ROLES}
        statistics = replace(statistics, mean_inputs={role: mean.double() for role, mean in means.items()})
    stream = stream_basis(rows.T @ rows / len(rows), hidden)
    bases = layer_bases(layer, statistics, stream, head_dim=hidden // heads, intermediate_size=intermediate)
    assert torch.equal(bases.stream, torch.eye(hidden, dtype=torch.float64))
    assert torch.equal(bases.neurons, torch.arange(intermediate))
    assert_same_layer(reduce_layer(layer, statistics, bases), layer)


def test_queries_and_keys_keep_their_scores_when_the_head_basis_spans_them() -> None:
    """Q K^T / sqrt(d) is unchanged per head when each head's queries and keys lie in a d_s-dimensional
    subspace (found from their moments) and the inputs in the stream basis's span: the student divides by
    sqrt(d_s), and its queries are scaled by sqrt(d_s / d_t) to match."""
    generator = torch.Generator().manual_seed(1)
    teacher_hidden, hidden, heads, teacher_head_dim, head_dim = 12, 8, 2, 6, 3
    layer = random_layer(teacher_hidden, 16, generator)
    stream = orthonormal(teacher_hidden, hidden, generator)  # P (12, 8)
    spans = [orthonormal(teacher_head_dim, head_dim, generator) for _ in range(heads)]  # U_h (6, 3)

    def in_head_spans(linear: LinearWeights) -> LinearWeights:  # each head's outputs U_h (A_h x + c_h)
        weight = torch.cat(
            [span @ torch.randn(head_dim, teacher_hidden, generator=generator).double() for span in spans]
        )
        bias = torch.cat([span @ torch.randn(head_dim, generator=generator).double() for span in spans])
        return LinearWeights(weight, bias)

    layer = replace(layer, query=in_head_spans(layer.query), key=in_head_spans(layer.key))
    inputs = torch.randn(40, hidden, generator=generator, dtype=torch.float64) @ stream.T  # (N, 12) in P's span
    statistics = weight_statistics(inputs, [layer], [], heads).layers[0]
    bases = layer_bases(layer, statistics, stream, head_dim, intermediate_size=16)
    reduced = reduce_layer(layer, statistics, bases)

    def scores(linear_q: LinearWeights, linear_k: LinearWeights, states: torch.Tensor, dim: int) -> torch.Tensor:
        queries = (states @ linear_q.weight.T + linear_q.bias).reshape(len(states), heads, dim).transpose(0, 1)
        keys = (states @ linear_k.weight.T + linear_k.bias).reshape(len(states), heads, dim).transpose(0, 1)
        return queries @ keys.transpose(1, 2) / dim**0.5  # (heads, N, N)

    expected = scores(layer.query, layer.key, inputs, teacher_head_dim)
    actual = scores(reduced.query, reduced.key, inputs @ stream, head_dim)
    torch.testing.assert_close(actual, expected)


def test_the_feed_forward_keeps_exactly_the_chosen_neurons() -> None:
    generator = torch.Generator().manual_seed(2)
    teacher_hidden, hidden, intermediate = 10, 6, 12
    ffn_in, ffn_out = (
        random_linear(intermediate, teacher_hidden, generator),
        random_linear(teacher_hidden, intermediate, generator),
    )
    stream = orthonormal(teacher_hidden, hidden, generator)
    # The most active neurons, as long as their output weights are not much smaller than the others'.
    activity = torch.full((intermediate,), 0.1, dtype=torch.float64)
    activity[[1, 4, 5, 9]] = 100.0
    kept = kept_neurons(activity, ffn_out, stream, count=4)
    assert kept.tolist() == [1, 4, 5, 9]
    states = torch.randn(20, hidden, generator=generator, dtype=torch.float64) @ stream.T  # in P's span
    reduced_in = reduce_ffn_in(ffn_in, kept, stream, mean=None)
    torch.testing.assert_close(
        (states @ stream) @ reduced_in.weight.T + reduced_in.bias, (states @ ffn_in.weight.T + ffn_in.bias)[:, kept]
    )
    # With the neurons' mean activation, the dropped ones' mean output moves into the bias: exact where they sit at it.
    mean = torch.randn(intermediate, generator=generator, dtype=torch.float64)
    activations = mean.repeat(20, 1)
    activations[:, kept] = torch.randn(20, 4, generator=generator, dtype=torch.float64)
    reduced_out = reduce_ffn_out(ffn_out, kept, stream, mean)
    torch.testing.assert_close(
        activations[:, kept] @ reduced_out.weight.T + reduced_out.bias,
        (activations @ ffn_out.weight.T + ffn_out.bias) @ stream,
    )


def test_a_map_that_reads_the_stream_keeps_its_mean_output_and_one_that_writes_it_writes_p_coordinates() -> None:
    generator = torch.Generator().manual_seed(3)
    stream = orthonormal(10, 6, generator)
    reads, writes = random_linear(5, 10, generator), random_linear(10, 5, generator)
    mean = torch.randn(10, generator=generator, dtype=torch.float64)  # partly outside P's span
    reduced = reduce_linear(reads, stream, mean)
    assert reduced.weight.shape == (5, 6)
    torch.testing.assert_close(reduced.weight @ (stream.T @ mean) + reduced.bias, reads.weight @ mean + reads.bias)
    written = reduce_linear(writes, stream, mean=None)
    torch.testing.assert_close(written.weight, stream.T @ writes.weight)
    torch.testing.assert_close(written.bias, stream.T @ writes.bias)
    embeddings = torch.randn(7, 10, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(reduce_embedding(embeddings, stream), embeddings @ stream)
    factorised = embeddings[:, :5]  # another width than the stream's: kept as it is
    assert reduce_embedding(factorised, stream) is factorised


def test_a_layernorm_whose_inputs_the_stream_basis_holds_is_reduced_exactly() -> None:
    """With unit gains, the student's LayerNorm of P^T x is P^T (LayerNorm(x)) when P holds every centred input x:
    the scale sqrt(H_t / H_s) makes up for normalising over fewer coordinates."""
    generator = torch.Generator().manual_seed(4)
    teacher_hidden, hidden = 12, 5
    ones = torch.ones(teacher_hidden, dtype=torch.float64)
    directions = orthonormal(teacher_hidden, hidden - 1, generator)
    directions = directions - torch.outer(ones, ones @ directions) / teacher_hidden  # centred
    inputs = (
        3
        + torch.randn(60, 1, generator=generator).double() * ones
        + torch.randn(60, hidden - 1, generator=generator).double() @ directions.T
    )
    stream = stream_basis(inputs.T @ inputs / len(inputs), hidden)
    norm = NormWeights(
        torch.ones(teacher_hidden, dtype=torch.float64), torch.randn(teacher_hidden, generator=generator).double()
    )
    reduced = reduce_norm(norm, direction_moment(inputs) / len(inputs), stream)
    expected = F.layer_norm(inputs, (teacher_hidden,), norm.weight, norm.bias, eps=1e-12) @ stream
    actual = F.layer_norm(inputs @ stream, (hidden,), reduced.weight, reduced.bias, eps=1e-12)
    torch.testing.assert_close(actual, expected)


def test_data_free_head_moments_are_those_of_the_embedding_rows() -> None:
    generator = torch.Generator().manual_seed(5)
    hidden, heads = 8, 2
    layer = random_layer(hidden, 16, generator)
    rows = torch.randn(30, hidden, generator=generator, dtype=torch.float64)
    statistics = weight_statistics(rows, [layer], ["embeddings.LayerNorm"], heads)
    torch.testing.assert_close(statistics.stream, rows.T @ rows / len(rows))
    for linear, moments in [(layer.query, statistics.layers[0].query), (layer.value, statistics.layers[0].context)]:
        torch.testing.assert_close(moments, head_moments(rows @ linear.weight.T + linear.bias, heads) / len(rows))
    torch.testing.assert_close(statistics.layers[0].activity, layer.ffn_in.weight.norm(dim=1))
    torch.testing.assert_close(statistics.norms["embeddings.LayerNorm"], direction_moment(rows) / len(rows))


def test_the_head_transform_with_an_identity_activation_is_projected_and_lifted_into_the_linear_range() -> None:
    generator = torch.Generator().manual_seed(6)
    stream = orthonormal(10, 6, generator)
    linear = random_linear(10, 10, generator)
    outputs = torch.randn(100, 10, generator=generator, dtype=torch.float64) * 3
    # g(a) = a: the affine fit has slope 1 and intercept 0, so only the lift changes the projected map.
    statistics = TransformStatistics(
        outputs.mean(0), outputs.T @ outputs / len(outputs), outputs.mean(0), (outputs * outputs).mean(0)
    )
    reduced = reduce_head_transform(linear, statistics, stream, mean=None)
    torch.testing.assert_close(reduced.weight, stream.T @ linear.weight @ stream)
    lift = reduced.bias - stream.T @ linear.bias
    torch.testing.assert_close(lift, lift[0].expand(6))  # one constant, which the LayerNorm after it subtracts
    # Six standard deviations below each coordinate's mean is at least 4, where GELU is the identity.
    student = outputs @ stream + lift
    assert (student.mean(0) - 6 * student.std(0, correction=0) >= 4 - 1e-9).all()
    unchanged = reduce_head_transform(linear, None, stream, mean=None)  # data-free: the activation stays
    torch.testing.assert_close(unchanged.bias, stream.T @ linear.bias)


@pytest.mark.parametrize("name", NARROW_FAMILIES)
def test_the_adapter_reads_a_layer_and_writes_it_back_under_its_names(name: str) -> None:
    teacher = build_tiny_teacher(name, 100, 0)
    family = family_of(teacher)
    layers, _ = teacher_parts(teacher, family_of(teacher), [1])
    weights = family.read_layer(layers[0].module)
    assert all(getattr(weights, role).weight.dtype == torch.float64 for role in ROLES)
    assert len(weights.norms) == 2
    state, teacher_state = family.layer_state(weights, layers[0].name), teacher.state_dict()
    assert {key for key in teacher_state if key.startswith(layers[0].name + ".")} <= state.keys()
    for key, value in state.items():
        assert torch.equal(value.float(), teacher_state[key]), key


def test_the_sample_hooks_read_the_teachers_activations_and_leave_no_hook() -> None:
    teacher = build_tiny_teacher("bert", 100, 0).eval()
    sample = torch.randint(5, 100, (6, 10), generator=torch.Generator().manual_seed(7))
    sample[0, 6:] = 0  # padding: not counted
    layers, parts = teacher_parts(teacher, family_of(teacher), [0, 3])
    statistics = sample_statistics(teacher, family_of(teacher), layers, parts, sample)
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in teacher.modules())
    with torch.inference_mode():
        states = teacher(input_ids=sample, attention_mask=(sample != 0).long(), output_hidden_states=True).hidden_states
    real = [state[sample != 0].double() for state in states]  # (N, H) per layer's input, then the last output
    stream = torch.cat(real)
    # The hooks sum in float32 (each batch's sum), the expectation in float64.
    torch.testing.assert_close(statistics.stream, stream.T @ stream / len(stream), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(statistics.layers[1].mean_inputs["query"], real[3].mean(0), rtol=1e-5, atol=1e-6)
    assert statistics.transforms.keys() == {"cls.predictions.transform.dense"}  # BERT's GELU is linearised
