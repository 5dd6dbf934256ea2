"""Task metrics: accuracy and macro-F1 for classification, seqeval entity F1 for NER, tag accuracy for POS."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets
import numpy as np
from seqeval.metrics import f1_score as entity_f1
from seqeval.metrics import precision_score, recall_score
from sklearn.metrics import f1_score

from monodistill.evaluate.tasks import Task

METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "entity_f1": "entity F1"}
"""How tables head a metric's column."""
NEAR_MAJORITY = 0.02
"""How close to the majority class's score a model's may come and still count as ending at the majority class:
within 2 points of macro-F1 (or of a token task's metric), so a real if weak classifier is not flagged."""


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 over examples."""
    return {
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


def token_metrics(predicted: list[list[str]], gold: list[list[str]], metric: str) -> dict[str, float]:
    """Per-word tag accuracy, plus seqeval entity precision/recall/F1 when ``metric`` is entity-f1."""
    flat_predicted = [tag for sentence in predicted for tag in sentence]
    flat_gold = [tag for sentence in gold for tag in sentence]
    scores = {"accuracy": float(np.mean([p == g for p, g in zip(flat_predicted, flat_gold, strict=True)]))}
    if metric == "entity-f1":
        scores["entity_f1"] = float(entity_f1(gold, predicted, zero_division=0))
        scores["entity_precision"] = float(precision_score(gold, predicted, zero_division=0))
        scores["entity_recall"] = float(recall_score(gold, predicted, zero_division=0))
    return scores


def selection_metric(task: Task) -> str:
    """The score that tells a model from the majority class: macro-F1 for classification (a near-constant
    classifier keeps a near-majority accuracy), the task's main metric for token tasks. The learning-rate
    search chooses by it, and ``near_majority`` compares by it."""
    return main_metric(task.metric) if task.is_token_task else "macro_f1"


def prediction_spread(predicted: list[int], task: Task) -> dict[str, Any]:
    """How many classes a model predicts over the examples (or words) scored, its most frequent one and its share."""
    if not predicted:
        return {"classes": 0, "top_label": None, "top_share": 0.0}
    counts = Counter(predicted)
    top, count = counts.most_common(1)[0]
    return {"classes": len(counts), "top_label": task.label_names[top], "top_share": count / len(predicted)}


def near_majority(
    scores: dict[str, float], majority: dict[str, Any] | None, spread: dict[str, Any], key: str
) -> str | None:
    """Why a model counts as ending at the majority class, or None: it predicts one class everywhere, or its
    ``key`` score is within ``NEAR_MAJORITY`` of the majority class's."""
    name = METRIC_NAMES.get(key, key)
    if spread["classes"] == 1:
        return f"it predicts {spread['top_label']!r} for every example"
    if majority is not None and key in majority and scores[key] <= majority[key] + NEAR_MAJORITY:
        return (
            f"its {name} {scores[key]:.3f} is within {NEAR_MAJORITY} of the majority class's {majority[key]:.3f} "
            f"(it predicts {spread['top_label']!r} for {spread['top_share']:.0%})"
        )
    return None


def main_metric(metric: str) -> str:
    """The key reported first in tables for a task's metric."""
    return "entity_f1" if metric == "entity-f1" else "accuracy"


def majority_class(task: Task, test: datasets.Dataset) -> dict[str, Any] | None:
    """The scores of predicting ``test``'s most frequent label for every example (every word of a token task),
    and that label: the floor a model must beat on those examples. None for an empty split."""
    names = task.label_names
    if task.is_token_task:
        gold = [[names[tag] for tag in tags] for tags in test["tags"]]
        counts = Counter(tag for sentence in gold for tag in sentence)
        if not counts:
            return None
        label = counts.most_common(1)[0][0]
        scores = token_metrics([[label] * len(sentence) for sentence in gold], gold, task.metric)
    else:
        labels = np.asarray(test["label"])
        if not len(labels):
            return None
        majority = Counter(labels.tolist()).most_common(1)[0][0]
        label = names[majority]
        scores = classification_metrics(np.full_like(labels, majority), labels)
    return {"label": label, **scores}
