"""Masked batches as a pure function of (seed, step): what the teacher and every student see.

The objective says which positions of a block are scored and what each predicts: ``Masking`` (the masked
objective: BERT's 80/10/10 masks, each position predicting its own original token) or ``NextToken`` (the
causal objective: every position but the block's last predicting the token after it, nothing masked).

An optimizer step takes the next ``global_batch`` blocks of a seeded per-epoch permutation, masks
them with a generator seeded by (seed, step), and gives each rank its share as
``gradient_accumulation_steps`` micro-batches. The data order and the masks therefore depend on the
global batch alone, not on how it is split: 2 processes x 4 blocks and 1 process x 2 micro-batches
x 4 blocks and 1 process x 8 blocks train on the same blocks with the same masks. Each micro-batch
also carries the seed of its dropout, from (seed, step, its place in the global batch): 2 processes
x 4 blocks and 1 process x 2 micro-batches x 4 blocks draw the same dropout too (a split into
micro-batches of another size cuts the step into other places, and draws other dropout). A run
resumed from any step draws what the uninterrupted run would have drawn, and one resumed on another
process count that keeps the global batch and ``train.batch_size`` continues exactly.

Validation blocks are masked once per block (generator seeded by the block's index), so every
student of an experiment, whatever its seed, batch or process count, is scored on the same masks.
With static masks (``data.static_masks``, and always when distilling from a teacher cache) training
blocks are masked so too, once per epoch: a block's masks are a function of (epoch, block), whatever
the seed, batch and order, which is what lets a cache of the teacher's outputs at them serve every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import TrainConfig
from monodistill.data.blocks import Blocks
from monodistill.data.masking import IGNORE_INDEX, mask_tokens, step_generator, stream_seed
from monodistill.errors import MonodistillError

VALIDATION_SEED = 0
"""Seeds the validation masks: fixed, so that students of any seed are scored alike."""
DROPOUT_STREAM = 2
"""The first of the random streams (``masking.stream_seed``) of the dropout of a step: one per micro-batch place."""
STATIC_STREAM = 1
"""The random stream of static masks, seeded by -(epoch + 1): apart from the steps' (seed >= 0) and validation's (0)."""


@dataclass
class MaskedBatch:
    """One micro-batch of masked blocks; B blocks of T tokens, N of them masked."""

    input_ids: torch.Tensor
    """(B, T) ids with the masked positions replaced (80% mask token, 10% random, 10% kept)."""
    positions: torch.Tensor
    """(B, T) bool: the positions to predict."""
    targets: torch.Tensor
    """(N,) what each of those positions predicts: its original id (masked), the next id (causal)."""
    step_targets: int
    """Masked positions in the whole optimizer step: every micro-batch of every rank."""
    step_blocks: int
    """Blocks in the whole optimizer step."""
    dropout_seed: int | None = None
    """Seeds the student's dropout on this micro-batch, from (seed, step, its place in the global batch): the
    same draws on whichever rank and micro-batch its blocks fall. None (validation): no dropout is drawn."""
    block_ids: torch.Tensor | None = None
    """(B,) each row's block: its index in ``split`` (what a teacher cache is read by)."""
    epoch: int = 0
    """The epoch the blocks are masked for."""
    split: str = "train"
    """``train`` or ``validation``."""


@dataclass
class Masking:
    """BERT's masking: ``probability`` of the tokens (or whole words), 80/10/10."""

    special_ids: torch.Tensor
    """Ids that are never selected (CLS, SEP, padding...)."""
    mask_token_id: int
    vocab_size: int
    """Random replacements are drawn from ``[0, vocab_size)``."""
    probability: float

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, rows: int, probability: float) -> Masking:
        """The masking of a tokenizer's blocks for a model of ``rows`` embedding rows (the replacements'
        range): what distillation, its validation and ``inspect`` all use."""
        special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        return cls(special_ids, int(tokenizer.mask_token_id), rows, probability)

    def __call__(
        self, input_ids: torch.Tensor, generator: torch.Generator, word_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> masked ids and (B, T) bool positions to predict."""
        special = torch.isin(input_ids, self.special_ids.to(input_ids.device))
        masked_ids, labels = mask_tokens(
            input_ids, special, self.mask_token_id, self.vocab_size, self.probability, generator, word_starts
        )
        return masked_ids, labels != IGNORE_INDEX

    def target_grid(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) what each position predicts where it is scored: its own original id."""
        return input_ids


@dataclass
class NextToken:
    """The causal objective: every position of a block but the last predicts the token after it; nothing is
    masked or drawn. Packed blocks hold no padding (``data.blocks``), so every such position is scored."""

    def __call__(
        self, input_ids: torch.Tensor, generator: torch.Generator, word_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> the same ids and (B, T) bool positions that predict a next token (all but the last)."""
        positions = torch.ones_like(input_ids, dtype=torch.bool)
        positions[:, -1] = False
        return input_ids, positions

    def target_grid(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) what each position predicts: the id after it (the last column is never scored)."""
        return input_ids.roll(-1, dims=1)


Objective = Masking | NextToken
"""What a ``BatchStream`` scores: masked tokens, or every next token."""


def scored_only(positions: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) positions, less those whose target is no assistant token of a chat corpus (``scored``: the next
    token's flag, the causal objective's target); unchanged for plain text."""
    if "scored" not in rows:
        return positions
    return positions & rows["scored"].to(positions.device).roll(-1, dims=1).bool()


class BatchStream:
    """This rank's masked micro-batches of every optimizer step, and its share of the validation blocks."""

    def __init__(
        self,
        blocks: Blocks,
        masking: Objective,
        train: TrainConfig,
        rank: int = 0,
        processes: int = 1,
        device: torch.device | None = None,
        static_masks: bool = False,
    ) -> None:
        self.blocks = blocks
        self.masking = masking
        self.static_masks = static_masks
        """Mask each training block once per epoch (by its own generator) rather than the step as a whole."""
        self.seed = train.seed
        self.batch_size = train.batch_size
        self.accumulation = train.gradient_accumulation_steps
        self.rank, self.processes = rank, processes
        self.device = device or torch.device("cpu")
        self.global_batch = self.batch_size * self.accumulation * processes
        """Blocks per optimizer step, over every micro-batch and rank."""
        self.block_length = len(blocks.train[0]["input_ids"])
        """Tokens per block."""
        self.steps_per_epoch = len(blocks.train) // self.global_batch
        if self.steps_per_epoch == 0:
            raise MonodistillError(
                f"only {len(blocks.train)} training blocks, fewer than one optimizer step "
                f"(train.batch_size x gradient_accumulation_steps x processes = {self.global_batch}); "
                "lower train.batch_size or data.max_seq_length, or add text"
            )
        self._order: tuple[int, torch.Tensor] | None = None
        self._validation: list[MaskedBatch] | None = None

    def total_steps(self, train: TrainConfig) -> int:
        """The run's length in optimizer steps: ``max_steps``, else ``epochs`` over the training blocks."""
        return train.max_steps or math.ceil(train.epochs * self.steps_per_epoch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Every training block's index in the order of an epoch: a seeded permutation."""
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 10_007 + epoch)
            self._order = (epoch, torch.randperm(len(self.blocks.train), generator=generator))
        return self._order[1]

    def step(self, step: int) -> list[MaskedBatch]:
        """This rank's micro-batches of optimizer step ``step`` (0-based), masked as the whole step is."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        indices = self.epoch_order(epoch)[offset * self.global_batch : (offset + 1) * self.global_batch]
        rows = self.blocks.train[indices.tolist()]
        input_ids = rows["input_ids"].to(self.device)  # (G, T)
        word_starts = rows["word_starts"].to(self.device).bool() if "word_starts" in rows else None
        if self.static_masks:
            masked_ids, positions = self._mask_each(input_ids, word_starts, indices.tolist(), epoch)
        else:
            generator = step_generator(self.seed, step, 0, self.device)
            masked_ids, positions = self.masking(input_ids, generator, word_starts)
        positions = scored_only(positions, rows)
        targets = self.masking.target_grid(input_ids)  # (G, T)
        step_targets = int(positions.sum())
        batches = []
        for micro in range(self.accumulation):
            chunk = micro * self.processes + self.rank
            rows_slice = slice(chunk * self.batch_size, (chunk + 1) * self.batch_size)
            batches.append(
                MaskedBatch(
                    masked_ids[rows_slice],
                    positions[rows_slice],
                    targets[rows_slice][positions[rows_slice]],
                    step_targets,
                    self.global_batch,
                    stream_seed(self.seed, step, DROPOUT_STREAM + chunk),
                    indices[rows_slice],
                    epoch,
                )
            )
        return batches

    def blocks_of(self, split: str, indices: list[int], epoch: int = 0) -> MaskedBatch:
        """Blocks ``indices`` of ``split`` as one batch, masked as every run masks them: a validation block by its
        own seed, a training block as epoch ``epoch`` does with static masks (what a teacher cache is built on)."""
        rows = (self.blocks.train if split == "train" else self.blocks.validation)[indices]
        input_ids = rows["input_ids"].to(self.device)
        word_starts = rows["word_starts"].to(self.device).bool() if "word_starts" in rows else None
        masked_ids, positions = self._mask_each(input_ids, word_starts, indices, epoch if split == "train" else None)
        positions = scored_only(positions, rows)
        targets = self.masking.target_grid(input_ids)[positions]
        count = int(positions.sum())
        return MaskedBatch(
            masked_ids, positions, targets, count, len(indices), None, torch.tensor(indices), epoch, split
        )

    def _mask_each(
        self, input_ids: torch.Tensor, word_starts: torch.Tensor | None, blocks: list[int], epoch: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each row by its block's own generator: training epoch ``epoch``'s static masks, or (None) the
        validation masks."""
        masked, positions = [], []
        for row, block in enumerate(blocks):
            generator = (
                step_generator(VALIDATION_SEED, block, 1, self.device)
                if epoch is None
                else step_generator(-(epoch + 1), block, STATIC_STREAM, self.device)
            )
            starts = word_starts[row : row + 1] if word_starts is not None else None
            ids, where = self.masking(input_ids[row : row + 1], generator, starts)
            masked.append(ids)
            positions.append(where)
        return torch.cat(masked), torch.cat(positions)

    def validation(self) -> list[MaskedBatch]:
        """This rank's validation blocks in batches, each block masked by its own seeded generator (once)."""
        if self._validation is None:
            mine = list(range(self.rank, len(self.blocks.validation), self.processes))
            self._validation = [
                self.blocks_of("validation", mine[start : start + self.batch_size])
                for start in range(0, len(mine), self.batch_size)
            ]
        return self._validation
