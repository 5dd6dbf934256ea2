"""Count the teacher's tokens on the corpus, choose which to keep, and compare segmentations.

Kept whatever the corpus: the special tokens and the single-character tokens of every character the
corpus uses; then the most frequent tokens up to a size or coverage target. Counting reads each
document once and holds one (V_teacher,) count vector, so counts of parts of a corpus add up.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError
from monodistill.progress import Progress
from monodistill.vocab.tokenizer import (
    backend_tokenizer,
    id_to_token,
    merge_closure,
    merge_parents,
    required_ids,
    tokenizer_json,
)

MAX_UNK_RATE = 0.2
"""A corpus with more unknown tokens than this is in a script or language the teacher does not cover."""
BATCH_SIZE = 1_000


@dataclass
class TrimmedVocab:
    """Which teacher tokens to keep, and how much of the corpus they cover."""

    kept_ids: list[int]
    """Teacher ids of the kept tokens, ascending: student id i is teacher id kept_ids[i]."""
    counts: np.ndarray
    """(V_teacher,) occurrences of each teacher token in the counted text."""
    total_tokens: int
    """Token occurrences counted (no special tokens added)."""
    coverage: float
    """Share of counted occurrences whose token is kept."""
    unk_rate: float
    """Share of counted occurrences that the teacher tokenizer turned into its unknown token."""
    num_special: int
    """Tokens kept whatever the corpus: special, unknown and post-processor tokens."""
    num_single_character: int
    """Single-character tokens kept for the characters the corpus uses."""

    @property
    def minimum_size(self) -> int:
        """The smallest ``max_size`` this corpus allows: special plus single-character tokens."""
        return self.num_special + self.num_single_character


@dataclass
class SegmentationStats:
    """The trimmed tokenizer against the teacher's on the same documents (no special tokens)."""

    documents: int
    teacher_tokens: int
    trimmed_tokens: int
    teacher_unk_rate: float
    trimmed_unk_rate: float
    identical_documents: float
    """Share of documents the trimmed tokenizer splits exactly as the teacher (through the id map)."""


def count_tokens(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    check_first_batch: bool = True,
    progress: Progress | None = None,
) -> np.ndarray:
    """(V_teacher,) occurrences of every token id in ``texts``, without special tokens.

    Uses the fast backend's batch encoder directly: it is what ``tokenizer(texts)`` runs, minus
    offsets and the Python-side conversion, which dominate the cost on large corpora. Counts add
    up, so a corpus counted in parts is the sum of its parts' counts.

    Args:
        tokenizer: The teacher's fast tokenizer.
        texts: Documents, read once.
        check_first_batch: Fail early on an UNK-dominated first batch; off for a part that does not
            start the corpus, whose first batch says nothing about the whole.
        progress: A bar to advance by the documents counted.

    Raises:
        MonodistillError: as soon as the first batch shows an UNK-dominated corpus.
    """
    backend = backend_tokenizer(tokenizer)
    counts = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for index, batch in enumerate(_batches(texts)):
        counts += _count_batch(backend, batch, len(counts))
        if progress is not None:
            progress.update(len(batch))
        if index == 0 and check_first_batch:
            _check_unk_rate(counts, tokenizer.unk_token_id)  # fail on the first batch, not after hours
    return counts


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, BATCH_SIZE)):
        yield batch


def _count_batch(backend: Tokenizer, batch: list[str], size: int) -> np.ndarray:
    encodings = backend.encode_batch_fast(batch, add_special_tokens=False)
    flat = np.fromiter(itertools.chain.from_iterable(encoding.ids for encoding in encodings), dtype=np.int64)
    return np.bincount(flat, minlength=size)


def _check_unk_rate(counts: np.ndarray, unk_id: int | None) -> float:
    total = int(counts.sum())
    rate = float(counts[unk_id] / total) if unk_id is not None and total else 0.0
    if rate > MAX_UNK_RATE:
        raise MonodistillError(
            f"{rate:.0%} of the corpus tokens are unknown to the teacher tokenizer: the corpus is UNK-dominated, "
            "in a script or language this teacher does not cover; choose a teacher that covers it"
        )
    return rate


def single_character_ids(data: dict[str, Any]) -> dict[str, list[int]]:
    """Each character -> the ids of its single-character tokens in a serialised tokenizer.

    WordPiece has a word-initial and a continuation form (``x``, ``##x``), SentencePiece Unigram a
    bare and a word-initial form (``x``, ``▁x``); ``▁`` alone counts as the character ``▁``.
    """
    prefix = data["model"].get("continuing_subword_prefix") or "##"
    forms: dict[str, list[int]] = {}
    for token_id, token in id_to_token(data).items():
        if data["model"]["type"] == "WordPiece":
            bare = token[len(prefix) :] if token.startswith(prefix) and len(token) > len(prefix) else token
        else:
            bare = token[1:] if token.startswith("▁") and len(token) > 1 else token
        if len(bare) == 1:
            forms.setdefault(bare, []).append(token_id)
    return forms


def _characters(data: dict[str, Any], token_ids: Iterable[int]) -> set[str]:
    """The characters of the given tokens, continuation prefixes removed."""
    tokens = id_to_token(data)
    prefix = ""
    if data["model"]["type"] == "WordPiece":
        prefix = data["model"].get("continuing_subword_prefix") or "##"
    characters: set[str] = set()
    for token_id in token_ids:
        token = tokens[token_id]
        characters.update(token[len(prefix) :] if prefix and token.startswith(prefix) else token)
    return characters


def select_ids(
    counts: np.ndarray, forced: set[int], max_size: int | None, coverage: float | None, min_count: int
) -> list[int]:
    """Forced ids plus the most frequent others, up to ``max_size`` tokens and/or ``coverage``.

    Args:
        counts: (V,) occurrences per token id.
        forced: Ids kept whatever their count (special and single-character tokens).
        max_size: Keep at most this many ids in all; must be at least ``len(forced)``.
        coverage: Stop adding once kept ids cover this share of all occurrences.
        min_count: Ids seen fewer times are not added (forced ids are kept anyway).

    Returns:
        Kept ids, ascending.
    """
    forced_ids = sorted(forced)
    if max_size is not None and max_size < len(forced_ids):
        raise ValueError(f"max_size {max_size} is below the {len(forced_ids)} forced ids")
    candidates = counts >= max(min_count, 1)
    candidates[forced_ids] = False
    ids = np.flatnonzero(candidates)
    # Most frequent first; ties broken by teacher id so the choice is deterministic.
    order = ids[np.lexsort((ids, -counts[ids]))]
    take = len(order)
    if max_size is not None:
        take = min(take, max_size - len(forced_ids))
    if coverage is not None:
        needed = coverage * int(counts.sum())
        forced_covered = int(counts[forced_ids].sum())
        covered = forced_covered + np.cumsum(counts[order])  # (len(order),) occurrences covered so far
        reached = 0 if forced_covered >= needed else int(np.searchsorted(covered, needed, side="left")) + 1
        take = min(take, reached)
    return sorted(forced | {int(i) for i in order[:take]})


def trim_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    max_size: int | None,
    coverage: float | None,
    min_count: int,
) -> TrimmedVocab:
    """Count the teacher's tokens on ``texts`` and choose which to keep (``select_vocabulary``).

    Raises:
        MonodistillError: as ``select_vocabulary``; a ``max_size`` below the special tokens before
            ``texts`` is read.
    """
    check_room_for_special(max_size, len(required_ids(tokenizer, tokenizer_json(tokenizer))))
    return select_vocabulary(tokenizer, count_tokens(tokenizer, texts), max_size, coverage, min_count)


def select_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    counts: np.ndarray,
    max_size: int | None,
    coverage: float | None,
    min_count: int,
) -> TrimmedVocab:
    """Choose which teacher tokens to keep, given their (V_teacher,) ``counts`` on the corpus.

    Always kept: special tokens, and the single-character tokens (every form) of each character
    that occurs in a token seen on the corpus, so that any word made of those characters can still
    be segmented without UNK when its longer tokens are dropped. Then the most frequent tokens with
    at least ``min_count`` occurrences, up to ``max_size`` tokens in all and/or until ``coverage``
    of the occurrences are covered; with neither, every token seen at least ``min_count`` times.

    Raises:
        MonodistillError: for a tokenizer kind that cannot be trimmed, a corpus with no tokens or
            dominated by the unknown token (wrong script or language for this teacher), or a
            ``max_size`` below the special plus single-character tokens.
    """
    data = tokenizer_json(tokenizer)
    special = required_ids(tokenizer, data)
    check_room_for_special(max_size, len(special))
    total = int(counts.sum())
    if total == 0:
        raise MonodistillError("the corpus gives no tokens to count")
    unk_rate = _check_unk_rate(counts, tokenizer.unk_token_id)
    seen = set(np.flatnonzero(counts).tolist()) - special
    forms = single_character_ids(data)
    singles = {i for char in _characters(data, seen) for i in forms.get(char, [])} - special
    minimum = len(special) + len(singles)
    if max_size is not None and max_size < minimum:
        raise MonodistillError(
            f"vocab.max_size={max_size} is below the {len(special)} special and {len(singles)} single-character "
            f"tokens this corpus needs: use at least {minimum}"
        )
    kept_ids = _closed_selection(data, counts, special | singles, max_size, coverage, min_count)
    return TrimmedVocab(
        kept_ids=kept_ids,
        counts=counts,
        total_tokens=total,
        coverage=float(counts[kept_ids].sum() / total),
        unk_rate=unk_rate,
        num_special=len(special),
        num_single_character=len(singles),
    )


def _closed_selection(
    data: dict[str, Any],
    counts: np.ndarray,
    forced: set[int],
    max_size: int | None,
    coverage: float | None,
    min_count: int,
) -> list[int]:
    """``select_ids``, closed under a BPE tokenizer's merges (``merge_closure``), within ``max_size`` in all.

    A kept BPE token needs every token its merges go through; those come on top of the selection, so
    with ``max_size`` the selection is the largest one whose closure fits (closures grow with the
    selection, so a bisection finds it).

    Raises:
        MonodistillError: a ``max_size`` below the closure of the forced tokens.
    """
    parents = merge_parents(data)
    if not parents:  # WordPiece, Unigram: nothing is built from other tokens
        return select_ids(counts, forced, max_size, coverage, min_count)

    def closed(size: int | None) -> list[int]:
        return sorted(merge_closure(data, select_ids(counts, forced, size, coverage, min_count), parents))

    kept = closed(max_size)
    if max_size is None or len(kept) <= max_size:
        return kept
    minimum = closed(len(forced))
    if len(minimum) > max_size:
        raise MonodistillError(
            f"vocab.max_size={max_size} is below the {len(minimum)} special, single-character and byte tokens "
            f"(and the tokens their merges go through) this corpus needs: use at least {len(minimum)}"
        )
    low, high = len(forced), max_size  # closed(low) fits, closed(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(closed(middle)) <= max_size else (low, middle)
    return closed(low)


def check_room_for_special(max_size: int | None, num_special: int) -> None:
    if max_size is not None and max_size < num_special:
        raise MonodistillError(
            f"vocab.max_size={max_size} is below the {num_special} special tokens the tokenizer needs; "
            f"use at least {num_special} plus one per character of the corpus"
        )


def compare_segmentation(
    teacher_tokenizer: PreTrainedTokenizerBase,
    trimmed_tokenizer: PreTrainedTokenizerBase,
    id_map: Sequence[int],
    texts: Iterable[str],
) -> SegmentationStats:
    """How the trimmed tokenizer splits ``texts`` compared with the teacher's."""
    teacher, trimmed = backend_tokenizer(teacher_tokenizer), backend_tokenizer(trimmed_tokenizer)
    to_teacher = np.asarray(id_map, dtype=np.int64)
    documents = teacher_tokens = trimmed_tokens = teacher_unk = trimmed_unk = identical = 0
    for batch in _batches(texts):
        documents += len(batch)
        full_batch = teacher.encode_batch_fast(batch, add_special_tokens=False)
        small_batch = trimmed.encode_batch_fast(batch, add_special_tokens=False)
        for full, small in zip(full_batch, small_batch, strict=True):
            teacher_tokens += len(full.ids)
            trimmed_tokens += len(small.ids)
            teacher_unk += full.ids.count(teacher_tokenizer.unk_token_id)
            trimmed_unk += small.ids.count(trimmed_tokenizer.unk_token_id)
            identical += to_teacher[small.ids].tolist() == full.ids
    return SegmentationStats(
        documents=documents,
        teacher_tokens=teacher_tokens,
        trimmed_tokens=trimmed_tokens,
        teacher_unk_rate=teacher_unk / max(teacher_tokens, 1),
        trimmed_unk_rate=trimmed_unk / max(trimmed_tokens, 1),
        identical_documents=identical / max(documents, 1),
    )
