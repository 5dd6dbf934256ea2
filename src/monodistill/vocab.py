"""Trim the teacher's vocabulary to the target language.

Count the teacher tokenizer's tokens on the corpus; keep the special tokens, every single-character
token seen, then the most frequent tokens up to a size or coverage target. The trimmed tokenizer is
the teacher's ``tokenizer.json`` with its model vocabulary (WordPiece or Unigram) restricted to the
kept tokens, in teacher-id order, and every special-token id remapped; beside it, ``id_map.json``
maps student ids to teacher ids.

With no size limit every token the teacher used on the corpus is kept, and the trimmed tokenizer
segments that corpus exactly as the teacher does: WordPiece's greedy longest match and Unigram's
best path only ever pick tokens that were seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError

ID_MAP_FILE = "id_map.json"
STATS_FILE = "vocab_stats.json"
MAX_UNK_RATE = 0.2
SPECIAL_ATTRIBUTES = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


@dataclass
class TrimmedVocab:
    """The outcome of counting and selecting tokens."""

    kept_ids: list[int]
    """Teacher ids of the kept tokens, ascending: student id i is teacher id kept_ids[i]."""
    counts: np.ndarray
    """(V_teacher,) occurrences of each teacher token in the counted text."""
    total_tokens: int
    """Token occurrences counted."""
    coverage: float
    """Share of counted occurrences that are kept tokens."""
    unk_rate: float
    """Share of counted occurrences that the teacher tokenizer turned into its unknown token."""


def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], batch_size: int = 1000) -> np.ndarray:
    """Occurrences of every teacher token id in ``texts`` (no special tokens added)."""
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            counts += _count_batch(tokenizer, batch, len(counts))
            batch = []
    if batch:
        counts += _count_batch(tokenizer, batch, len(counts))
    return counts


def _count_batch(tokenizer: PreTrainedTokenizerBase, batch: list[str], size: int) -> np.ndarray:
    encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
    flat = np.fromiter((token for ids in encoded for token in ids), dtype=np.int64)
    return np.bincount(flat, minlength=size)[:size]


def single_character_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of tokens that stand for one character, with or without a word prefix (``##x``, ``▁x``)."""
    ids = set()
    for token, token_id in tokenizer.get_vocab().items():
        bare = token[2:] if token.startswith("##") else token.lstrip("▁")
        if len(bare) == 1 or token == "▁":
            ids.add(token_id)
    return ids


def trim_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    max_size: int | None,
    coverage: float | None,
    min_count: int,
) -> TrimmedVocab:
    """Count tokens on ``texts`` and choose which to keep.

    Raises:
        MonodistillError: if the text is UNK-dominated (wrong script for this teacher) or
            ``max_size`` is below the special plus single-character tokens the text needs.
    """
    counts = count_tokens(tokenizer, texts)
    total = int(counts.sum())
    if total == 0:
        raise MonodistillError("the corpus gives no tokens to count")
    unk_rate = float(counts[tokenizer.unk_token_id] / total) if tokenizer.unk_token_id is not None else 0.0
    if unk_rate > MAX_UNK_RATE:
        raise MonodistillError(
            f"{unk_rate:.0%} of the corpus tokens are unknown to the teacher tokenizer: the corpus is UNK-dominated "
            "(a script or language this teacher does not cover); trimming would keep almost nothing useful"
        )
    seen = counts > 0
    mandatory = set(tokenizer.all_special_ids) | {i for i in single_character_ids(tokenizer) if seen[i]}
    if max_size is not None and max_size < len(mandatory):
        raise MonodistillError(
            f"vocab.max_size={max_size} is below the {len(mandatory)} special and single-character tokens the "
            f"corpus needs; use at least {len(mandatory)}"
        )
    # Most frequent first; ties by teacher id so the choice is deterministic.
    candidates = [int(i) for i in np.lexsort((np.arange(len(counts)), -counts)) if counts[i] >= min_count]
    kept = set(mandatory)
    covered = int(counts[list(mandatory)].sum())
    for token_id in candidates:
        if max_size is not None and len(kept) >= max_size:
            break
        if coverage is not None and covered / total >= coverage:
            break
        if token_id not in kept:
            kept.add(token_id)
            covered += int(counts[token_id])
    kept_ids = sorted(kept)
    return TrimmedVocab(kept_ids, counts, total, float(counts[kept_ids].sum() / total), unk_rate)


def build_trimmed_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: Sequence[int]) -> PreTrainedTokenizerFast:
    """The teacher's fast tokenizer restricted to ``kept_ids`` (student id i = teacher id kept_ids[i])."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise MonodistillError("the teacher tokenizer has no fast (tokenizers) backend and cannot be trimmed")
    definition = json.loads(backend.to_str())
    new_id = {teacher_id: student_id for student_id, teacher_id in enumerate(kept_ids)}
    model = definition["model"]
    if model["type"] == "WordPiece":
        id_to_token = {token_id: token for token, token_id in model["vocab"].items()}
        model["vocab"] = {id_to_token[teacher_id]: student_id for student_id, teacher_id in enumerate(kept_ids)}
    elif model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][teacher_id] for teacher_id in kept_ids]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        raise MonodistillError(f"tokenizer kind {model['type']} cannot be trimmed (supported: WordPiece, Unigram)")
    definition["added_tokens"] = [
        {**token, "id": new_id[token["id"]]} for token in definition.get("added_tokens", []) if token["id"] in new_id
    ]
    if definition.get("post_processor"):
        definition["post_processor"] = _remap_processor(definition["post_processor"], new_id)
    trimmed = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(definition)),
        model_max_length=tokenizer.model_max_length,
        **{name: getattr(tokenizer, name) for name in _special_token_names(tokenizer)},
    )
    return trimmed


def _special_token_names(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    names = ("unk_token", "pad_token", "cls_token", "sep_token", "mask_token", "bos_token", "eos_token")
    return [name for name in names if getattr(tokenizer, name, None) is not None]


def _remap_processor(processor: dict[str, Any], new_id: dict[int, int]) -> dict[str, Any]:
    """Remap the special-token ids a post-processor inserts ([CLS]/[SEP], <s>/</s>)."""
    kind = processor.get("type")
    if kind == "Sequence":
        return {**processor, "processors": [_remap_processor(p, new_id) for p in processor["processors"]]}
    if kind == "TemplateProcessing":
        specials = {
            name: {**special, "ids": [new_id[i] for i in special["ids"]]}
            for name, special in processor["special_tokens"].items()
        }
        return {**processor, "special_tokens": specials}
    if kind in ("RobertaProcessing", "BertProcessing"):
        return {**processor, **{key: [processor[key][0], new_id[processor[key][1]]] for key in ("sep", "cls")}}
    return processor


def remap_special_ids(model_config: Any, kept_ids: Sequence[int]) -> None:
    """Rewrite a model config's special-token ids (pad, bos, eos, ...) from teacher to student ids."""
    new_id = {teacher_id: student_id for student_id, teacher_id in enumerate(kept_ids)}
    for name in SPECIAL_ATTRIBUTES:
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value in new_id:
            setattr(model_config, name, new_id[value])


def save_trimmed_vocab(
    output_dir: Path, tokenizer: PreTrainedTokenizerFast, kept_ids: Sequence[int], teacher: str, stats: dict[str, Any]
) -> None:
    """Write tokenizer, id map and statistics atomically."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.atomic_dir(output_dir) as staging:
        tokenizer.save_pretrained(staging)
        id_map = {"teacher": teacher, "teacher_vocab_size": stats["teacher_vocab_size"], "id_map": list(kept_ids)}
        (staging / ID_MAP_FILE).write_text(json.dumps(id_map))
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")


def load_trimmed_vocab(
    path: str | Path, teacher_tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedTokenizerBase, list[int]]:
    """Load a trimmed tokenizer and its id map, checking that it is a subset of the teacher's vocabulary.

    Raises:
        MonodistillError: if files are missing, or a student token is not the teacher's token at its
            mapped id (a vocabulary built from another teacher, or edited by hand).
    """
    folder = Path(path)
    if not (folder / ID_MAP_FILE).is_file():
        raise MonodistillError(f"{folder} holds no {ID_MAP_FILE}: build it with `monodistill vocab`")
    id_map = [int(i) for i in json.loads((folder / ID_MAP_FILE).read_text())["id_map"]]
    student = AutoTokenizer.from_pretrained(folder)
    if len(id_map) != len(student):
        raise MonodistillError(f"{folder}: the id map has {len(id_map)} entries, the tokenizer {len(student)} tokens")
    if min(id_map) < 0 or max(id_map) >= len(teacher_tokenizer):
        raise MonodistillError(f"{folder}: the id map points outside the teacher's {len(teacher_tokenizer)} tokens")
    student_tokens = student.convert_ids_to_tokens(list(range(len(student))))
    teacher_tokens = teacher_tokenizer.convert_ids_to_tokens(id_map)
    for student_id, (mine, theirs) in enumerate(zip(student_tokens, teacher_tokens, strict=True)):
        if mine != theirs:
            raise MonodistillError(
                f"student vocabulary in {folder} is not a subset of the teacher's: token {mine!r} (student id "
                f"{student_id}) maps to teacher id {id_map[student_id]}, which is {theirs!r}; the student tokenizer "
                "does not match this teacher"
            )
    return student, id_map


def id_map_tensor(id_map: Sequence[int]) -> torch.Tensor:
    """The id map as a LongTensor for indexing."""
    return torch.tensor(list(id_map), dtype=torch.long)


def run_vocab(config: DistillConfig, output_dir: Path) -> Path:
    """``monodistill vocab``: count, trim, write the tokenizer, id map and stats (and the trimmed teacher)."""
    from monodistill.data.corpus import load_corpus
    from monodistill.teacher import load_tokenizer

    tokenizer = load_tokenizer(config.teacher.name_or_path, config.teacher.revision)
    documents = load_corpus(config.data, config.train.seed)["text"]
    documents = list(documents)
    held_out = max(1, len(documents) // 50) if len(documents) > 1 else 0
    counted, evaluation = documents[: len(documents) - held_out], documents[len(documents) - held_out :]
    vocab = config.vocab
    trimmed = trim_vocabulary(tokenizer, counted, vocab.max_size, vocab.coverage, vocab.min_count)
    student_tokenizer = build_trimmed_tokenizer(tokenizer, trimmed.kept_ids)
    stats = {
        "teacher": config.teacher.name_or_path,
        "teacher_vocab_size": len(tokenizer),
        "kept_size": len(trimmed.kept_ids),
        "counted_documents": len(counted),
        "counted_tokens": trimmed.total_tokens,
        "coverage": trimmed.coverage,
        "teacher_unk_rate": trimmed.unk_rate,
        "held_out_documents": len(evaluation),
        "held_out_teacher_unk_rate": unk_rate(tokenizer, evaluation),
        "held_out_trimmed_unk_rate": unk_rate(student_tokenizer, evaluation),
        "settings": {"max_size": vocab.max_size, "coverage": vocab.coverage, "min_count": vocab.min_count},
    }
    save_trimmed_vocab(output_dir, student_tokenizer, trimmed.kept_ids, config.teacher.name_or_path, stats)
    if vocab.export_teacher:
        from monodistill.vocab_export import export_trimmed_teacher

        export_trimmed_teacher(config, trimmed.kept_ids, student_tokenizer, output_dir / "teacher")
    print(
        f"kept {stats['kept_size']:,} of {stats['teacher_vocab_size']:,} tokens, covering {stats['coverage']:.2%} of "
        f"{stats['counted_tokens']:,} corpus tokens; held-out UNK rate {stats['held_out_teacher_unk_rate']:.3%} "
        f"(teacher) -> {stats['held_out_trimmed_unk_rate']:.3%} (trimmed); written to {output_dir}"
    )
    return output_dir


def unk_rate(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> float:
    """Share of tokens that are the unknown token."""
    if not texts or tokenizer.unk_token_id is None:
        return 0.0
    counts = count_tokens(tokenizer, texts)
    return float(counts[tokenizer.unk_token_id] / max(int(counts.sum()), 1))
