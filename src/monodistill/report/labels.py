"""How the report names models: as a reader knows them, from each evaluation's own records.

- ``teacher``: the experiment's teacher, the ``teacher.name_or_path`` of EXP/config.yaml for an evaluation
  at EXP/evaluate (or, for an evaluation outside an experiment, the teacher its students' runs name),
  matched as a resolved path or a Hub id, wherever it stands in the evaluation;
- ``teacher-trimmed`` (``teacher-trimmed-NAME``): the teacher on a trimmed vocabulary, EXP/vocab/teacher
  (EXP/vocab-NAME/teacher);
- a student, and the adapted teacher EXP/teacher-adapted/student, by its run's name;
- any other model by the evaluation's own label (``mmt-mini``, as ``evaluate`` printed it).

``label_models`` then gives each model one label, the same in every table, figure, CSV/JSON row and the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monodistill import checkpoint as ckpt
from monodistill.teacher import is_local_reference

TEACHER = "teacher"


@dataclass(frozen=True)
class Named:
    """A model of the report before it is labelled: a distillation run, or a model of an evaluation."""

    name: str
    """How a reader knows it (``display_name``, ``run_name``)."""
    experiment: Path
    """The experiment folder it belongs to (``experiment_folder``), resolved."""
    folder: Path
    """Where it was found: the run folder, or the evaluation folder, as given."""
    table: str
    """``distillation`` or ``evaluation``: the labels of one table (and its figures) must differ."""


@dataclass(frozen=True)
class Teachers:
    """The teacher of an evaluation's experiment, and which record says so."""

    references: tuple[str, ...]
    """``teacher.name_or_path`` as the record spells it (several when students' runs disagree)."""
    source: str
    """The record, in words: ``teacher.name_or_path of EXP/config.yaml``."""


def report_labels(
    runs: list[Path], summaries: dict[Path, dict[str, Any]]
) -> tuple[list[Named], list[str], dict[Path, dict[str, str]]]:
    """Every model named and labelled: the runs, then each evaluation's models, with their labels in that
    order, and per evaluation its result-folder label -> report label."""
    named = [Named(run_name(run), experiment_folder(run), run, "distillation") for run in runs]
    evaluated = []  # (summary, result-folder label) of each evaluated model, in the order of `named` after the runs
    for path, summary in summaries.items():
        experiment = experiment_folder(path.parent)
        for label, name in display_names(summary, evaluation_teachers(path.parent, summary)).items():
            named.append(Named(name, experiment, path.parent, "evaluation"))
            evaluated.append((path, label))
    labels = label_models(named)
    model_labels: dict[Path, dict[str, str]] = {path: {} for path in summaries}
    for (path, label), report_label in zip(evaluated, labels[len(runs) :], strict=True):
        model_labels[path][label] = report_label
    return named, labels, model_labels


def label_models(models: list[Named]) -> list[str]:
    """The one label of each model, used in every table, figure, CSV/JSON row and the HTML page.

    A model goes by its name when the report covers one experiment, and by EXPERIMENT/NAME
    (``c8ref/student``) when it covers several, so that a student's distillation curves and its scores
    carry the same label. Two models of one table that would still share a label (same experiment and
    name) go by the folder they were found in: FOLDER/NAME.
    """
    several = len({model.experiment for model in models}) > 1
    labels = [f"{model.experiment.name}/{model.name}" if several else model.name for model in models]
    tables = [(model.table, label) for model, label in zip(models, labels, strict=True)]
    return [
        label if tables.count((model.table, label)) == 1 else _folder_label(model)
        for model, label in zip(models, labels, strict=True)
    ]


def _folder_label(model: Named) -> str:
    return str(model.folder) if model.folder.name == model.name else f"{model.folder}/{model.name}"


def is_teacher_family(name: str) -> bool:
    """Whether a model name is the teacher's or one of its versions (trimmed, adapted)."""
    return name == TEACHER or name.startswith(f"{TEACHER}-")


def experiment_folder(folder: Path) -> Path:
    """The experiment a run or evaluation folder belongs to: EXP for ``EXP/students/NAME`` and ``EXP/evaluate``
    (``monodistill run``'s layout); otherwise the folder it sits in (``runs`` for ``runs/tiny``)."""
    folder = folder.resolve()
    return folder.parent.parent if folder.parent.name == "students" else folder.parent


def evaluation_teachers(evaluation: Path, summary: dict[str, Any]) -> Teachers:
    """The teacher of an evaluation, from its experiment's config; outside an experiment, from its students' runs."""
    config = experiment_folder(evaluation) / "config.yaml"
    if teacher := _teacher_of(config):
        given = evaluation.parent / "config.yaml"  # said as the user gave the folder, not resolved
        return Teachers((teacher,), f"`teacher.name_or_path` of {given if given.resolve() == config else config}")
    runs = [Path(entry["model"].rstrip("/")) for entry in summary["models"].values()]
    named = [
        teacher for run in runs if run.name == ckpt.STUDENT_DIR and (teacher := _teacher_of(run.parent / "config.yaml"))
    ]
    return Teachers(tuple(dict.fromkeys(named)), "the teacher its students' runs name")


def _teacher_of(config: Path) -> str | None:
    settings = yaml.safe_load(config.read_text()) if config.is_file() else None
    teacher = settings.get("teacher") if isinstance(settings, dict) else None
    reference = teacher.get("name_or_path") if isinstance(teacher, dict) else None
    return str(reference) if reference else None


def same_model(one: str, other: str) -> bool:
    """Whether two references name one model: the same resolved path, or the same Hub id."""
    if is_local_reference(one) or is_local_reference(other):
        return Path(one).expanduser().resolve() == Path(other).expanduser().resolve()
    return one == other


def display_names(summary: dict[str, Any], teachers: Teachers) -> dict[str, str]:
    """Result-folder label -> display name of each model of an evaluation; a name that would clash within
    it keeps the label."""
    labels = list(summary["models"])
    names = [display_name(summary["models"][label]["model"], label, teachers) for label in labels]
    names = [name if names.count(name) == 1 else label for name, label in zip(names, labels, strict=True)]
    return dict(zip(labels, names, strict=True))


def display_name(model: str, label: str, teachers: Teachers) -> str:
    """How a reader knows a model (see the module's docstring); ``label`` is the evaluation's own."""
    path = Path(model.rstrip("/"))
    if path.name == "teacher" and path.parent.name.startswith("vocab"):
        # EXP/vocab/teacher: the shared vocabulary; EXP/vocab-NAME/teacher: one student's own.
        return "teacher-trimmed" + path.parent.name.removeprefix("vocab")
    if any(same_model(model, teacher) for teacher in teachers.references):
        return TEACHER
    if path.name == ckpt.STUDENT_DIR:  # a student, or EXP/teacher-adapted/student
        return run_name(path.parent)
    return label


def run_name(run: Path) -> str:
    """A distillation run's name: its config's ``student.name``, else the run folder's name."""
    config = run / "config.yaml"
    settings = yaml.safe_load(config.read_text()) if config.is_file() else None
    student = settings.get("student") if isinstance(settings, dict) else None
    return str((student if isinstance(student, dict) else {}).get("name") or run.resolve().name)
