"""Scoring a fine-tuned model's test predictions: per example, or per word for token tasks.

Token tasks are scored per word through the tokenizer's ``word_ids()`` (``encode.py``). Words left with no
piece, cut off by truncation or turned into none by the tokenizer, are scored as predicted with the "O"
label (the first label for tag sets without one), so a model is never rewarded for dropping hard words;
both are counted (``coverage_report``).
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from monodistill.evaluate.encode import word_predictions
from monodistill.evaluate.metrics import (
    classification_metrics,
    majority_class,
    near_majority,
    prediction_spread,
    selection_metric,
    token_metrics,
)
from monodistill.evaluate.tasks import Task


def quality_record(
    task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None
) -> dict[str, Any]:
    """A run's test scores, the majority-class floor on the examples scored, the spread of its predictions, and
    whether it ended at the majority class (a near-constant classifier keeps a near-majority accuracy)."""
    predicted = predicted_labels(task, logits, gold, word_ids)
    scores = score_predictions(task, predicted, gold)
    majority = majority_class(task, gold)
    spread = prediction_spread([label for row in predicted for label in row] if task.is_token_task else predicted, task)
    return {
        "metrics": scores,
        "majority_class": majority,  # the floor on the examples scored
        "predictions": spread,
        "near_majority": near_majority(scores, majority, spread, selection_metric(task)),
    }


def score(task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None) -> dict[str, float]:
    """Task metrics from the Trainer's predictions against the gold split.

    Token tasks are scored per word over whole sentences, each word read at its first piece through
    ``word_ids`` (one list per sentence, None on special tokens); a word with no piece is predicted as
    "O" (else the first label). Gold labels never seen in training can never be predicted: errors.
    """
    return score_predictions(task, predicted_labels(task, logits, gold, word_ids), gold)


def predicted_labels(
    task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None
) -> list[Any]:
    """The label id predicted for each test example, or for each word of each sentence of a token task (read
    at its first piece; a word with no piece gets "O", else the first label), as ``score`` scores them."""
    predictions = np.asarray(logits).argmax(-1)  # (N,) or (N, T)
    if not task.is_token_task:
        return [int(label) for label in predictions]
    assert word_ids is not None
    fill = task.labels.index("O") if "O" in task.labels else 0
    return [
        word_predictions(sentence, sentence_word_ids, len(tags), fill)
        for sentence, sentence_word_ids, tags in zip(predictions, word_ids, gold["tags"], strict=True)
    ]


def score_predictions(task: Task, predicted: list[Any], gold: datasets.Dataset) -> dict[str, float]:
    """Task metrics of ``predicted_labels`` against the gold split."""
    if not task.is_token_task:
        return classification_metrics(np.asarray(predicted), np.asarray(gold["label"]))
    names = task.label_names
    predicted_tags = [[names[i] for i in sentence] for sentence in predicted]
    return token_metrics(predicted_tags, [[names[i] for i in tags] for tags in gold["tags"]], task.metric)


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


def check_order(label_ids: np.ndarray, expected: list[list[int]] | list[int]) -> None:
    """Predictions are matched to gold by position: make sure the Trainer kept the test split's order."""
    for row, labels in zip(label_ids, expected, strict=True):
        labels_array = np.atleast_1d(np.asarray(labels))
        if not np.array_equal(np.atleast_1d(row)[: len(labels_array)], labels_array):
            raise RuntimeError("predictions are not in test-set order; cannot score them against gold labels")


def print_coverage(name: str, report: dict[str, Any]) -> None:
    """Say what a ``coverage_report`` leaves out of the scores: truncated examples, words scored with the fill label."""
    shares = report["truncated_share"]
    if any(shares.values()):
        print(f"{name}: truncated {shares['train']:.1%} of training and {shares['test']:.1%} of test examples")
    words = report.get("words", {})
    if words.get("cut_by_truncation") or words.get("without_pieces"):
        print(
            f"{name}: {words['cut_by_truncation']} test words cut by truncation and {words['without_pieces']} "
            "turned into no piece by the tokenizer are scored with the fill label"
        )
