"""``monodistill run``: the whole experiment, stage by stage, resumable.

    EXP/vocab/                      trimmed vocabulary (when vocab.enabled), built once for every student
                                    with the shared vocabulary settings
    EXP/vocab-<name>/               the vocabulary of students whose own vocab.* or corpus overrides give
                                    another one (<name>: the first of them)
    EXP/students/<name>/            one distillation run folder per student; compatible students are
                                    distilled together with one teacher pass (``monodistill.sweep``)
    EXP/evaluate/                   teacher and students fine-tuned on every task
    EXP/report/                     report.md, results.csv/json, PNG figures

Every stage is resumable: a finished distillation is returned as it is, an interrupted one resumes
from its last checkpoint, and evaluation skips (model, task, seed) results already written.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.card import write_card
from monodistill.config import (
    DistillConfig,
    ExperimentConfig,
    StudentConfig,
    config_to_dict,
    flatten,
    load_config,
    save_config,
)
from monodistill.errors import MonodistillError
from monodistill.evaluate import check_evaluation, run_evaluation
from monodistill.evaluate.lm_tables import language_headline
from monodistill.evaluate.lm_tasks import corpus_overlap
from monodistill.evaluate.tables import column_headers, score_columns
from monodistill.progress import format_duration
from monodistill.ranks import process_state
from monodistill.recipe import distill_students, ensure_vocabulary
from monodistill.report import write_report
from monodistill.sweep import shared_teacher_groups


def student_config(
    experiment: ExperimentConfig, student: StudentConfig, vocab_path: Path | None, teacher: str | None = None
) -> DistillConfig:
    """The distillation config of one student: shared settings, then the student's own overrides.

    ``vocab_path`` points a student whose vocabulary is trimmed at the folder built for it. ``teacher`` is
    the adapted teacher, once the experiment's ``adapt`` stage has made it: a student that keeps
    ``adapt.enabled`` (the experiment's; a student may turn it off) distils from it, and records it as its
    teacher, with adaptation done.
    """
    name = student.name or student.preset
    shared: dict[str, Any] = {
        "teacher": config_to_dict(experiment.teacher),
        "adapt": config_to_dict(experiment.adapt),
        "vocab": config_to_dict(experiment.vocab),
        "student": {**config_to_dict(student), "name": name, "overrides": []},
        "data": config_to_dict(experiment.data),
        "loss": config_to_dict(experiment.loss),
        "train": config_to_dict(experiment.train),
        "teacher_cache": experiment.teacher_cache,
        "cache": config_to_dict(experiment.cache),
        "output_dir": str(Path(experiment.output_dir or ".") / "students" / name),
    }
    experiment.vocab.check_given_path()
    try:
        config = load_config(DistillConfig, updates=shared, overrides=student.overrides)
        config.vocab.check_given_path()  # before this function gives it the folder built for it
    except MonodistillError as error:
        raise MonodistillError(f"student {name!r}: {error}") from None
    if replace(config.adapt, enabled=experiment.adapt.enabled) != experiment.adapt or (
        config.adapt.enabled and not experiment.adapt.enabled
    ):
        raise MonodistillError(
            f"student {name!r}: the teacher is adapted once per experiment, with its adapt: section; a student "
            "may only turn that off (overrides: [adapt.enabled=false])"
        )
    if config.adapt.enabled and teacher is not None:
        config = replace(config, teacher=replace(config.teacher, name_or_path=teacher, revision=None))
        config = replace(config, adapt=replace(config.adapt, enabled=False))
    if vocab_path is not None and config.vocab.active and config.vocab.path is None:
        config.vocab.path = str(vocab_path)
    return config


VOCABULARY_FIELDS = ("teacher.", "vocab.", "data.corpus", "data.hub_config", "data.split", "data.revision") + (
    "data.text_column",
    "data.streaming",
    "data.max_documents",
    "data.skip_bad_documents",
)
"""What a trimmed vocabulary depends on: the teacher's tokenizer, the trimming settings and which documents
are counted (every document of the corpus: ``data_fraction`` picks training blocks, not the vocabulary)."""


def vocabulary_settings(config: DistillConfig) -> tuple[tuple[str, str], ...]:
    """The settings a student's trimmed vocabulary is built from; students with equal ones share it."""
    flat = flatten(config_to_dict(config))
    return tuple(sorted((key, repr(value)) for key, value in flat.items() if key.startswith(VOCABULARY_FIELDS)))


ADAPTED_TEACHER = "teacher-adapted"
"""The adaptation run of an experiment whose ``adapt.enabled``; its ``student/`` is the adapted teacher."""
EXPERIMENT_ENTRIES = ("config.yaml", ADAPTED_TEACHER, "vocab", "students", "evaluate", "report")
"""What ``run`` writes into the experiment folder (cleared by ``--overwrite``, with every ``vocab-*``)."""
TRAINED_ENTRIES = (ADAPTED_TEACHER, "students", "evaluate", "report")
"""What only training leaves: a folder without them holds no run, only what a command refused before
training prepared (its ``config.yaml``, trimmed vocabularies), which a fresh start clears."""


def experiment_entries(root: Path) -> list[str]:
    """What a previous ``run`` wrote into ``root``: ``EXPERIMENT_ENTRIES`` and the students' own vocabularies."""
    own = sorted(path.name for path in root.glob("vocab-*")) if root.is_dir() else []
    return [*EXPERIMENT_ENTRIES, *own]


def run_experiment(config: ExperimentConfig, overwrite: bool = False, started: float | None = None) -> Path:
    """Run every stage, holding the experiment folder exclusively; returns the report file.

    ``started`` (``time.monotonic()``) is when the command began, for the wall time it ends with; default now.
    """
    if not config.evaluate.tasks:
        raise MonodistillError("evaluate.tasks is empty: name at least one task to evaluate the students on")
    started = time.monotonic() if started is None else started
    # The teacher and every task as the evaluation will read them: a bad task costs seconds, not a distillation.
    _, _, language_tasks = check_evaluation(replace(config.evaluate, models=[config.teacher.name_or_path]), say=False)
    for task in language_tasks:  # bits per byte on text the students learn from would flatter them
        overlap = corpus_overlap(task, config.data.corpus, config.data.max_documents)
        if overlap:
            print(f"warning: {overlap}", file=sys.stderr)
    with _experiment_folder(config, overwrite) as root:
        students, student_dirs = _distil_stages(config, root)
        report = _evaluate_stages(config, root, students, student_dirs)
    summary = json.loads((root / "evaluate" / "summary.json").read_text())
    print(describe_experiment(summary, student_dirs, report, time.monotonic() - started))
    print(ckpt.describe_disk(root))  # what takes the space, and what may go once done
    return report


def describe_experiment(summary: dict[str, Any], student_dirs: list[Path], report: Path, seconds: float) -> str:
    """The end of ``run``: its wall time, where each student and the report are, and the headline scores."""
    runs = summary.get("fine_tuning_runs") or {}
    lines = [f"== done in {format_duration(seconds)}"]
    # Each student by its label, as the tables below and every other output name it.
    labels = {Path(entry["model"]).resolve(): label for label, entry in summary["models"].items()}
    lines += [f"{labels.get(folder.resolve(), folder.parent.name)}: {folder}" for folder in student_dirs]
    lines.append(f"report: {report} (also {report.with_suffix('.html').name}, results.csv, PNG figures)")
    if runs:
        lines.append(f"fine-tuning runs: {runs['made']} made, {runs['reused']} reused from earlier runs")
    columns = score_columns(summary)  # the main metric per task, and macro-F1 beside accuracy
    if columns:
        lines.append("main metric per task (and macro-F1 for classification), mean over seeds (points):")
        lines.append("| model | " + " | ".join(column_headers(columns)) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for label, entry in summary["models"].items():
            cells = []
            for task, key in columns:
                result = entry["tasks"].get(task)
                metric = result and result.get(f"metric.{key}")
                cells.append(f"{100 * metric['mean']:.2f}" if metric else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # Bits per byte and multiple choice, scored with no fine-tuning.
    return "\n".join(lines + language_headline(summary))


def distil_experiment(config: ExperimentConfig, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """``distill`` with a config listing several students: ``run``'s vocabulary and distillation stages.

    The folder is laid out as ``run`` lays it out, so ``run`` with the same config and folder
    afterwards finds the students distilled and goes on to evaluate them.

    Returns:
        The folders of the saved students, in the order of ``config.students``.
    """
    with _experiment_folder(config, overwrite) as root:
        if not (resume or overwrite):
            found = runfolder.holds_run(root, TRAINED_ENTRIES)
            if found:
                raise MonodistillError(
                    f"{root} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                    "--overwrite to replace it, or choose another --output"
                )
            if process_state().is_main_process:
                runfolder.clear_run(root, experiment_entries(root))
            process_state().wait_for_everyone()
        return _distil_stages(config, root)[1]


@contextmanager
def _experiment_folder(config: ExperimentConfig, overwrite: bool) -> Iterator[Path]:
    """Hold the experiment folder exclusively, cleared first with ``overwrite``."""
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR or set output_dir")
    root = Path(config.output_dir)
    process_state(config.train.collective_timeout_minutes)  # the first call sets the collective timeout
    with runfolder.claim(root, runfolder.EXPERIMENT):
        if overwrite and process_state().is_main_process:
            runfolder.clear_run(root, experiment_entries(root))
        process_state().wait_for_everyone()
        yield root


def _distil_stages(config: ExperimentConfig, root: Path) -> tuple[list[DistillConfig], list[Path]]:
    """Each student's vocabulary (when trimmed) and every student, resumed where they stopped."""
    # Check every student's settings before the first long stage starts, and before anything is written.
    students = [student_config(config, student, None) for student in config.students]
    if process_state().is_main_process:
        save_config(config, root / "config.yaml")
    adapting = any(distill_config.adapt.enabled for distill_config in students)
    teacher = str(_adapt_stage(config, root)) if adapting else None
    students = [student_config(config, student, None, teacher) for student in config.students]
    shared = vocabulary_settings(student_config(config, StudentConfig(name="shared"), None, teacher))
    folders: dict[tuple[tuple[str, str], ...], Path] = {}
    for number, (student, distill_config) in enumerate(zip(config.students, students, strict=True)):
        if not distill_config.vocab.active or distill_config.vocab.path is not None:
            continue
        settings = vocabulary_settings(distill_config)
        if settings not in folders:
            folders[settings] = root / ("vocab" if settings == shared else f"vocab-{distill_config.student.name}")
            ensure_vocabulary(distill_config, folders[settings])
        students[number] = student_config(config, student, folders[settings], teacher)
    return students, _distil_students(students)


def _adapt_stage(config: ExperimentConfig, root: Path) -> Path:
    """The experiment's teacher adapted to its corpus (done once, resumed when interrupted): the folder."""
    from monodistill.adapt import adapt_teacher

    print(f"== adapting {config.teacher.name_or_path} into {root / ADAPTED_TEACHER}")
    return adapt_teacher(
        student_config(config, StudentConfig(name=ADAPTED_TEACHER), None), root / ADAPTED_TEACHER, resume=True
    )


def _evaluate_stages(
    config: ExperimentConfig, root: Path, students: list[DistillConfig], student_dirs: list[Path]
) -> Path:
    models = [config.teacher.name_or_path]
    adapted = root / ADAPTED_TEACHER / "student"
    if config.adapt.enabled and adapted.is_dir():
        models.append(str(adapted))  # beside the teacher it was adapted from
    for distill_config in students:
        # Trimmed teachers ("Load What You Need" baselines), whether shared or built by one student.
        vocab = distill_config.vocab
        folder = Path(vocab.path) if vocab.path else Path(distill_config.output_dir or ".") / "vocab"
        if vocab.active and (folder / "teacher").is_dir() and str(folder / "teacher") not in models:
            models.append(str(folder / "teacher"))
    models += [str(path) for path in student_dirs]
    evaluation = replace(config.evaluate, models=models, output_dir=str(root / "evaluate"))
    print(f"== evaluating {len(models)} models on {len(evaluation.tasks)} tasks")
    run_evaluation(evaluation, show_summary=False)  # the run ends with the headline scores, the report has the rest

    summary = root / "evaluate" / "summary.json"
    for student_dir in student_dirs:
        write_card(student_dir.parent, summary)
    report = write_report([root], root / "report")  # where it is: said once, at the end (describe_experiment)
    return report


def _distil_students(students: list[DistillConfig]) -> list[Path]:
    """Distil every student, those that see the same batches together; returns their folders in order."""
    groups = shared_teacher_groups(students)
    if len(groups) < len(students):
        described = " ".join("[" + ", ".join(str(students[n].student.name) for n in group) + "]" for group in groups)
        counted = f"{len(groups)} group{'s' if len(groups) > 1 else ''}"
        print(f"== {len(students)} students in {counted}, one teacher pass per group: {described}")
    folders: dict[int, Path] = {}
    for group in groups:
        configs = [students[number] for number in group]
        if len(configs) == 1:
            print(f"== distilling {configs[0].student.name} into {configs[0].output_dir}")
        else:
            names = ", ".join(str(config.student.name) for config in configs)
            print(f"== distilling {names} together into {Path(configs[0].output_dir or '.').parent}")
        folders.update(zip(group, distill_students(configs, resume=True), strict=True))
    return [folders[number] for number in range(len(students))]
