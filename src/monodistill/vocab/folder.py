"""The trimmed-vocabulary folder: built by ``run_vocab`` (``monodistill vocab``), read by ``load_trimmed_vocab``.

The folder holds the trimmed tokenizer, ``id_map.json`` (student id -> teacher id),
``vocab_stats.json`` and, on request, the trimmed teacher. Loading checks it against the teacher
that will be distilled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError
from monodistill.families import REGISTRY, supported_families
from monodistill.progress import progress_bar
from monodistill.vocab.count import (
    BATCH_SIZE,
    TrimmedVocab,
    check_room_for_special,
    compare_segmentation,
    count_tokens,
    select_vocabulary,
)
from monodistill.vocab.teacher import save_trimmed_teacher
from monodistill.vocab.tokenizer import backend_tokenizer, build_trimmed_tokenizer, required_ids, tokenizer_json

ID_MAP_FILE = "id_map.json"
STATS_FILE = "vocab_stats.json"
TEACHER_DIR = "teacher"

HELD_OUT_FRACTION = 0.02
"""Share of documents (the last ones) measured against a vocabulary built without them."""


CORPUS_CHECK_DOCUMENTS = 5_000
"""Documents re-tokenised with the trimmed tokenizer to confirm segmentation is unchanged."""


def run_vocab(config: DistillConfig, output_dir: Path) -> Path:
    """``monodistill vocab``: count the teacher's tokens on the corpus, trim, and write the result.

    Writes, atomically (a temporary sibling folder renamed into place): the trimmed tokenizer,
    ``id_map.json`` (``teacher``, ``teacher_vocab_size``, ``id_map``: student id -> teacher id),
    ``vocab_stats.json`` and, with ``vocab.export_teacher``, ``teacher/``: the teacher restricted to
    the kept rows. The vocabulary is built from every document. The last 2% of documents (at least
    one, unless the corpus has only one) are counted apart: a second vocabulary, built with the same
    settings from the other documents, measures how the trimming does on text it was not built from.

    Returns:
        ``output_dir``.

    Raises:
        MonodistillError: before any counting, for an output folder holding something else, a
            tokenizer that is not the teacher's own (``teacher.load_tokenizer``: missing files, a
            size that does not fit the embedding), one that cannot be trimmed or a teacher that
            cannot be exported; after counting,
            for an UNK-dominated corpus or a ``max_size`` below the special and single-character tokens.
    """
    from monodistill.data.corpus import load_corpus
    from monodistill.teacher import load_tokenizer

    _check_output_dir(output_dir)
    tokenizer = load_tokenizer(config.teacher.name_or_path, config.teacher.revision)
    # A tokenizer kind we cannot trim, or no room for its special tokens, fails before the corpus is read.
    check_room_for_special(config.vocab.max_size, len(required_ids(tokenizer, tokenizer_json(tokenizer))))
    if config.vocab.export_teacher:
        _check_exportable(config)
    corpus = load_corpus(config.data)
    held_out = min(max(1, round(len(corpus) * HELD_OUT_FRACTION)), len(corpus) - 1)
    split = len(corpus) - held_out
    # One pass over the corpus, counted in two parts that add up to the whole: the final vocabulary
    # is chosen from every document, the held-out measurement from the first part alone.
    with progress_bar(len(corpus), "counting tokens", "doc", leave=False) as bar:
        first_counts = count_tokens(tokenizer, document_texts(corpus.select(range(split))), progress=bar)
        last_documents = corpus.select(range(split, len(corpus)))
        held_out_counts = count_tokens(tokenizer, document_texts(last_documents), check_first_batch=False, progress=bar)
    settings = config.vocab

    def choose(counts: np.ndarray) -> TrimmedVocab:
        return select_vocabulary(tokenizer, counts, settings.max_size, settings.coverage, settings.min_count)

    trimmed = choose(first_counts + held_out_counts)
    student = build_trimmed_tokenizer(tokenizer, trimmed.kept_ids)
    held: dict[str, Any] | None = None
    if held_out and first_counts.any():
        held = _held_out_stats(tokenizer, choose(first_counts), held_out_counts, corpus, split)
    stats = _vocab_stats(config, tokenizer, student, trimmed, corpus, held)
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
    from monodistill.teacher import load_model_config

    family = load_model_config(config.teacher.name_or_path, config.teacher.revision).model_type
    if family not in REGISTRY:
        raise MonodistillError(
            f"vocab.export_teacher: teacher {config.teacher.name_or_path} is a {family!r} model; "
            f"trimmed teachers can be exported for {supported_families()}"
        )


def document_texts(dataset: datasets.Dataset) -> Iterator[str]:
    # Batched reads keep memory flat on corpora larger than RAM-friendly lists.
    for batch in dataset.iter(batch_size=BATCH_SIZE):
        yield from batch["text"]


def _held_out_stats(
    tokenizer: PreTrainedTokenizerBase,
    without: TrimmedVocab,
    held_out_counts: np.ndarray,
    corpus: datasets.Dataset,
    split: int,
) -> dict[str, Any]:
    """Documents ``split:`` against ``without``, a vocabulary chosen from the documents before them.

    Adds to the segmentation statistics the size of that vocabulary and its ``coverage``: the share
    of the held-out documents' teacher tokens that it keeps.
    """
    trimmed = build_trimmed_tokenizer(tokenizer, without.kept_ids)
    held = compare_segmentation(
        tokenizer, trimmed, without.kept_ids, document_texts(corpus.select(range(split, len(corpus))))
    )
    coverage = float(held_out_counts[without.kept_ids].sum() / max(int(held_out_counts.sum()), 1))
    return {**asdict(held), "kept_size": len(without.kept_ids), "coverage": coverage}


def _vocab_stats(
    config: DistillConfig,
    tokenizer: PreTrainedTokenizerBase,
    student: PreTrainedTokenizerFast,
    trimmed: TrimmedVocab,
    corpus: datasets.Dataset,
    held: dict[str, Any] | None,
) -> dict[str, Any]:
    # An evenly spaced sample of every document: the final vocabulary was built from all of them.
    size = len(corpus)
    sample = np.unique(np.linspace(0, size - 1, num=min(size, CORPUS_CHECK_DOCUMENTS)).round().astype(int))
    corpus_check = compare_segmentation(tokenizer, student, trimmed.kept_ids, corpus.select(sample)["text"])
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
        "counted_documents": size,
        "corpus_tokens": trimmed.total_tokens,
        "coverage": trimmed.coverage,
        "teacher_unk_rate": trimmed.unk_rate,
        "held_out_unk_rate": held["trimmed_unk_rate"] if held else None,
        "held_out": held,
        "corpus_check": asdict(corpus_check),
    }


def _summary(stats: dict[str, Any]) -> str:
    lines = [
        f"kept {stats['kept_size']:,} of {stats['teacher_vocab_size']:,} teacher tokens "
        f"({stats['kept_size'] / stats['teacher_vocab_size']:.1%}); they cover {stats['coverage']:.2%} of the "
        f"{stats['corpus_tokens']:,} tokens of {stats['counted_documents']:,} documents "
        f"(teacher UNK rate {stats['teacher_unk_rate']:.3%})",
        f"segmented as the teacher does: {stats['corpus_check']['identical_documents']:.1%} of "
        f"{stats['corpus_check']['documents']:,} sampled documents",
    ]
    held = stats["held_out"]
    if held:
        lines.append(
            f"last {held['documents']:,} documents, with a vocabulary of {held['kept_size']:,} tokens built "
            f"without them: UNK rate {held['trimmed_unk_rate']:.3%} (teacher {held['teacher_unk_rate']:.3%}), "
            f"{held['identical_documents']:.1%} segmented as the teacher does, "
            f"{held['trimmed_tokens'] / max(held['teacher_tokens'], 1):.3f}x its tokens"
        )
    return "\n".join(lines)


def load_trimmed_vocab(
    path: str | Path, teacher_tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedTokenizerFast, list[int]]:
    """Load a folder written by ``run_vocab`` and check it against the teacher's tokenizer.

    Args:
        path: The trimmed-vocabulary folder (``tokenizer.json``, ``id_map.json``).
        teacher_tokenizer: The tokenizer of the teacher that will be distilled.

    Returns:
        The student tokenizer and the id map (student id -> teacher id).

    Raises:
        MonodistillError: for a missing or malformed folder, an id map that does not fit the
            tokenizer or the teacher, a student token that is not the teacher's token at its mapped
            id (a vocabulary built from another teacher), or text normalised or pre-tokenised
            differently from the teacher.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MonodistillError(f"trimmed vocabulary folder {folder} does not exist; build it with `monodistill vocab`")
    id_map, built_from = _read_id_map(folder / ID_MAP_FILE)
    # Without it transformers falls back to converting a slow tokenizer, and blames a missing sentencepiece.
    if not (folder / "tokenizer.json").is_file():
        raise MonodistillError(
            f"{folder} holds no tokenizer.json: a trimmed vocabulary folder holds the tokenizer `monodistill vocab` "
            "wrote beside id_map.json; build it again with `monodistill vocab`"
        )
    try:
        student = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as error:
        raise MonodistillError(f"{folder} holds no usable tokenizer: {error}") from None
    if not isinstance(student, PreTrainedTokenizerFast):
        raise MonodistillError(f"the tokenizer in {folder} is not a fast tokenizer")
    if len(id_map) != len(student):
        raise MonodistillError(
            f"{folder}: the id map has {len(id_map)} entries but the tokenizer {len(student)} tokens"
        )
    if min(id_map) < 0 or max(id_map) >= len(teacher_tokenizer) or len(set(id_map)) != len(id_map):
        raise MonodistillError(
            f"{folder}: the id map must hold distinct teacher ids in [0, {len(teacher_tokenizer)}), "
            f"got {min(id_map)}..{max(id_map)} with {len(id_map) - len(set(id_map))} repeated"
        )
    student_tokens = student.convert_ids_to_tokens(list(range(len(student))))
    teacher_tokens = teacher_tokenizer.convert_ids_to_tokens(id_map)
    for student_id, (mine, theirs) in enumerate(zip(student_tokens, teacher_tokens, strict=True)):
        if mine != theirs:
            raise MonodistillError(
                f"student vocabulary in {folder} is not a subset of the teacher's: token {mine!r} (student id "
                f"{student_id}) maps to teacher id {id_map[student_id]}, which is {theirs!r}; it was built from "
                f"teacher {built_from!r}, not this one"
            )
    _check_same_splitting(backend_tokenizer(student), backend_tokenizer(teacher_tokenizer), folder)
    return student, id_map


def _read_id_map(path: Path) -> tuple[list[int], str | None]:
    if not path.is_file():
        raise MonodistillError(f"{path.parent} holds no {ID_MAP_FILE}: build it with `monodistill vocab`")
    try:
        data = json.loads(path.read_text())
        id_map = data["id_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MonodistillError(f"{path} is not an id map written by `monodistill vocab`: {error!r}") from None
    if not isinstance(id_map, list) or not id_map or not all(isinstance(i, int) for i in id_map):
        raise MonodistillError(f"{path}: id_map must be a non-empty list of integer teacher ids")
    return id_map, data.get("teacher")


def _check_same_splitting(student: Tokenizer, teacher: Tokenizer, folder: Path) -> None:
    # Same tokens are not enough: a different normaliser or pre-tokeniser would split text differently.
    mine, theirs = json.loads(student.to_str()), json.loads(teacher.to_str())
    for part in ("normalizer", "pre_tokenizer"):
        if mine.get(part) != theirs.get(part):
            raise MonodistillError(
                f"the tokenizer in {folder} has a different {part} from the teacher's, so it would split text "
                "differently: it was not trimmed from this teacher's tokenizer"
            )
