"""Logits a chunk of scored positions at a time (``distill.logits``): the same sums and gradients as at once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monodistill.config import LossConfig
from monodistill.data.batches import MaskedBatch, NextToken
from monodistill.distill.logits import TeacherLogits, chunk_positions, chunk_slices, logit_term_sums
from monodistill.families import MaskedLMHead
from monodistill.losses import ModelSizes, build_terms

VOCAB, WIDTH, TEACHER_WIDTH = 40, 8, 12


def test_an_unset_chunk_holds_two_to_the_26_logits_of_one_model() -> None:
    assert chunk_positions(None, 119_547) == 561  # mBERT's vocabulary
    assert chunk_positions(None, 151_936) == 441  # Qwen2.5's
    assert chunk_positions(None, 32_000) == 2097
    assert chunk_positions(None, 10**9) == 64  # never fewer
    assert chunk_positions(7, 151_936) == 7  # train.logit_chunk, where set


def test_chunk_slices_cover_every_position_once() -> None:
    assert chunk_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert chunk_slices(4, 4) == [slice(0, 4)]
    assert chunk_slices(0, 4) == []


def sums_and_gradients(chunk: int, teacher_chunked: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)  # the head's initialisation
    generator = torch.Generator().manual_seed(0)
    scored = torch.randn(50, WIDTH, generator=generator).requires_grad_()  # (N, H) the student's states
    dense = nn.Linear(WIDTH, WIDTH)
    projection = nn.Linear(WIDTH, VOCAB)
    head = MaskedLMHead(dense, projection.weight, projection.bias)
    teacher_head = MaskedLMHead(lambda hidden: hidden, torch.randn(VOCAB, TEACHER_WIDTH, generator=generator), None)
    teacher_hidden = torch.randn(50, TEACHER_WIDTH, generator=generator)
    teacher = (
        TeacherLogits(None, teacher_hidden, teacher_head)
        if teacher_chunked
        else TeacherLogits(teacher_head.logits(teacher_hidden), None, None)
    )
    ids = torch.randint(0, VOCAB, (5, 11), generator=generator)
    _, positions = NextToken()(ids, generator)
    batch = MaskedBatch(ids, positions, NextToken().target_grid(ids)[positions], 50, 5)
    terms = [term for term in build_terms(LossConfig(), ModelSizes(2, 2, 2, 2)) if term.reads_logits]
    sums = logit_term_sums(terms, scored, head, teacher, batch, chunk)
    sum(sums.values()).backward()  # type: ignore[union-attr]
    assert scored.grad is not None and projection.weight.grad is not None
    return {name: value.detach() for name, value in sums.items()}, scored.grad, projection.weight.grad


@pytest.mark.parametrize("chunk", [1, 7, 49])
def test_chunked_sums_and_gradients_equal_those_of_one_piece(chunk: int) -> None:
    """The KL and cross-entropy sums, and the gradients of the student's states and head, over 50 next-token
    positions cut into chunks (the student's logits recomputed in the backward pass, the teacher's computed from
    its kept hidden states) equal those of one piece, to float rounding (the sums add in another order)."""
    whole, whole_states, whole_head = sums_and_gradients(chunk=50, teacher_chunked=False)
    sums, states, head = sums_and_gradients(chunk=chunk, teacher_chunked=True)
    assert set(sums) == {"kl", "mlm"}
    for name in whole:
        assert torch.allclose(sums[name], whole[name], rtol=1e-5), name
    assert torch.allclose(states, whole_states, rtol=1e-4, atol=1e-6)
    assert torch.allclose(head, whole_head, rtol=1e-4, atol=1e-6)


def test_next_token_scores_every_position_but_the_last_with_the_token_after_it() -> None:
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    model_input, positions = NextToken()(ids, torch.Generator())
    assert torch.equal(model_input, ids)  # nothing masked
    assert positions.tolist() == [[True, True, True, False]] * 2
    assert NextToken().target_grid(ids)[positions].tolist() == [6, 7, 8, 10, 11, 12]
