"""The teacher's distribution as a sparse summary (a teacher cache's), and the KL term read from it.

At each of n scored positions the summary holds a few entries (token id, the teacher's probability of it at the
loss's temperature, and the entry's weight), and the teacher's probability of every other token as one mass:

- ``sample`` (random-sampling KD): the distinct tokens of S draws from the teacher's distribution, each weighted
  by its count over S, nothing left over. E[count / S] is the teacher's probability, so the cross-entropy to the
  weights is an unbiased estimate of the cross-entropy to the teacher, whose gradient is the KL's;
- ``topk``: the k most probable tokens, each weighted by its probability, and the mass of the rest: the KL
  between the two distributions coarsened to k + 1 outcomes (the k tokens, everything else), exact at k = V.

In both, the value is ``sum_j w_j (log p_j - log q_j) (+ r (log r - log q_rest))``, times T^2: for ``sample`` an
unbiased estimate of KL(teacher_T || student_T) itself (the stored p_j make the logged value a KL, not a
cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from monodistill.losses.functions import Reduction, _reduce


@dataclass
class SparseTargets:
    """The teacher's distribution at n scored positions, E entries in all, in position order."""

    lengths: torch.Tensor
    """(n,) int64: each position's entries."""
    ids: torch.Tensor
    """(E,) int64: each entry's token in the student's vocabulary."""
    probs: torch.Tensor
    """(E,) float32: the teacher's probability of each entry's token (at the loss's temperature)."""
    weights: torch.Tensor
    """(E,) float32: each entry's share of the position's target (its count over the draws; top-k: ``probs``)."""
    rest: torch.Tensor | None = None
    """(n,) float32: the teacher's probability of every token without an entry (top-k), or None (nothing left)."""

    def __post_init__(self) -> None:
        self.offsets = F.pad(self.lengths.cumsum(0), (1, 0))  # (n + 1,)

    @property
    def positions(self) -> int:
        return int(self.lengths.shape[0])

    def rows(self) -> torch.Tensor:
        """(E,) the position of each entry."""
        return torch.repeat_interleave(torch.arange(self.positions, device=self.ids.device), self.lengths)

    def at(self, piece: slice) -> SparseTargets:
        """The positions ``piece`` (a step-1 slice)."""
        start, stop, _ = piece.indices(self.positions)
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        return SparseTargets(
            self.lengths[start:stop],
            self.ids[first:last],
            self.probs[first:last],
            self.weights[first:last],
            self.rest[start:stop] if self.rest is not None else None,
        )

    def to(self, device: torch.device) -> SparseTargets:
        return SparseTargets(
            self.lengths.to(device),
            self.ids.to(device),
            self.probs.to(device),
            self.weights.to(device),
            self.rest.to(device) if self.rest is not None else None,
        )

    def dense_log_probs(self, vocab_size: int) -> torch.Tensor:
        """(n, V) log-probabilities that keep the entries' own and spread the rest evenly over the other tokens:
        the distribution the summary describes, where something must be said of every token (validation)."""
        others = (vocab_size - self.lengths).clamp_min(1).float()
        rest = self.rest if self.rest is not None else torch.zeros_like(others)
        dense = (rest / others).log().unsqueeze(1).repeat(1, vocab_size)  # (n, V); -inf where nothing is left
        dense[self.rows(), self.ids] = self.probs.log()
        return dense


def sparse_kl_divergence(
    student_logits: torch.Tensor, targets: SparseTargets, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2 read from a sparse summary of the teacher (see the module docstring).

    Args:
        student_logits: (n, V) at the summary's positions.
        targets: The teacher's summary there.
        temperature: The T the summary was made at.
        reduction: ``mean`` over the n positions, or ``sum``.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (n, V)
    rows = targets.rows()
    # xlogy: an entry whose stored probability rounded to 0 adds nothing, where 0 * log 0 would be nan.
    entries = torch.xlogy(targets.weights, targets.probs) - targets.weights * log_q[rows, targets.ids]  # (E,)
    per_position = torch.zeros(targets.positions, device=log_q.device).index_add(0, rows, entries)
    if targets.rest is not None:
        left = (targets.rest > 0).nonzero().squeeze(1)  # positions with mass outside their entries
        if left.numel():
            # log q_rest as the log-sum-exp of the other tokens: exact, where log(1 - sum q_j) loses it near 1.
            outside = log_q[left].clone()
            kept = torch.isin(rows, left)
            place = torch.searchsorted(left, rows[kept])
            outside[place, targets.ids[kept]] = float("-inf")
            rest = targets.rest[left]
            per_position = per_position.index_add(0, left, torch.xlogy(rest, rest) - rest * outside.logsumexp(-1))
    return _reduce(per_position, reduction) * temperature**2
