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
