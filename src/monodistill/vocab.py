"""Trim the teacher's vocabulary to the target language.

Count the teacher tokenizer's tokens on the corpus; keep the special tokens and the
single-character tokens of every character the corpus uses, then the most frequent tokens up to a
size or coverage target. The student's tokenizer is the teacher's restricted to the kept ids, in
teacher-id order (``vocab_export``); ``id_map.json`` maps student ids to teacher ids.

With no size limit every token the teacher produced on the corpus is kept, and the trimmed
tokenizer segments that corpus exactly as the teacher does: WordPiece's greedy longest match finds
the same longest token (nothing longer survives that the full vocabulary lacked), and Unigram's
best path is still available and nothing better was added. With a limit, a word whose tokens were
dropped is spelled out in shorter tokens, down to single characters, rather than becoming UNK;
``vocab_stats.json`` reports how often segmentation changes on held-out text.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError
from monodistill.vocab_export import (
    ID_MAP_FILE,
    backend_tokenizer,
    build_trimmed_tokenizer,
    id_map_tensor,
    id_to_token,
    load_trimmed_vocab,
    remap_special_ids,
    required_ids,
    save_trimmed_teacher,
    tokenizer_json,
)

__all__ = [
    "SegmentationStats",
    "TrimmedVocab",
    "build_trimmed_tokenizer",
    "compare_segmentation",
    "count_tokens",
    "id_map_tensor",
    "load_trimmed_vocab",
    "remap_special_ids",
    "run_vocab",
    "select_ids",
    "single_character_ids",
    "trim_vocabulary",
]

STATS_FILE = "vocab_stats.json"
TEACHER_DIR = "teacher"
MAX_UNK_RATE = 0.2
"""A corpus with more unknown tokens than this is in a script or language the teacher does not cover."""
HELD_OUT_FRACTION = 0.02
CORPUS_CHECK_DOCUMENTS = 5_000
"""Counted documents re-tokenised with the trimmed tokenizer to confirm segmentation is unchanged."""
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


def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> np.ndarray:
    """(V_teacher,) occurrences of every token id in ``texts``, without special tokens.

    Uses the fast backend's batch encoder directly: it is what ``tokenizer(texts)`` runs, minus
    offsets and the Python-side conversion, which dominate the cost on large corpora.

    Raises:
        MonodistillError: as soon as the first batch shows an UNK-dominated corpus.
    """
    backend = backend_tokenizer(tokenizer)
    counts = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for index, batch in enumerate(_batches(texts)):
        counts += _count_batch(backend, batch, len(counts))
        if index == 0:
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
    """Count the teacher's tokens on ``texts`` and choose which to keep.

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
    _check_room_for_special(max_size, len(special))
    counts = count_tokens(tokenizer, texts)
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
    kept_ids = select_ids(counts, special | singles, max_size, coverage, min_count)
    return TrimmedVocab(
        kept_ids=kept_ids,
        counts=counts,
        total_tokens=total,
        coverage=float(counts[kept_ids].sum() / total),
        unk_rate=unk_rate,
        num_special=len(special),
        num_single_character=len(singles),
    )


def _check_room_for_special(max_size: int | None, num_special: int) -> None:
    if max_size is not None and max_size < num_special:
        raise MonodistillError(
            f"vocab.max_size={max_size} is below the {num_special} special tokens the tokenizer needs; "
            f"use at least {num_special} plus one per character of the corpus"
        )


def compare_segmentation(
    teacher_tokenizer: PreTrainedTokenizerBase,
    trimmed_tokenizer: PreTrainedTokenizerBase,
    id_map: Sequence[int],
    texts: Sequence[str],
) -> SegmentationStats:
    """How the trimmed tokenizer splits ``texts`` compared with the teacher's."""
    teacher, trimmed = backend_tokenizer(teacher_tokenizer), backend_tokenizer(trimmed_tokenizer)
    to_teacher = np.asarray(id_map, dtype=np.int64)
    teacher_tokens = trimmed_tokens = teacher_unk = trimmed_unk = identical = 0
    for batch in _batches(texts):
        full_batch = teacher.encode_batch_fast(batch, add_special_tokens=False)
        small_batch = trimmed.encode_batch_fast(batch, add_special_tokens=False)
        for full, small in zip(full_batch, small_batch, strict=True):
            teacher_tokens += len(full.ids)
            trimmed_tokens += len(small.ids)
            teacher_unk += full.ids.count(teacher_tokenizer.unk_token_id)
            trimmed_unk += small.ids.count(trimmed_tokenizer.unk_token_id)
            identical += to_teacher[small.ids].tolist() == full.ids
    return SegmentationStats(
        documents=len(texts),
        teacher_tokens=teacher_tokens,
        trimmed_tokens=trimmed_tokens,
        teacher_unk_rate=teacher_unk / max(teacher_tokens, 1),
        trimmed_unk_rate=trimmed_unk / max(trimmed_tokens, 1),
        identical_documents=identical / max(len(texts), 1),
    )


def run_vocab(config: DistillConfig, output_dir: Path) -> Path:
    """``monodistill vocab``: count the teacher's tokens on the corpus, trim, and write the result.

    Writes, atomically (a temporary sibling folder renamed into place): the trimmed tokenizer,
    ``id_map.json`` (``teacher``, ``teacher_vocab_size``, ``id_map``: student id -> teacher id),
    ``vocab_stats.json`` and, with ``vocab.export_teacher``, ``teacher/``: the teacher restricted to
    the kept rows. The last 2% of documents (at least one) are held out from counting to measure
    the trimmed tokenizer on text it was not built from.

    Returns:
        ``output_dir``.

    Raises:
        MonodistillError: before any counting, for an output folder holding something else, a
            tokenizer that cannot be trimmed or a teacher that cannot be exported; after counting,
            for an UNK-dominated corpus or a ``max_size`` below the special and single-character tokens.
    """
    from monodistill.data.corpus import load_corpus
    from monodistill.teacher import load_tokenizer

    _check_output_dir(output_dir)
    tokenizer = load_tokenizer(config.teacher.name_or_path, config.teacher.revision)
    # A tokenizer kind we cannot trim, or no room for its special tokens, fails before the corpus is read.
    _check_room_for_special(config.vocab.max_size, len(required_ids(tokenizer, tokenizer_json(tokenizer))))
    if config.vocab.export_teacher:
        _check_exportable(config)
    corpus = load_corpus(config.data, config.train.seed)
    held_out = min(max(1, round(len(corpus) * HELD_OUT_FRACTION)), len(corpus) - 1)
    counted = corpus.select(range(len(corpus) - held_out))
    settings = config.vocab
    trimmed = trim_vocabulary(tokenizer, _texts(counted), settings.max_size, settings.coverage, settings.min_count)
    student = build_trimmed_tokenizer(tokenizer, trimmed.kept_ids)
    stats = _vocab_stats(config, tokenizer, student, trimmed, corpus, held_out)
    id_map = {
        "teacher": config.teacher.name_or_path,
        "teacher_revision": config.teacher.revision,
        "teacher_vocab_size": len(tokenizer),
        "id_map": trimmed.kept_ids,
    }
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.atomic_dir(output_dir) as staging:
        student.save_pretrained(staging)
        (staging / ID_MAP_FILE).write_text(json.dumps(id_map) + "\n")
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
        if settings.export_teacher:
            save_trimmed_teacher(config.teacher, trimmed.kept_ids, student, staging / TEACHER_DIR)
    print(_summary(stats))
    return output_dir


def _check_output_dir(output_dir: Path) -> None:
    # The folder is replaced as a whole: never let that delete something that is not ours.
    ours = (output_dir / ID_MAP_FILE).is_file()
    if output_dir.exists() and not ours and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise MonodistillError(
            f"output {output_dir} exists and is not a trimmed vocabulary folder; choose a new or empty folder"
        )


def _check_exportable(config: DistillConfig) -> None:
    from monodistill.teacher import SUPPORTED_FAMILIES, load_model_config

    family = load_model_config(config.teacher.name_or_path, config.teacher.revision).model_type
    if family not in SUPPORTED_FAMILIES:
        raise MonodistillError(
            f"vocab.export_teacher: teacher {config.teacher.name_or_path} is a {family!r} model; "
            f"trimmed teachers can be exported for {SUPPORTED_FAMILIES}"
        )


def _texts(dataset: datasets.Dataset) -> Iterator[str]:
    # Batched reads keep memory flat on corpora larger than RAM-friendly lists.
    for batch in dataset.iter(batch_size=BATCH_SIZE):
        yield from batch["text"]


def _vocab_stats(
    config: DistillConfig,
    tokenizer: PreTrainedTokenizerBase,
    student: PreTrainedTokenizerFast,
    trimmed: TrimmedVocab,
    corpus: datasets.Dataset,
    held_out: int,
) -> dict[str, Any]:
    counted = len(corpus) - held_out
    sample = np.unique(np.linspace(0, counted - 1, num=min(counted, CORPUS_CHECK_DOCUMENTS)).round().astype(int))
    corpus_check = compare_segmentation(tokenizer, student, trimmed.kept_ids, corpus.select(sample)["text"])
    held_out_texts = corpus.select(range(counted, len(corpus)))["text"] if held_out else []
    held = compare_segmentation(tokenizer, student, trimmed.kept_ids, held_out_texts) if held_out else None
    return {
        "teacher": config.teacher.name_or_path,
        "teacher_vocab_size": len(tokenizer),
        "kept_size": len(trimmed.kept_ids),
        "minimum_size": trimmed.minimum_size,
        "special_tokens": trimmed.num_special,
        "single_character_tokens": trimmed.num_single_character,
        "settings": {
            "max_size": config.vocab.max_size,
            "coverage": config.vocab.coverage,
            "min_count": config.vocab.min_count,
        },
        "counted_documents": counted,
        "corpus_tokens": trimmed.total_tokens,
        "coverage": trimmed.coverage,
        "teacher_unk_rate": trimmed.unk_rate,
        "held_out_unk_rate": held.trimmed_unk_rate if held else None,
        "held_out": asdict(held) if held else None,
        "corpus_check": asdict(corpus_check),
    }


def _summary(stats: dict[str, Any]) -> str:
    lines = [
        f"kept {stats['kept_size']:,} of {stats['teacher_vocab_size']:,} teacher tokens "
        f"({stats['kept_size'] / stats['teacher_vocab_size']:.1%}); they cover {stats['coverage']:.2%} of the "
        f"{stats['corpus_tokens']:,} tokens of {stats['counted_documents']:,} documents "
        f"(teacher UNK rate {stats['teacher_unk_rate']:.3%})",
        f"segmented as the teacher does: {stats['corpus_check']['identical_documents']:.1%} of "
        f"{stats['corpus_check']['documents']:,} counted documents",
    ]
    held = stats["held_out"]
    if held:
        lines.append(
            f"held out {held['documents']:,} documents: UNK rate {held['trimmed_unk_rate']:.3%} "
            f"(teacher {held['teacher_unk_rate']:.3%}), {held['identical_documents']:.1%} segmented as the "
            f"teacher does, {held['trimmed_tokens'] / max(held['teacher_tokens'], 1):.3f}x its tokens"
        )
    return "\n".join(lines)
