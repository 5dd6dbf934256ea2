"""Masking: rates, the 80/10/10 split, special tokens, determinism, whole words."""

from __future__ import annotations

import torch

from monodistill.data.masking import IGNORE_INDEX, mask_tokens, step_generator

MASK_ID, VOCAB = 4, 1000


def batch(rows: int = 64, length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(10, VOCAB, (rows, length), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = 2, 3
    return ids, (ids == 2) | (ids == 3)


def test_selection_rate_and_80_10_10_split() -> None:
    ids, special = batch()
    masked, labels = mask_tokens(ids, special, MASK_ID, VOCAB, 0.15, step_generator(1, 0, 0, ids.device))
    selected = labels != IGNORE_INDEX
    rate = selected.float().sum() / (~special).sum()
    assert 0.14 < rate < 0.16
    assert torch.equal(labels[selected], ids[selected])
    as_mask = (masked[selected] == MASK_ID).float().mean()
    kept = (masked[selected] == ids[selected]).float().mean()
    assert 0.77 < as_mask < 0.83
    assert 0.08 < kept < 0.12  # 10% kept, plus random draws that hit the same id (~0.01%)
    assert torch.equal(masked[~selected], ids[~selected])


def test_special_tokens_are_never_selected() -> None:
    ids, special = batch()
    _, labels = mask_tokens(ids, special, MASK_ID, VOCAB, 0.9, step_generator(2, 0, 0, ids.device))
    assert (labels[special] == IGNORE_INDEX).all()


def test_masks_are_a_function_of_seed_step_and_stream() -> None:
    ids, special = batch()
    draw = lambda seed, step, stream: mask_tokens(
        ids, special, MASK_ID, VOCAB, 0.15, step_generator(seed, step, stream, ids.device)
    )
    assert torch.equal(draw(1, 5, 0)[1], draw(1, 5, 0)[1])
    assert not torch.equal(draw(1, 5, 0)[1], draw(1, 6, 0)[1])
    assert not torch.equal(draw(1, 5, 0)[1], draw(1, 5, 1)[1])


def test_whole_word_masking_selects_all_pieces_of_a_word() -> None:
    ids, special = batch(rows=32, length=60)
    word_starts = torch.zeros_like(ids, dtype=torch.bool)
    word_starts[:, ::3] = True  # words of three pieces
    _, labels = mask_tokens(ids, special, MASK_ID, VOCAB, 0.3, step_generator(3, 0, 0, ids.device), word_starts)
    selected = (labels != IGNORE_INDEX)[:, 3:57].reshape(32, -1, 3)
    assert selected.any()
    assert (selected.all(-1) == selected.any(-1)).all()


def test_always_selects_at_least_one_position() -> None:
    ids, special = batch(rows=1, length=6)
    _, labels = mask_tokens(ids, special, MASK_ID, VOCAB, 1e-9, step_generator(0, 0, 0, ids.device))
    assert (labels != IGNORE_INDEX).sum() == 1
