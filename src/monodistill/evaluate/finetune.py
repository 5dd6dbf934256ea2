"""Fine-tune one model on one task with transformers' Trainer, and measure its cost.

Token tasks put each word's label on its first sub-token (-100 elsewhere). Inputs are truncated to
``max_length`` (never beyond the model's positions); words cut off by truncation are scored as
predicted with the "O" label (the first label for tag sets without one),
so a model is never rewarded for dropping hard words.
"""

from __future__ import annotations

import tempfile
from typing import Any

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
from monodistill.evaluate.metrics import classification_metrics, token_metrics
from monodistill.evaluate.tasks import Task
from monodistill.teacher import max_positions, parameter_counts


def tokenize_task(task: Task, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict[str, Any]:
    """Tokenised train and test splits, with labels aligned for token tasks."""

    def sequences(batch: dict[str, list[Any]]) -> Any:
        pair = batch.get("text_pair")
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    def words(batch: dict[str, list[Any]]) -> Any:
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        encoded["labels"] = [align_labels(encoded.word_ids(index), tags) for index, tags in enumerate(batch["tags"])]
        return encoded

    function = words if task.is_token_task else sequences
    return {
        name: split.map(function, batched=True, remove_columns=split.column_names, desc=f"tokenising {task.name}")
        for name, split in (("train", task.train), ("test", task.test))
    }


def align_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """One label per sub-token: the word's tag on its first sub-token, -100 on the rest and on specials."""
    labels = []
    previous: int | None = None
    for word_id in word_ids:
        labels.append(tags[word_id] if word_id is not None and word_id != previous else -100)
        previous = word_id
    return labels


def finetune(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    config: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    """Fine-tune ``model_path`` on ``task`` with ``seed``; returns metrics, timings and sizes."""
    label_maps = {
        "id2label": dict(enumerate(task.labels)),
        "label2id": {label: index for index, label in enumerate(task.labels)},
    }
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    torch.manual_seed(seed)  # the new classification head's initialisation
    # Float32 master weights whatever dtype the checkpoint was stored in; evaluate.mixed_precision
    # only sets the autocast of the fine-tuning and inference passes.
    model = model_class.from_pretrained(model_path, num_labels=len(task.labels), dtype=torch.float32, **label_maps)
    max_length = min(config.max_length, max_positions(model.config))
    data = tokenize_task(task, tokenizer, max_length)
    # Capped splits are random subsets drawn with the first seed, so every model and seed sees the same
    # examples, and a file sorted by label does not hand the model one class.
    if config.max_train_samples:
        data["train"] = data["train"].select(subset(len(data["train"]), config.max_train_samples, config.seed))
    gold = task.test
    if config.max_eval_samples:
        kept = subset(len(data["test"]), config.max_eval_samples, config.seed)
        data["test"], gold = data["test"].select(kept), gold.select(kept)
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
    assert prediction.label_ids is not None and prediction.metrics is not None
    scores = score(task, prediction.predictions, np.asarray(prediction.label_ids), gold)
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
        "mixed_precision": config.mixed_precision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def subset(size: int, limit: int, seed: int) -> list[int]:
    """``limit`` of ``range(size)`` chosen at random under ``seed``, in their original order (all when fewer)."""
    if limit >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=limit, replace=False).tolist())


def score(task: Task, logits: Any, label_ids: np.ndarray, gold: Any) -> dict[str, float]:
    """Task metrics from the Trainer's predictions; token tasks are scored per word over whole sentences."""
    predictions = np.asarray(logits).argmax(-1)
    if not task.is_token_task:
        return classification_metrics(predictions, np.asarray(label_ids))
    fill = task.labels.index("O") if "O" in task.labels else 0
    predicted_tags: list[list[str]] = []
    gold_tags: list[list[str]] = []
    for sentence_predictions, sentence_labels, tags in zip(predictions, label_ids, gold["tags"], strict=True):
        first_pieces = sentence_predictions[sentence_labels != -100].tolist()
        if len(first_pieces) > len(tags):
            # Gold tags are matched to predictions by position (a length-grouped sampler would reorder them).
            raise RuntimeError("token predictions are not in test-set order; cannot score them against gold tags")
        # Words lost to truncation get the "O" (else first) label: scored, not skipped.
        first_pieces += [fill] * (len(tags) - len(first_pieces))
        predicted_tags.append([task.labels[i] for i in first_pieces])
        gold_tags.append([task.labels[i] for i in tags])
    return token_metrics(predicted_tags, gold_tags, task.metric)
