"""Tokenise the corpus, pack it into fixed-length blocks, hold some out, and cache the result.

Documents are joined with the separator token and cut into blocks of ``max_seq_length`` tokens
(``[CLS] ... [SEP]``), so no position is padding and every block costs the same. The blocks are
cached on disk under a key made of everything that changes them; a second run reads the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import DataConfig
from monodistill.data.corpus import corpus_fingerprint, load_corpus
from monodistill.errors import MonodistillError

CACHE_FORMAT = "blocks-v1"


@dataclass
class Blocks:
    """Packed token blocks: ``input_ids`` (and ``word_starts`` for whole-word masking)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    cache_path: Path


def default_cache_dir() -> Path:
    """$MONODISTILL_CACHE, else ~/.cache/monodistill."""
    return Path(os.environ.get("MONODISTILL_CACHE", Path.home() / ".cache" / "monodistill"))


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the tokenizer's full definition (vocabulary, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_blocks(config: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> Blocks:
    """Load packed train/validation blocks from the cache, building them first if needed.

    Raises:
        MonodistillError: for a corpus too small to give a training and a validation block.
    """
    key = hashlib.sha256(
        "|".join(
            [
                CACHE_FORMAT,
                corpus_fingerprint(config, seed),
                tokenizer_fingerprint(tokenizer),
                str(config.max_seq_length),
                str(config.whole_word_mask),
                str(config.validation_fraction),
                str(config.max_validation_blocks),
                str(seed),
            ]
        ).encode()
    ).hexdigest()[:20]
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    path = cache_root / "blocks" / key
    if not (path / "train").is_dir():
        _build_and_save(config, tokenizer, seed, path)
    train = datasets.load_from_disk(str(path / "train")).with_format("torch")
    validation = datasets.load_from_disk(str(path / "validation")).with_format("torch")
    return Blocks(train=train, validation=validation, cache_path=path)


def _build_and_save(config: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int, path: Path) -> None:
    documents = load_corpus(config, seed)
    block_length = config.max_seq_length
    separator = tokenizer.sep_token_id
    if tokenizer.cls_token_id is None or separator is None:
        raise MonodistillError("the tokenizer has no CLS/SEP (or <s>/</s>) tokens to frame blocks with")
    columns = ["input_ids", "word_starts"] if config.whole_word_mask else ["input_ids"]

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        encoded = tokenizer(batch["text"], add_special_tokens=False)
        result: dict[str, list[list[int]]] = {"input_ids": [ids + [separator] for ids in encoded["input_ids"]]}
        if config.whole_word_mask:
            result["word_starts"] = [_word_starts(encoded.word_ids(i)) + [1] for i in range(len(batch["text"]))]
        return result

    def pack(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        # Blocks are [CLS] + body + [SEP]; the remainder of each map batch is dropped.
        body = block_length - 2
        packed: dict[str, list[list[int]]] = {}
        for column in columns:
            stream = [token for sequence in batch[column] for token in sequence]
            usable = len(stream) // body * body
            edge = 1 if column == "word_starts" else None
            packed[column] = [
                [edge if edge is not None else tokenizer.cls_token_id]
                + stream[start : start + body]
                + [edge if edge is not None else separator]
                for start in range(0, usable, body)
            ]
        return packed

    num_proc = config.num_proc if config.num_proc > 1 else None
    tokenized = documents.map(
        tokenize, batched=True, remove_columns=["text"], num_proc=num_proc, desc="tokenising corpus"
    )
    blocks = tokenized.map(pack, batched=True, batch_size=1000, num_proc=num_proc, desc="packing blocks")
    if len(blocks) < 2:
        total_tokens = sum(len(ids) for ids in tokenized["input_ids"])
        raise MonodistillError(
            f"corpus {config.corpus} gives {total_tokens} tokens, fewer than two blocks of data.max_seq_length="
            f"{block_length}: one is needed for training and one for validation; add text or lower max_seq_length"
        )
    blocks = blocks.shuffle(seed=seed)
    num_validation = min(config.max_validation_blocks, max(1, round(len(blocks) * config.validation_fraction)))
    split = {
        "validation": blocks.select(range(num_validation)),
        "train": blocks.select(range(num_validation, len(blocks))),
    }
    # Write to a temporary folder and rename it: a killed run never leaves a half-written cache.
    staging = path.with_name(path.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for name, dataset in split.items():
        dataset.flatten_indices().save_to_disk(str(staging / name))
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staging, path)


def _word_starts(word_ids: list[int | None]) -> list[int]:
    starts = []
    previous: int | None = None
    for word_id in word_ids:
        starts.append(int(word_id is None or word_id != previous))
        previous = word_id
    return starts
