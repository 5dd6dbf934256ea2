"""Property tests for the distillation losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from monodistill.config import LossConfig
from monodistill.losses import (
    ModelSizes,
    attention_mse,
    build_terms,
    hidden_cosine_loss,
    hidden_mse,
    jensen_shannon_divergence,
    kl_divergence,
    logit_mse,
    masked_lm_loss,
    relation_loss,
    reverse_kl_divergence,
)

temperatures = st.floats(min_value=0.5, max_value=8.0)
seeds = st.integers(min_value=0, max_value=10_000)


def logits(seed: int, rows: int = 6, vocab: int = 11, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


@settings(max_examples=40, deadline=None)
@given(seed=seeds, temperature=temperatures)
def test_kl_is_zero_when_student_equals_teacher(seed: int, temperature: float) -> None:
    same = logits(seed)
    assert abs(kl_divergence(same, same.clone(), temperature).item()) < 1e-5


@settings(max_examples=40, deadline=None)
@given(seed=seeds, temperature=temperatures)
def test_kl_matches_the_definition_and_is_non_negative(seed: int, temperature: float) -> None:
    student, teacher = logits(seed), logits(seed + 1)
    p = F.softmax(teacher / temperature, dim=-1)
    q = F.softmax(student / temperature, dim=-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean() * temperature**2
    value = kl_divergence(student, teacher, temperature)
    assert value.item() >= 0
    assert math.isclose(value.item(), expected.item(), rel_tol=1e-4, abs_tol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, temperature=temperatures)
def test_kl_gradient_is_softmax_difference_scaled_by_t(seed: int, temperature: float) -> None:
    # d/dz [T^2 KL(p_T || softmax(z/T))] = T (softmax(z/T) - p_T), averaged over rows.
    student, teacher = logits(seed).requires_grad_(), logits(seed + 7)
    kl_divergence(student, teacher, temperature).backward()
    expected = temperature * (F.softmax(student / temperature, -1) - F.softmax(teacher / temperature, -1)) / 6
    assert torch.allclose(student.grad, expected.detach(), atol=1e-5)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_kl_is_invariant_to_adding_a_constant_per_row(seed: int) -> None:
    student, teacher = logits(seed), logits(seed + 3)
    shift = torch.randn(6, 1) * 10
    assert torch.isclose(
        kl_divergence(student + shift, teacher - shift, 2.0), kl_divergence(student, teacher, 2.0), atol=1e-4
    )


def test_mlm_loss_is_cross_entropy_and_near_zero_for_confident_right_answers() -> None:
    labels = torch.tensor([1, 4, 2])
    confident = F.one_hot(labels, 5).float() * 50
    assert masked_lm_loss(confident, labels).item() < 1e-6
    uniform = torch.zeros(3, 5)
    assert math.isclose(masked_lm_loss(uniform, labels).item(), math.log(5), rel_tol=1e-6)


def test_cosine_loss_zero_for_parallel_and_two_for_opposite() -> None:
    hidden = torch.randn(4, 8)
    assert hidden_cosine_loss(hidden, 3 * hidden).item() < 1e-6
    assert math.isclose(hidden_cosine_loss(hidden, -hidden).item(), 2.0, rel_tol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, temperature=temperatures)
def test_each_sum_is_its_mean_times_what_it_is_a_mean_over(seed: int, temperature: float) -> None:
    """A loss term sums its values over a micro-batch and divides by the whole step's count (``losses.terms``):
    each sum is the mean over the same positions or blocks times their number."""
    student, teacher = logits(seed), logits(seed + 1)  # 6 positions
    labels = torch.arange(6) % 11
    states = [torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(seed + n)) for n in range(6)]  # 3 blocks
    pairs = [
        (lambda reduction: kl_divergence(student, teacher, temperature, reduction), 6),
        (lambda reduction: logit_mse(student, teacher, reduction), 6),
        (lambda reduction: masked_lm_loss(student, labels, reduction), 6),
        (lambda reduction: hidden_cosine_loss(states[0].flatten(0, 1), states[1].flatten(0, 1), reduction), 15),
        (lambda reduction: hidden_mse(states[0], states[1], reduction), 3),
        (lambda reduction: relation_loss(states[:3], states[3:], 2, reduction), 3),
        (lambda reduction: attention_mse(states[:3], states[3:], 4, reduction), 3),
    ]
    for loss, count in pairs:
        assert torch.isclose(loss("sum"), loss("mean") * count, rtol=1e-5, atol=1e-6)


def test_reverse_kl_and_jsd_are_divergences_of_the_right_direction_and_bound() -> None:
    """Reverse KL is the KL with the two models swapped; JSD is symmetric, zero only at equal distributions and at
    most ln 2 (times T^2); both are zero when the student equals the teacher."""
    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(6, 11, generator=generator), torch.randn(6, 11, generator=generator)
    for temperature in (1.0, 2.0):
        assert torch.isclose(
            reverse_kl_divergence(student, teacher, temperature), kl_divergence(teacher, student, temperature)
        )
        jsd = jensen_shannon_divergence(student, teacher, temperature)
        assert torch.isclose(jsd, jensen_shannon_divergence(teacher, student, temperature))
        assert 0 < jsd < math.log(2) * temperature**2
        assert float(jensen_shannon_divergence(teacher, teacher, temperature)) == pytest.approx(0, abs=1e-6)
        assert float(reverse_kl_divergence(teacher, teacher, temperature)) == pytest.approx(0, abs=1e-6)
    first, second = torch.tensor([[0.0, -1e4]]), torch.tensor([[-1e4, 0.0]])  # no overlap: ln 2
    assert float(jensen_shannon_divergence(first, second, 1.0)) == pytest.approx(math.log(2), rel=1e-4)


@pytest.mark.parametrize("logit_loss", ["reverse_kl", "jsd"])
def test_each_logit_loss_is_one_term_logged_under_its_name(logit_loss: str) -> None:
    terms = build_terms(LossConfig(logit_loss=logit_loss), ModelSizes(2, 2, 2, 2))
    assert (
        [term.name for term in terms] == [logit_loss, "mlm"] == list(LossConfig(logit_loss=logit_loss).trained_parts())
    )
