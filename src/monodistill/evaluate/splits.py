"""A task's splits as a model reads them: tokenised through the model's own tokenizer, labels aligned, and
capped as evaluate.max_train_samples and max_eval_samples say.

Token tasks put each word's label on its first piece (-100 elsewhere) and are scored per word through the
tokenizer's ``word_ids()`` (``encode.py``). Inputs are cut to ``max_length`` (never beyond the model's
positions), keeping the head, tail or both of a long text (``evaluate.truncation``). Bookkeeping columns
(``BOOKKEEPING``) travel with the splits for scoring and reports, and are dropped before the model sees them.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import EvaluateConfig
from monodistill.data.blocks import tokenizer_fingerprint
from monodistill.evaluate.encode import Encoder, align_labels
from monodistill.evaluate.tasks import Task
from monodistill.progress import datasets_progress
from monodistill.teacher import max_positions

BOOKKEEPING = ("truncated", "word_ids", "words_cut", "words_without_pieces")
"""Columns ``tokenize_task`` adds for scoring and reports; the model never sees them."""


def tokenize_task(
    task: Task, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head"
) -> dict[str, datasets.Dataset]:
    """Tokenised train and test splits, with labels aligned for token tasks and the bookkeeping columns.

    Test labels never seen in training (ids past the model's labels) carry -100: no loss, scored from gold.
    """
    encoder = Encoder(tokenizer, max_length, truncation)
    num_labels = len(task.labels)

    def sequences(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = encoder(batch["text"], batch.get("text_pair"))
        rows["labels"] = [label if label < num_labels else -100 for label in batch["label"]]
        return rows

    def words(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = encoder(batch["tokens"], words=True)
        known = [[tag if tag < num_labels else -100 for tag in tags] for tags in batch["tags"]]
        rows["labels"] = [align_labels(ids, tags) for ids, tags in zip(rows["word_ids"], known, strict=True)]
        return rows

    function = words if task.is_token_task else sequences
    with datasets_progress():
        return {
            name: split.map(function, batched=True, remove_columns=split.column_names, desc=f"tokenising {task.name}")
            for name, split in (("train", task.train), ("test", task.test))
        }


def prepare_splits(
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    config: EvaluateConfig,
    max_length: int,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None = None,
) -> tuple[dict[str, datasets.Dataset], dict[str, datasets.Dataset]]:
    """The tokenised train and test splits (``tokenize_task``, cached in ``tokenized``), capped as
    evaluate.max_train_samples and max_eval_samples say, and the task's rows each one holds."""
    key = (task.name, id(task), tokenizer_fingerprint(tokenizer), max_length, config.truncation)
    cache = tokenized if tokenized is not None else {}
    if key not in cache:
        cache[key] = tokenize_task(task, tokenizer, max_length, config.truncation)
    data = dict(cache[key])  # a copy: the subsets selected below must not change the cached splits
    rows = {"train": task.train, "test": task.test}
    # Capped splits are random subsets drawn with the first seed, so every model and seed sees the same
    # examples (a teacher and its students too), and a file sorted by label does not hand the model one class.
    for name, limit in (("train", config.max_train_samples), ("test", config.max_eval_samples)):
        if limit:
            kept = subset(len(data[name]), limit, config.seed)
            data[name], rows[name] = data[name].select(kept), rows[name].select(kept)
    return data, rows


def subset(size: int, limit: int, seed: int) -> list[int]:
    """``limit`` of ``range(size)`` chosen at random under ``seed``, in their original order (all when fewer)."""
    if limit >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=limit, replace=False).tolist())


def usable_max_length(max_length: int, model_config: Any) -> int:
    """``evaluate.max_length``, or the model's positions when it has fewer (the harness says so per model)."""
    return min(max_length, max_positions(model_config))


def data_collator(task: Task, tokenizer: PreTrainedTokenizerBase) -> Any:
    """The collator that pads a batch of ``task``'s tokenised examples (and their labels)."""
    return (DataCollatorForTokenClassification if task.is_token_task else DataCollatorWithPadding)(tokenizer)


def without_bookkeeping(split: datasets.Dataset) -> datasets.Dataset:
    """``split`` without the ``BOOKKEEPING`` columns, as the model takes it."""
    return split.remove_columns([name for name in BOOKKEEPING if name in split.column_names])
