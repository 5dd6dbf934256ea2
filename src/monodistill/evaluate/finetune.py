"""Fine-tune one model on one task with transformers' Trainer, and measure its cost.

Token tasks put each word's label on its first piece (-100 elsewhere) and are scored per word
through the tokenizer's ``word_ids()`` (``encode.py``). Inputs are cut to ``max_length`` (never
beyond the model's positions), keeping the head, tail or both of a long text (``evaluate.truncation``);
the share of truncated examples is reported. Words left with no piece, cut off by truncation or
turned into none by the tokenizer, are scored as predicted with the "O" label (the first label for
tag sets without one), so a model is never rewarded for dropping hard words; both are counted.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import EvaluateConfig
from monodistill.data.blocks import tokenizer_fingerprint
from monodistill.evaluate.encode import Encoder, align_labels, word_predictions
from monodistill.evaluate.metrics import classification_metrics, token_metrics
from monodistill.evaluate.tasks import Task
from monodistill.teacher import load_weights, max_positions, parameter_counts

__all__ = ["align_labels", "finetune", "load_for_task", "score", "subset", "tokenize_task", "usable_max_length"]
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
    return {
        name: split.map(function, batched=True, remove_columns=split.column_names, desc=f"tokenising {task.name}")
        for name, split in (("train", task.train), ("test", task.test))
    }


def finetune(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    config: EvaluateConfig,
    seed: int,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None = None,
    save_to: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model_path`` on ``task`` with ``seed``; returns metrics, timings and sizes.

    ``save_to``, when given, receives the fine-tuned model and its tokenizer (``save_pretrained``).

    ``tokenized`` caches tokenised tasks across calls: models that share a tokenizer (students of one
    teacher, every seed) tokenise each task once.
    """
    label_maps = {
        "id2label": dict(enumerate(task.labels)),
        "label2id": {label: index for index, label in enumerate(task.labels)},
    }
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    torch.manual_seed(seed)  # the new classification head's initialisation
    # Float32 master weights whatever dtype the checkpoint was stored in; evaluate.mixed_precision
    # only sets the autocast of the fine-tuning and inference passes.
    model = load_for_task(model_class, model_path, num_labels=len(task.labels), dtype=torch.float32, **label_maps)
    max_length = usable_max_length(config.max_length, model.config)
    key = (task.name, id(task), tokenizer_fingerprint(tokenizer), max_length, config.truncation)
    cache = tokenized if tokenized is not None else {}
    if key not in cache:
        cache[key] = tokenize_task(task, tokenizer, max_length, config.truncation)
    data = dict(cache[key])  # a copy: the subsets selected below must not change the cached splits
    # Capped splits are random subsets drawn with the first seed, so every model and seed sees the same
    # examples, and a file sorted by label does not hand the model one class.
    if config.max_train_samples:
        data["train"] = data["train"].select(subset(len(data["train"]), config.max_train_samples, config.seed))
    gold = task.test
    if config.max_eval_samples:
        kept = subset(len(data["test"]), config.max_eval_samples, config.seed)
        data["test"], gold = data["test"].select(kept), gold.select(kept)
    report = coverage_report(task, data, gold)
    _print_report(task.name, report)
    word_ids = list(data["test"]["word_ids"]) if task.is_token_task else None
    data = {
        name: split.remove_columns([c for c in BOOKKEEPING if c in split.column_names]) for name, split in data.items()
    }
    collator = (DataCollatorForTokenClassification if task.is_token_task else DataCollatorWithPadding)(tokenizer)
    use_cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.eval_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            weight_decay=config.weight_decay,
            warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
            seed=seed,
            bf16=config.mixed_precision == "bf16",
            fp16=config.mixed_precision == "fp16",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            logging_steps=50,
            use_cpu=not use_cuda,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model, args=arguments, train_dataset=data["train"], data_collator=collator, processing_class=tokenizer
        )
        training = trainer.train()
        prediction = trainer.predict(data["test"])
    if save_to is not None:
        model.save_pretrained(save_to)
        tokenizer.save_pretrained(save_to)
    assert prediction.label_ids is not None and prediction.metrics is not None
    _check_order(np.asarray(prediction.label_ids), data["test"]["labels"])
    scores = score(task, prediction.predictions, gold, word_ids)
    counts = parameter_counts(model)
    return {
        "metrics": scores,
        "train_samples": len(data["train"]),
        "test_samples": len(data["test"]),
        "finetune_seconds": float(training.metrics["train_runtime"]),
        "train_samples_per_second": float(training.metrics["train_samples_per_second"]),
        "inference_seconds": float(prediction.metrics["test_runtime"]),
        "inference_samples_per_second": float(prediction.metrics["test_samples_per_second"]),
        "parameters": counts,
        "max_length": max_length,
        "truncation": config.truncation,
        **report,
        "mixed_precision": config.mixed_precision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def usable_max_length(max_length: int, model_config: Any) -> int:
    """``evaluate.max_length``, or the model's positions when it has fewer (the harness says so per model)."""
    return min(max_length, max_positions(model_config))


HEAD_PREFIXES = {
    "missing": ("classifier.", "pre_classifier.", "pooler."),
    "unexpected": (
        "cls.",
        "lm_head.",
        "lm_predictions.",
        "vocab_transform.",
        "vocab_layer_norm.",
        "vocab_projector.",
        "generator_",
        "pooler.",
    ),
}
"""Weights a masked-LM checkpoint is expected to lack (the new task head; a pooler that masked-LM classes do
not build) or hold unused (its masked-LM head), matched after the backbone prefix (``bert.``)."""
_ANNOUNCED: set[tuple[str, str]] = set()  # (model, class): the expected-head line is printed once per model


def load_for_task(model_class: Any, model_path: str, **kwargs: Any) -> Any:
    """``model_class.from_pretrained`` without transformers' load table for the expected head swap.

    A masked-LM checkpoint given a task head drops its ``cls.predictions.*`` weights and starts a new
    ``classifier.*``: transformers prints that as a table of UNEXPECTED and MISSING keys on every
    fine-tune. Here it is one line per model; any other missing or unexpected key still warns, and
    weights that do not fit the config are refused (``teacher.load_weights``).
    """
    # The table is one warning record; load_weights drops just it (raising the logger's level would also
    # switch on transformers' tensor-parallel plan check, which warns on every load).
    model, info = load_weights(model_class, model_path, kind="model", quiet=True, **kwargs)
    expected: dict[str, list[str]] = {}
    for kind, prefixes in HEAD_PREFIXES.items():
        keys = sorted(info.get(f"{kind}_keys") or [])
        odd = [key for key in keys if not _is_head_key(key, prefixes, model.base_model_prefix)]
        if odd:
            shown = ", ".join(odd[:8]) + (f" and {len(odd) - 8} more" if len(odd) > 8 else "")
            warnings.warn(f"{model_path}: {kind} weights outside the task and masked-LM heads: {shown}", stacklevel=2)
        base = f"{model.base_model_prefix}."
        expected[kind] = sorted({key.removeprefix(base).split(".")[0] for key in keys if key not in odd})
    if (model_path, model_class.__name__) not in _ANNOUNCED:
        _ANNOUNCED.add((model_path, model_class.__name__))
        new = ", ".join(f"{group}.*" for group in expected["missing"]) or "none"
        dropped = ", ".join(f"{group}.*" for group in expected["unexpected"]) or "none"
        print(f"{model_path}: new task head ({new}), unused masked-LM head ({dropped}), as expected")
    return model


def _is_head_key(key: str, prefixes: tuple[str, ...], base_prefix: str) -> bool:
    return key.removeprefix(f"{base_prefix}.").startswith(prefixes)


def subset(size: int, limit: int, seed: int) -> list[int]:
    """``limit`` of ``range(size)`` chosen at random under ``seed``, in their original order (all when fewer)."""
    if limit >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=limit, replace=False).tolist())


def score(task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None) -> dict[str, float]:
    """Task metrics from the Trainer's predictions against the gold split.

    Token tasks are scored per word over whole sentences, each word read at its first piece through
    ``word_ids`` (one list per sentence, None on special tokens); a word with no piece is predicted as
    "O" (else the first label). Gold labels never seen in training can never be predicted: errors.
    """
    predictions = np.asarray(logits).argmax(-1)
    names = task.label_names
    if not task.is_token_task:
        return classification_metrics(predictions, np.asarray(gold["label"]))
    assert word_ids is not None
    fill = task.labels.index("O") if "O" in task.labels else 0
    predicted_tags: list[list[str]] = []
    gold_tags: list[list[str]] = []
    for sentence_predictions, sentence_word_ids, tags in zip(predictions, word_ids, gold["tags"], strict=True):
        predicted = word_predictions(sentence_predictions, sentence_word_ids, len(tags), fill)
        predicted_tags.append([names[i] for i in predicted])
        gold_tags.append([names[i] for i in tags])
    return token_metrics(predicted_tags, gold_tags, task.metric)


def coverage_report(task: Task, data: dict[str, datasets.Dataset], gold: datasets.Dataset) -> dict[str, Any]:
    """What the scores cover: shares of truncated examples, test words with no piece left, unseen test labels."""
    report: dict[str, Any] = {
        "truncated_share": {
            name: float(np.mean(split["truncated"])) if len(split) else 0.0 for name, split in data.items()
        }
    }
    if task.is_token_task:
        report["words"] = {
            "scored": sum(len(tags) for tags in gold["tags"]),
            "cut_by_truncation": int(sum(data["test"]["words_cut"])),
            "without_pieces": int(sum(data["test"]["words_without_pieces"])),
        }
        golds = [tag for tags in gold["tags"] for tag in tags]
    else:
        golds = list(gold["label"])
    report["unseen_test_labels"] = sum(label >= len(task.labels) for label in golds)
    return report


def _check_order(label_ids: np.ndarray, expected: list[list[int]] | list[int]) -> None:
    """Predictions are matched to gold by position: make sure the Trainer kept the test split's order."""
    for row, labels in zip(label_ids, expected, strict=True):
        labels_array = np.atleast_1d(np.asarray(labels))
        if not np.array_equal(np.atleast_1d(row)[: len(labels_array)], labels_array):
            raise RuntimeError("predictions are not in test-set order; cannot score them against gold labels")


def _print_report(name: str, report: dict[str, Any]) -> None:
    shares = report["truncated_share"]
    if any(shares.values()):
        print(f"{name}: truncated {shares['train']:.1%} of training and {shares['test']:.1%} of test examples")
    words = report.get("words", {})
    if words.get("cut_by_truncation") or words.get("without_pieces"):
        print(
            f"{name}: {words['cut_by_truncation']} test words cut by truncation and {words['without_pieces']} "
            "turned into no piece by the tokenizer are scored with the fill label"
        )
