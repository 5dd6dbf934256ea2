"""How the report names models: by ``monodistill.labels``, the one labelling every output uses.

Each evaluation's models are named as ``evaluate`` named them (``evaluation_labels``: ``teacher``,
``teacher-trimmed``, a student by its run's name, any other model by its folder's name), computed again
from the summary's model references, so an evaluation made before labels were unified reads the same;
the distillation runs by their names. ``label_models`` then tells apart only the models of one table
that share a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monodistill.labels import (
    TEACHER,
    Named,
    evaluation_labels,
    evaluation_teachers,
    experiment_folder,
    is_teacher_family,
    label_models,
    run_name,
)

__all__ = [
    "TEACHER",
    "Named",
    "evaluation_teachers",
    "is_teacher_family",
    "label_models",
    "report_labels",
    "summary_teachers",
]


def report_labels(
    runs: list[Path], summaries: dict[Path, dict[str, Any]]
) -> tuple[list[Named], list[str], dict[Path, dict[str, str]]]:
    """Every model named and labelled: the runs, then each evaluation's models, with their labels in that
    order, and per evaluation its result-folder label -> report label."""
    named = [Named(run_name(run), experiment_folder(run), run, "distillation") for run in runs]
    evaluated = []  # (summary, result-folder label) of each evaluated model, in the order of `named` after the runs
    for path, summary in summaries.items():
        experiment = experiment_folder(path.parent)
        references = [entry["model"] for entry in summary["models"].values()]
        for label, name in zip(summary["models"], evaluation_labels(references, path.parent), strict=True):
            named.append(Named(name, experiment, path.parent, "evaluation"))
            evaluated.append((path, label))
    labels = label_models(named)
    model_labels: dict[Path, dict[str, str]] = {path: {} for path in summaries}
    for (path, label), report_label in zip(evaluated, labels[len(runs) :], strict=True):
        model_labels[path][label] = report_label
    return named, labels, model_labels


def summary_teachers(evaluation: Path, summary: dict[str, Any]) -> str:
    """Which record names the teacher of an evaluation (``evaluation_teachers``), in words."""
    return evaluation_teachers(evaluation, [entry["model"] for entry in summary["models"].values()]).source
