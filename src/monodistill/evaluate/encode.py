"""Examples to model inputs, truncated as asked, and predictions mapped back to words.

Texts are split into pieces without special tokens, cut to fit ``max_length`` together with the
model's special tokens, then given them. A pair shares the budget as transformers' ``longest_first``
does: the longer text gives up pieces first. A text that must shrink keeps its ``head`` (its first
pieces: what transformers' truncation keeps), its ``tail``, or ``head+tail``: the first quarter and
the last three quarters of its budget (128 + 382 of 510 pieces, which Sun et al. 2019 found best on
long news for classification).

Word tasks encode each sentence's words joined by single spaces, as one text, so every word gets the
pieces it has in running text: encoded alone, a word after the first would lose its word-start
marker under byte-level BPE (``Ġbata``: RoBERTa, GPT-2, ModernBERT) and SentencePiece without a dummy
prefix (``▁bata``: Gemma, mmBERT). transformers' ``is_split_into_words`` does not help: it encodes
words apart and adds the marker only where a tokenizer says ``add_prefix_space``. A piece belongs to
the word its character span starts in; one that starts in the space before a word (a lone ``▁`` or
``Ġ``) to that next word. A word is predicted at its first piece; a word with no piece (a zero-width
space, which mBERT's normaliser deletes; a word a piece across the space swallowed, which tokenizers
trained without splitting on whitespace can have) or whose pieces were all cut off gets the fill
label, and the words after it keep their own.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from typing import Any

from tokenizers import Encoding, Tokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError

TRUNCATIONS = ("head", "tail", "head+tail")
INPUT_FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
"""Model input names and the ``tokenizers.Encoding`` attribute each is read from."""


class Encoder:
    """Encodes batches of texts, text pairs or word lists for one tokenizer, length and truncation."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head") -> None:
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise MonodistillError(
                f"evaluation needs a fast tokenizer (backed by the tokenizers library), got {type(tokenizer).__name__}"
            )
        unknown = [name for name in tokenizer.model_input_names if name not in INPUT_FIELDS]
        if unknown:
            raise MonodistillError(f"the tokenizer asks for model inputs {unknown} that evaluation cannot build")
        # A copy: a wrapper call may leave padding or truncation set on the shared backend.
        self.backend = copy.deepcopy(backend)
        self.backend.no_truncation()
        self.backend.no_padding()
        self.input_names = list(tokenizer.model_input_names)
        self.special_tokens = {pair: tokenizer.num_special_tokens_to_add(pair=pair) for pair in (False, True)}
        self.max_length = max_length
        self.truncation = truncation

    def __call__(
        self, first: Sequence[Any], second: Sequence[str] | None = None, words: bool = False
    ) -> dict[str, list[Any]]:
        """Model inputs for a batch, with bookkeeping columns.

        Args:
            first: Texts, or (with ``words``) lists of words.
            second: The second text of each pair, if any.
            words: Whether ``first`` holds lists of words (token tasks).

        Returns:
            The tokenizer's model inputs per example; ``truncated`` (whether pieces were cut); with
            ``words`` also ``word_ids`` (None on special tokens), ``words_cut`` (words whose every piece
            was cut) and ``words_without_pieces`` (words the tokenizer turns into no piece at all).
        """
        if words and second is not None:
            raise ValueError("word lists come one per example, not in pairs")
        texts = [" ".join(example) for example in first] if words else list(first)
        firsts = self.backend.encode_batch(texts, add_special_tokens=False)
        seconds: list[Encoding | None] = [None] * len(firsts)
        if second is not None:
            seconds = list(self.backend.encode_batch(list(second), add_special_tokens=False))
        budget = self.max_length - self.special_tokens[second is not None]
        rows: dict[str, list[Any]] = {name: [] for name in [*self.input_names, "truncated"]}
        if words:
            rows.update(word_ids=[], words_cut=[], words_without_pieces=[])
        for encoding, pair, example in zip(firsts, seconds, first, strict=True):
            lengths = (len(encoding), None if pair is None else len(pair))
            kept = share_budget(*lengths, budget)
            word_ends = _word_ends(example) if words else []
            # The words with a piece, read before the cut changes the encoding in place.
            present = {word for word in piece_words(encoding, word_ends) if word is not None} if words else set()
            cut_first = cut(encoding, kept[0], self.truncation)
            cut_pair = None if pair is None or kept[1] is None else cut(pair, kept[1], self.truncation)
            merged = self.backend.post_process(cut_first, cut_pair, add_special_tokens=True)
            for name in self.input_names:
                rows[name].append(getattr(merged, INPUT_FIELDS[name]))
            rows["truncated"].append(kept != lengths)
            if words:
                word_ids = piece_words(merged, word_ends)
                rows["word_ids"].append(word_ids)
                rows["words_cut"].append(len(present - set(word_ids)))
                rows["words_without_pieces"].append(len(example) - len(present))
        return rows


def piece_words(encoding: Encoding, word_ends: Sequence[int]) -> list[int | None]:
    """Each piece's word, None on special tokens: the first word that ends after the piece starts.

    ``word_ends`` are the words' end offsets in the text they were joined into, in order. A piece that
    starts in the space before a word goes to that word; one past the last word's end, to the last word.
    """
    last = len(word_ends) - 1
    return [
        None if sequence is None else min(bisect.bisect_right(word_ends, start), last)
        for (start, _), sequence in zip(encoding.offsets, encoding.sequence_ids, strict=True)
    ]


def _word_ends(words: Sequence[str]) -> list[int]:
    """Where each word ends in ``" ".join(words)``."""
    ends, position = [], -1
    for word in words:
        position += 1 + len(word)
        ends.append(position)
    return ends


def share_budget(first: int, second: int | None, budget: int) -> tuple[int, int | None]:
    """Pieces each text keeps within ``budget``: the longer text gives up pieces first (``longest_first``).

    The same arithmetic as the tokenizers library's, so ``head`` truncation matches transformers'.
    """
    if second is None:
        return min(first, budget), None
    if first + second <= budget:
        return first, second
    short = min(first, second)
    long_kept = short if short > budget else max(short, budget - short)
    short_kept = short
    if short + long_kept > budget:
        short_kept, long_kept = budget // 2, budget // 2 + budget % 2
    return (short_kept, long_kept) if first <= second else (long_kept, short_kept)


def cut(encoding: Encoding, length: int, truncation: str) -> Encoding:
    """``encoding`` cut to ``length`` pieces, keeping its head, its tail, or both (it is changed in place)."""
    if len(encoding) <= length:
        return encoding
    if truncation == "head":
        encoding.truncate(length, direction="right")
        return encoding
    if truncation == "tail":
        encoding.truncate(length, direction="left")
        return encoding
    head, tail = copy.deepcopy(encoding), encoding
    head_length = round(length / 4)
    head.truncate(head_length, direction="right")
    tail.truncate(length - head_length, direction="left")
    return Encoding.merge([head, tail], growing_offsets=False)


def align_labels(word_ids: Sequence[int | None], tags: Sequence[int]) -> list[int]:
    """One label per piece: the word's tag on its first piece, -100 on the rest and on specials."""
    labels = []
    seen: set[int] = set()
    for word_id in word_ids:
        # A set, not "differs from the previous piece": head+tail may put a word's pieces on both sides of the seam.
        labels.append(tags[word_id] if word_id is not None and word_id not in seen else -100)
        if word_id is not None:
            seen.add(word_id)
    return labels


def word_predictions(
    piece_predictions: Sequence[int], word_ids: Sequence[int | None], num_words: int, fill: int
) -> list[int]:
    """Each word's prediction: the one at its first piece, ``fill`` for a word with no piece left."""
    predicted = [fill] * num_words
    seen: set[int] = set()
    for position, word_id in enumerate(word_ids):
        if word_id is not None and word_id not in seen:
            predicted[word_id] = int(piece_predictions[position])
            seen.add(word_id)
    return predicted
