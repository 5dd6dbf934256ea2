"""``monodistill run``: the whole experiment, stage by stage, resumable.

    EXP/vocab/                      trimmed vocabulary (when vocab.enabled), built once for all students
    EXP/students/<name>/            one distillation run folder per student; compatible students are
                                    distilled together with one teacher pass (``monodistill.sweep``)
    EXP/evaluate/                   teacher and students fine-tuned on every task
    EXP/report/                     report.md, results.csv/json, PNG figures

Every stage is resumable: a finished distillation is returned as it is, an interrupted one resumes
from its last checkpoint, and evaluation skips (model, task, seed) results already written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from monodistill import runfolder
from monodistill.card import write_card
from monodistill.config import DistillConfig, ExperimentConfig, StudentConfig, config_to_dict, load_config, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate import run_evaluation
from monodistill.processes import process_state
from monodistill.report import write_report
from monodistill.sweep import run_distillation_group, shared_teacher_groups


def student_config(experiment: ExperimentConfig, student: StudentConfig, vocab_path: Path | None) -> DistillConfig:
    """The distillation config of one student: shared settings, then the student's own overrides."""
    name = student.name or student.preset
    shared: dict[str, Any] = {
        "teacher": config_to_dict(experiment.teacher),
        "vocab": config_to_dict(experiment.vocab),
        "student": {**config_to_dict(student), "name": name, "overrides": []},
        "data": config_to_dict(experiment.data),
        "loss": config_to_dict(experiment.loss),
        "train": config_to_dict(experiment.train),
        "output_dir": str(Path(experiment.output_dir or ".") / "students" / name),
    }
    if vocab_path is not None:
        shared["vocab"]["path"] = str(vocab_path)
    try:
        return load_config(DistillConfig, updates=shared, overrides=student.overrides)
    except MonodistillError as error:
        raise MonodistillError(f"student {name!r}: {error}") from None


EXPERIMENT_ENTRIES = ("config.yaml", "vocab", "students", "evaluate", "report")
"""What ``run`` writes into the experiment folder (cleared by ``--overwrite``)."""


def run_experiment(config: ExperimentConfig, overwrite: bool = False) -> Path:
    """Run every stage, holding the experiment folder exclusively; returns the report file."""
    if not config.evaluate.tasks:
        raise MonodistillError("evaluate.tasks is empty: name at least one task to evaluate the students on")
    with _experiment_folder(config, overwrite) as root:
        students, student_dirs = _distil_stages(config, root)
        return _evaluate_stages(config, root, students, student_dirs)


def distil_experiment(config: ExperimentConfig, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """``distill`` with a config listing several students: ``run``'s vocabulary and distillation stages.

    The folder is laid out as ``run`` lays it out, so ``run`` with the same config and folder
    afterwards finds the students distilled and goes on to evaluate them.

    Returns:
        The folders of the saved students, in the order of ``config.students``.
    """
    with _experiment_folder(config, overwrite) as root:
        found = runfolder.holds_run(root, EXPERIMENT_ENTRIES)
        if found and not (resume or overwrite):
            raise MonodistillError(
                f"{root} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another --output"
            )
        return _distil_stages(config, root)[1]


@contextmanager
def _experiment_folder(config: ExperimentConfig, overwrite: bool) -> Iterator[Path]:
    """Hold the experiment folder exclusively, cleared first with ``overwrite``."""
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR or set output_dir")
    root = Path(config.output_dir)
    with runfolder.claim(root):
        if overwrite and process_state().is_main_process:
            runfolder.clear_run(root, EXPERIMENT_ENTRIES)
        process_state().wait_for_everyone()
        yield root


def _distil_stages(config: ExperimentConfig, root: Path) -> tuple[list[DistillConfig], list[Path]]:
    """The shared vocabulary (when trimmed) and every student, resumed where they stopped."""
    if process_state().is_main_process:
        save_config(config, root / "config.yaml")
    # Check every student's settings before the first long stage starts.
    students = [student_config(config, student, None) for student in config.students]

    if config.vocab.enabled and config.vocab.path is None:
        from monodistill.vocab import run_vocab

        vocab_path = root / "vocab"
        # Under several processes the main one builds it while the others wait.
        with process_state().main_process_first():
            if not (vocab_path / "id_map.json").is_file():
                run_vocab(students[0], vocab_path)
        students = [student_config(config, student, vocab_path) for student in config.students]
    return students, _distil_students(students)


def _evaluate_stages(
    config: ExperimentConfig, root: Path, students: list[DistillConfig], student_dirs: list[Path]
) -> Path:
    models = [config.teacher.name_or_path]
    for distill_config in students:
        # Trimmed teachers ("Load What You Need" baselines), whether shared or built by one student.
        vocab = distill_config.vocab
        folder = Path(vocab.path) if vocab.path else Path(distill_config.output_dir or ".") / "vocab"
        if vocab.active and (folder / "teacher").is_dir() and str(folder / "teacher") not in models:
            models.append(str(folder / "teacher"))
    models += [str(path) for path in student_dirs]
    evaluation = replace(config.evaluate, models=models, output_dir=str(root / "evaluate"))
    print(f"== evaluating {len(models)} models on {len(evaluation.tasks)} tasks")
    run_evaluation(evaluation)

    summary = root / "evaluate" / "summary.json"
    for student_dir in student_dirs:
        write_card(student_dir.parent, summary)
    report = write_report([root], root / "report")
    print(f"== report: {report}")
    return report


def _distil_students(students: list[DistillConfig]) -> list[Path]:
    """Distil every student, those that see the same batches together; returns their folders in order."""
    if process_state().num_processes > 1:
        # One teacher pass for several students is a single-process feature; under a launcher each
        # student is distilled on all ranks, one after another.
        groups = [[number] for number in range(len(students))]
    else:
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
        folders.update(zip(group, run_distillation_group(configs, resume=True), strict=True))
    return [folders[number] for number in range(len(students))]
