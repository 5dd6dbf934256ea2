"""Property tests for the distillation losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from monodistill.config import LossConfig
from monodistill.losses import distillation_loss, hidden_cosine_loss, kl_divergence, masked_lm_loss

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
@given(seed=seeds, alpha_kl=st.floats(0, 5), alpha_mlm=st.floats(0.1, 5), alpha_cosine=st.floats(0, 2))
def test_total_is_the_weighted_sum_of_logged_parts(
    seed: int, alpha_kl: float, alpha_mlm: float, alpha_cosine: float
) -> None:
    config = LossConfig(alpha_kl=alpha_kl, alpha_mlm=alpha_mlm, alpha_cosine=alpha_cosine, temperature=3.0)
    student, teacher = logits(seed), logits(seed + 1)
    labels = torch.arange(6) % 11
    hidden_s, hidden_t = torch.randn(9, 4), torch.randn(9, 4)
    parts = distillation_loss(config, student, teacher, labels, hidden_s, hidden_t)
    zero = torch.tensor(0.0)
    expected = alpha_kl * parts.get("kl", zero) + alpha_mlm * parts["mlm"] + alpha_cosine * parts.get("cosine", zero)
    assert torch.isclose(parts["loss"], expected, atol=1e-5)
    assert ("cosine" in parts) == (alpha_cosine > 0) and ("kl" in parts) == (alpha_kl > 0)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, split=st.integers(min_value=0, max_value=6), alpha_cosine=st.floats(0, 2))
def test_micro_batch_parts_add_up_to_the_step_mean_over_every_token(seed: int, split: int, alpha_cosine: float) -> None:
    """Two micro-batches of unequal masked counts (or two ranks), each divided by the step's counts, sum to
    the loss of the whole step as one batch: accumulation weights tokens, not micro-batches."""
    config = LossConfig(alpha_cosine=alpha_cosine, temperature=2.0)
    student, teacher = logits(seed), logits(seed + 1)
    labels = torch.arange(6) % 11
    hidden_s, hidden_t = torch.randn(10, 4), torch.randn(10, 4)
    whole = distillation_loss(config, student, teacher, labels, hidden_s, hidden_t)
    halves = [
        distillation_loss(
            config,
            student[part],
            teacher[part],
            labels[part],
            hidden_s[cut],
            hidden_t[cut],
            step_targets=6,
            step_positions=10,
        )
        for part, cut in ((slice(0, split), slice(0, 5)), (slice(split, 6), slice(5, 10)))
    ]
    for name, value in whole.items():
        assert torch.isclose(halves[0][name] + halves[1][name], value, atol=1e-5), name
