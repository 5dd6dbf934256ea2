"""One label per model, the same in every output: console lines, evaluate's result folders and summary,
the report's tables, figures and rows, and the model card.

A model's name is what it is, read from the folders around it (``model_name``):

- ``teacher``: the experiment's teacher, the ``teacher.name_or_path`` of EXP/config.yaml for an evaluation
  at EXP/evaluate (or, for an evaluation outside an experiment, the teacher its students' runs name),
  matched as a resolved path or a Hub id, wherever it stands in the evaluation;
- ``teacher-trimmed`` (``teacher-trimmed-NAME``): the teacher on a trimmed vocabulary, EXP/vocab/teacher
  (EXP/vocab-NAME/teacher);
- a student, and the adapted teacher EXP/teacher-adapted/student, by its run's name;
- any other model by its folder's name or its Hub id's last part (``mmt-mini``).

``evaluation_labels`` names the models of one evaluation: ``evaluate`` prints them, files results and
keys ``summary.json`` by them. ``label_models`` labels every model of a report the same way, so an
evaluation keeps its labels there; only where two models of one table share a name are they told apart,
by their experiment (``c8ref/student``, ``c13b/student``), and where that is shared too by the end of
their folder (``a/tiny``, ``b/tiny``). Nothing else is renamed: a model keeps its label beside others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

from monodistill import checkpoint as ckpt
from monodistill.teacher import is_local_reference

TEACHER = "teacher"


@dataclass(frozen=True)
class Named:
    """A model before it is labelled: a distillation run, or a model of an evaluation."""

    name: str
    """How a reader knows it (``model_name``, ``run_name``)."""
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


def evaluation_labels(models: Sequence[str], evaluation: Path) -> list[str]:
    """The label of each model of an evaluation written to ``evaluation``, as given to ``--model``.

    Names (``model_name``) that two models share are told apart by the end of their folders
    (``a/mmt-mini``, ``b/mmt-mini``).
    """
    teachers = evaluation_teachers(evaluation, models)
    names = [model_name(model, teachers) for model in models]
    folders = [model_folder(model, name) for model, name in zip(models, names, strict=True)]
    return _tell_apart(names, lambda index, depth: _suffix(folders[index], names[index], depth))


def label_models(models: list[Named]) -> list[str]:
    """The one label of each model, used in every table, figure, CSV/JSON row and the HTML page.

    A model goes by its name; models of one table that share a name go by EXPERIMENT/NAME
    (``c8ref/student``), and those of one experiment by the end of the folder they were found in
    (``a/tiny``), so that a student's distillation curves and its scores carry the same label.
    """
    labels = [model.name for model in models]
    for table in dict.fromkeys(model.table for model in models):
        members = [index for index, model in enumerate(models) if model.table == table]
        group = [models[index] for index in members]
        told = _tell_apart([model.name for model in group], partial(_qualified, group))
        for index, label in zip(members, told, strict=True):
            labels[index] = label
    return labels


def _qualified(models: list[Named], index: int, depth: int) -> str:
    """EXPERIMENT/NAME, then the end of the folder (``label_models``)."""
    model = models[index]
    if depth == 1:
        return f"{model.experiment.name}/{model.name}"
    return _suffix(model.folder, model.name, depth - 1)


def _tell_apart(names: list[str], qualified: Callable[[int, int], str]) -> list[str]:
    """``names``, where each name shared by several is replaced by ``qualified(index, depth)`` at the first depth
    (1, 2, ...) that makes the group's labels differ."""
    labels = list(names)
    for name in dict.fromkeys(names):
        group = [index for index, other in enumerate(names) if other == name]
        if len(group) == 1:
            continue
        for depth in range(1, 64):
            candidates = [qualified(index, depth) for index in group]
            if len(set(candidates)) == len(candidates):
                break
        else:  # one folder given twice, spelled two ways: numbered
            candidates = [f"{candidate}-{number}" for number, candidate in enumerate(candidates, 1)]
        for index, candidate in zip(group, candidates, strict=True):
            labels[index] = candidate
    return labels


def _suffix(folder: Path, name: str, depth: int) -> str:
    """The last ``depth`` parts of ``folder`` (resolved when local), then ``name`` unless the folder bears it."""
    parts = folder.parts
    tail = "/".join(parts[-depth:]) if depth < len(parts) else "/".join(parts)
    return tail if folder.name == name else f"{tail}/{name}"


def model_folder(model: str, name: str) -> Path:
    """What tells a model apart from another of its name: a student's run folder, a local model's folder
    (resolved), or a Hub id."""
    if not is_local_reference(model):
        return Path(model)
    path = Path(model.rstrip("/")).expanduser().resolve()
    return path.parent if path.name == ckpt.STUDENT_DIR and name != ckpt.STUDENT_DIR else path


def is_teacher_family(name: str) -> bool:
    """Whether a model name is the teacher's or one of its versions (trimmed, adapted)."""
    return name == TEACHER or name.startswith(f"{TEACHER}-")


def experiment_folder(folder: Path) -> Path:
    """The experiment a run or evaluation folder belongs to: EXP for ``EXP/students/NAME`` and ``EXP/evaluate``
    (``monodistill run``'s layout); otherwise the folder it sits in (``runs`` for ``runs/tiny``)."""
    folder = folder.resolve()
    return folder.parent.parent if folder.parent.name == "students" else folder.parent


def evaluation_teachers(evaluation: Path, models: Sequence[str]) -> Teachers:
    """The teacher of an evaluation of ``models``, from its experiment's config; outside an experiment, from
    its students' runs."""
    config = experiment_folder(evaluation) / "config.yaml"
    if teacher := _teacher_of(config):
        given = evaluation.parent / "config.yaml"  # said as the user gave the folder, not resolved
        return Teachers((teacher,), f"`teacher.name_or_path` of {given if given.resolve() == config else config}")
    runs = [Path(model.rstrip("/")) for model in models]
    named = [
        teacher for run in runs if run.name == ckpt.STUDENT_DIR and (teacher := _teacher_of(run.parent / "config.yaml"))
    ]
    return Teachers(tuple(dict.fromkeys(named)), "the teacher its students' runs name")


def _teacher_of(config: Path) -> str | None:
    settings = _read_yaml(config)
    teacher = settings.get("teacher") if isinstance(settings, dict) else None
    reference = teacher.get("name_or_path") if isinstance(teacher, dict) else None
    return str(reference) if reference else None


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # an unreadable config names nothing
        return None


def same_model(one: str, other: str) -> bool:
    """Whether two references name one model: the same resolved path, or the same Hub id."""
    if is_local_reference(one) or is_local_reference(other):
        return Path(one).expanduser().resolve() == Path(other).expanduser().resolve()
    return one == other


def model_name(model: str, teachers: Teachers) -> str:
    """How a reader knows a model (see the module's docstring), before it is told apart from others."""
    path = Path(model.rstrip("/"))
    if path.name == "teacher" and path.parent.name.startswith("vocab"):
        # EXP/vocab/teacher: the shared vocabulary; EXP/vocab-NAME/teacher: one student's own.
        return "teacher-trimmed" + path.parent.name.removeprefix("vocab")
    if any(same_model(model, teacher) for teacher in teachers.references):
        return TEACHER
    if path.name == ckpt.STUDENT_DIR and (path.parent / "config.yaml").is_file():  # a student, or teacher-adapted
        return run_name(path.parent)
    return path.name or model


def run_name(run: Path) -> str:
    """A distillation run's name: its config's ``student.name``, else the run folder's name."""
    settings = _read_yaml(run / "config.yaml")
    student = settings.get("student") if isinstance(settings, dict) else None
    return str((student if isinstance(student, dict) else {}).get("name") or run.resolve().name)
