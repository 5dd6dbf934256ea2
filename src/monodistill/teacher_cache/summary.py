"""Sparse summaries of the teacher's distribution at n positions (``losses.sparse`` reads them).

- ``sample_summary``: S tokens drawn with replacement from each position's distribution, kept as the distinct
  tokens with their counts (random-sampling KD: the counts over S estimate the distribution without bias);
- ``topk_summary``: the k most probable tokens and the probability of all the others;
- ``validation_summary``: the top k at T = 1 and the true next (or masked) token, so that validation's teacher
  loss and agreement are exact and its KL is read against the top k with the rest spread evenly.

Each returns the entries of every position in position order, tokens ascending within a position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Summary:
    """n positions' entries, E in all."""

    lengths: torch.Tensor
    """(n,) entries per position."""
    ids: torch.Tensor
    """(E,) tokens."""
    probs: torch.Tensor
    """(E,) the teacher's probability of each."""
    counts: torch.Tensor | None = None
    """(E,) draws of each (``sample``)."""
    rest: torch.Tensor | None = None
    """(n,) the probability of every token without an entry."""


def sample_summary(probs: torch.Tensor, samples: int, generator: torch.Generator) -> Summary:
    """(n, V) probabilities -> the distinct tokens of ``samples`` draws per position, with their counts."""
    draws = torch.multinomial(probs, samples, replacement=True, generator=generator).sort(-1).values  # (n, S)
    first = torch.ones_like(draws, dtype=torch.bool)
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]  # the first of each run of one token
    ids = draws[first]  # (E,) position by position, ascending within one
    counts = torch.bincount(first.flatten().cumsum(0) - 1, minlength=ids.numel())  # the length of each run
    lengths = first.sum(-1)
    rows = torch.repeat_interleave(torch.arange(probs.shape[0], device=probs.device), lengths)
    return Summary(lengths, ids, probs[rows, ids], counts)


def topk_summary(probs: torch.Tensor, k: int) -> Summary:
    """(n, V) probabilities -> the ``k`` most probable tokens of each position and the others' probability."""
    count, vocab = probs.shape
    k = min(k, vocab)
    top, ids = probs.topk(k, dim=-1)  # (n, k)
    ids, order = ids.sort(-1)
    top = top.gather(1, order)
    # The others' probability summed as they are (not 1 - the top's sum, which rounds): 0 where k = V.
    rest = probs.scatter(1, ids, 0.0).sum(-1)
    lengths = torch.full((count,), k, dtype=torch.long, device=probs.device)
    return Summary(lengths, ids.flatten(), top.flatten(), rest=rest)


def validation_summary(probs: torch.Tensor, targets: torch.Tensor, k: int) -> Summary:
    """(n, V) probabilities at T = 1 and (n,) true tokens -> the top ``k`` of each position and its true token (where
    not among them), and the others' probability."""
    vocab = probs.shape[1]
    top, ids = probs.topk(min(k, vocab), dim=-1)  # (n, k)
    missing = (ids != targets.unsqueeze(1)).all(1, keepdim=True)  # (n, 1)
    ids = torch.cat([ids, targets.unsqueeze(1)], 1)
    top = torch.cat([top, probs.gather(1, targets.unsqueeze(1))], 1)
    keep = torch.cat([torch.ones_like(ids[:, :-1], dtype=torch.bool), missing], 1)  # (n, k + 1)
    # Ascending tokens within a position; an entry not kept sorts last and is dropped with its mask.
    ids = torch.where(keep, ids, vocab)
    ids, order = ids.sort(-1)
    top, keep = top.gather(1, order), keep.gather(1, order)
    return Summary(keep.sum(-1), ids[keep], top[keep], rest=_rest_of(probs, ids, keep))


def _rest_of(probs: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(n,) the probability of the tokens that are no kept entry of their position."""
    kept = torch.zeros_like(probs, dtype=torch.bool)
    rows = torch.arange(probs.shape[0], device=probs.device).unsqueeze(1).expand_as(ids)
    kept[rows[keep], ids[keep]] = True
    return probs.masked_fill(kept, 0.0).sum(-1)
