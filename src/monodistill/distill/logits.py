"""Vocabulary logits at the scored positions, a chunk of positions at a time.

The causal objective scores every position: each model's logits over a 150k-256k vocabulary at B T
positions would be the largest tensors of the step, twice. Up to ``train.logit_chunk`` positions (unset: as many
as hold 2^26 logits, ``chunk_positions``) the logits are computed at once (the masked objective's 15% of
positions, usually); beyond that each chunk's
logits of both models are computed, reduced to every logit term's sum and dropped, and the student's are
recomputed chunk by chunk in the backward pass (activation checkpointing), so that the memory the logits
take grows with the chunk, not with the batch. Liger-Kernel's fused linear losses and torchtune's chunked
cross-entropy do the same for one model; here both models' logits and every logit term share a chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch.utils.checkpoint import checkpoint

from monodistill.data.batches import MaskedBatch
from monodistill.families import MaskedLMHead
from monodistill.losses import LossTerm, ModelOutputs, SparseTargets

if TYPE_CHECKING:
    from monodistill.distill.teacher_pass import TeacherOutputs


LOGIT_BUDGET = 2**26
"""Logit values of one model computed at once when ``train.logit_chunk`` is unset (256 MiB in float32)."""


def chunk_positions(setting: int | None, vocab_size: int) -> int:
    """Scored positions whose logits are computed at once: ``train.logit_chunk``, else what ``LOGIT_BUDGET`` holds
    at this vocabulary (at least 64)."""
    return setting or max(64, LOGIT_BUDGET // max(1, vocab_size))


def chunk_slices(count: int, size: int) -> list[slice]:
    """``range(count)`` cut into consecutive slices of at most ``size``."""
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


class TeacherLogits:
    """The teacher at a batch's scored positions: its logits computed already (``logits``), or from the hidden
    states kept there (``scored``, (N, H)) one chunk at a time, or a teacher cache's sparse summary (``sparse``)."""

    def __init__(
        self,
        logits: torch.Tensor | None,
        scored: torch.Tensor | None,
        head: MaskedLMHead | None,
        sparse: SparseTargets | None = None,
        vocab_size: int = 0,
    ) -> None:
        self.logits, self.scored, self.head, self.sparse, self.vocab_size = logits, scored, head, sparse, vocab_size

    def at(self, piece: slice) -> torch.Tensor:
        """(n, V) the logits at scored positions ``piece``; from a summary, the log-probabilities it describes
        (``SparseTargets.dense_log_probs``: what validation reads)."""
        if self.sparse is not None:
            return self.sparse.at(piece).dense_log_probs(self.vocab_size)
        if self.logits is not None:
            return self.logits[piece]
        assert self.scored is not None and self.head is not None
        with torch.no_grad():  # frozen: nothing of it is trained
            return self.head.logits(self.scored[piece])

    def piece(self, piece: slice) -> TeacherLogits:
        """The teacher at scored positions ``piece``, its logits computed (or its summary cut) now."""
        if self.sparse is not None:
            return TeacherLogits(None, None, None, self.sparse.at(piece), self.vocab_size)
        return TeacherLogits(self.at(piece), None, None)

    def outputs(self, piece: slice = slice(None)) -> ModelOutputs:
        """What the logit terms read of the teacher at scored positions ``piece``."""
        if self.sparse is not None:
            return ModelOutputs(torch.zeros(0), sparse=self.sparse.at(piece))
        return ModelOutputs(self.at(piece))


def logit_term_sums(
    terms: Sequence[LossTerm],
    scored: torch.Tensor,
    head: MaskedLMHead,
    teacher: TeacherLogits | None,
    batch: MaskedBatch,
    chunk: int,
) -> dict[str, torch.Tensor]:
    """Each logit-reading term's sum over the batch's scored positions.

    Args:
        terms: The terms that read logits (``LossTerm.reads_logits``).
        scored: (N, H) the student's hidden states at the scored positions, with their graph.
        head: The student's LM head.
        teacher: The teacher's logits there (None where no term reads them).
        batch: The micro-batch (its ``targets`` are cut with the chunks).
        chunk: At most this many positions' logits at once; up to it, computed as one piece and not recomputed.
    """
    if not terms:
        return {}
    count = scored.shape[0]
    pieces = chunk_slices(count, chunk) if count else [slice(0, 0)]
    if len(pieces) == 1:
        return dict(zip((term.name for term in terms), _piece_sums(terms, scored, head, teacher, batch), strict=True))
    total: torch.Tensor | None = None
    for piece in pieces:
        piece_batch = replace(batch, targets=batch.targets[piece])
        # The teacher's chunk is computed once, here, and kept (no gradient: one (N, V) tensor over the chunks); the
        # student's logits are not kept but recomputed in the backward pass, one chunk at a time.
        fixed = teacher.piece(piece) if teacher is not None else None
        sums = checkpoint(
            lambda states, part=piece_batch, known=fixed: torch.stack(_piece_sums(terms, states, head, known, part)),
            scored[piece],
            use_reentrant=False,
        )
        total = sums if total is None else total + sums
    assert total is not None
    return {term.name: total[index] for index, term in enumerate(terms)}


def term_sums(
    terms: Sequence[LossTerm],
    scored: torch.Tensor,
    head: MaskedLMHead,
    student: ModelOutputs,
    teacher: TeacherOutputs | None,
    batch: MaskedBatch,
    chunk: int,
) -> dict[str, torch.Tensor]:
    """Every term's sum over the micro-batch: the logit terms' from ``scored`` (N, H) a chunk at a time, the others'
    from ``student``'s hidden states and projections."""
    logits = teacher.scored_logits() if teacher is not None else None
    sums = logit_term_sums([term for term in terms if term.reads_logits], scored, head, logits, batch, chunk)
    read = teacher if teacher is not None else ModelOutputs(scored.new_zeros(0))  # an MLM-only objective
    return sums | {term.name: term.sum(student, read, batch) for term in terms if not term.reads_logits}


def _piece_sums(
    terms: Sequence[LossTerm],
    scored: torch.Tensor,
    head: MaskedLMHead,
    teacher: TeacherLogits | None,
    batch: MaskedBatch,
    piece: slice = slice(None),
) -> list[torch.Tensor]:
    student = ModelOutputs(head.logits(scored))  # (n, V)
    read = teacher.outputs(piece) if teacher is not None else ModelOutputs(student.logits.new_zeros(0))
    return [term.sum(student, read, batch) for term in terms]
