"""Model cards for distilled students: what a user needs to trust, cite and reuse the model.

Parameters are counted as the evaluation summary and the report count them (the encoder with its
embeddings, heads aside; a decoder with its embeddings, an untied LM head aside: ``evaluate.summary``'s
``encoder_parameter_counts`` and ``COUNTED``), so a model has one figure on every page. A student whose
last validation predicts one token at most masked positions is called what it is, degenerate; one whose
loss never trains its MLM head (no logit or MLM term) is said to have fill-mask predictions that mean
nothing instead (``record.validation_note``, which the report's distillation table shows too).

The card is its Hub metadata (``metadata``: front matter and model-index), its Markdown sections
(``sections``), the downstream results of an evaluation (``results``), and what the run folder recorded
(``record``); this module puts them together from a run folder.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from monodistill import checkpoint as ckpt
from monodistill.card import causal
from monodistill.card.metadata import UNSET_LICENSE, front_matter, model_index_results, task_kinds
from monodistill.card.record import read_run_config, student_objective, validation_note
from monodistill.card.results import evaluation_epochs, evaluation_section
from monodistill.card.sections import (
    intended_use,
    is_adaptation,
    model_section,
    title_and_intro,
    training_section,
    validation_section,
)
from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import encoder_parameter_counts
from monodistill.labels import run_name

__all__ = ["UNSET_LICENSE", "build_model_card", "render_card", "write_card"]


def build_model_card(
    config: DistillConfig,
    metrics: dict[str, float],
    student_counts: dict[str, int],
    teacher_counts: dict[str, int],
    num_blocks: int,
    results: str = "",
    model_index: list[dict[str, Any]] | None = None,
    license: str | None = None,
    note: str | None = None,
) -> str:
    """A Hugging Face README.md for the student folder, with YAML front matter.

    ``config.objective`` says what kind of model the card describes: ``causal`` (a decoder, ``card.causal``),
    else a masked LM; the callers resolve it from the student's family (``record.student_objective``).

    ``student_counts`` and ``teacher_counts`` are ``encoder_parameter_counts``; ``results`` is a Markdown
    section of downstream results (from ``evaluation_section``), if any; ``model_index`` the same results
    as Hub ``model-index`` entries (from ``model_index_results``). ``license`` is a Hub licence id; unset,
    the card says ``unknown`` and ``monodistill publish`` refuses it. ``note`` follows the validation
    table (``validation_note``).
    """
    if config.objective == "causal":  # a decoder's card: generation, next tokens (``card.causal``)
        stage = causal.stage(config)
        title, intro = causal.title_and_intro(config)
        training, validation = causal.training_section(config, num_blocks), causal.validation_section(config, metrics)
        use = causal.intended_use(config)
    else:
        adapted = is_adaptation(config.loss)
        stage = "adaptation" if adapted else "distillation"
        title, intro = title_and_intro(config)
        training, validation = training_section(config, num_blocks), validation_section(config, metrics)
        use = intended_use(config, adapted)
    return f"""---
{front_matter(config, model_index, license)}---

# {title}

{intro}

## Model

{model_section(config, student_counts, teacher_counts)}

## {stage.capitalize()}

{training}

## Validation at the end of {stage}

{validation}
{f"{chr(10)}{note}{chr(10)}" if note else ""}
{results}{use}"""


def write_card(run_dir: Path, summary_path: Path | None = None) -> Path:
    """``monodistill card RUN_DIR``: (re)write RUN/student/README.md from what the run folder holds.

    Adds downstream results when ``summary_path`` (or ``RUN/../../evaluate/summary.json``, where
    ``monodistill run`` puts it) holds an evaluation of this student.
    """
    card = render_card(run_dir, summary_path)
    path = run_dir / ckpt.STUDENT_DIR / "README.md"
    ckpt.atomic_write_text(path, card)  # the student's manifest leaves the card out: it is rewritten freely
    return path


def render_card(
    run_dir: Path, summary_path: Path | None = None, license: str | None = None, language: str | None = None
) -> str:
    """The model card of a distillation run (see ``write_card``), returned instead of written.

    ``language`` (an ISO 639 code) stands in for the run's ``data.language``.

    Raises:
        MonodistillError: not a finished run, or a student folder that cannot be loaded.
    """
    student_dir = run_dir / ckpt.STUDENT_DIR
    _check_finished_run(run_dir)
    config = read_run_config(run_dir)
    # The run's label, as the console, the evaluation and the report name it (``labels.run_name``).
    config = replace(config, student=replace(config.student, name=run_name(run_dir)))
    ckpt.check_model_folder(student_dir, what="student")
    config = replace(config, objective=student_objective(student_dir))  # the run's may say `auto`
    if language is not None:
        config = replace(config, data=replace(config.data, language=language))
    records = ckpt.read_metrics(run_dir)
    validations = [r for r in records if r.get("split") == "validation"]
    metrics = {k: v for k, v in (validations[-1] if validations else {}).items() if k not in ("step", "split")}
    student_counts, teacher_counts = _parameter_counts(config, student_dir)
    name = str(config.student.name or config.student.preset)
    environment = json.loads((run_dir / "environment.json").read_text())
    results, model_index = _downstream_results(
        summary_path or run_dir.parent.parent / "evaluate" / "summary.json", student_dir
    )
    return build_model_card(
        config,
        metrics,
        student_counts,
        teacher_counts,
        int(environment.get("train_blocks", 0)),
        results,
        model_index,
        license,
        validation_note(run_dir, records, name),
    )


def _check_finished_run(run_dir: Path) -> None:
    """Refuse a folder that is not a finished distillation run, naming the students of an experiment folder."""
    if (run_dir / "config.yaml").is_file() and (run_dir / ckpt.STUDENT_DIR).is_dir():
        return
    students = sorted(path.parent for path in run_dir.glob(f"students/*/{ckpt.STUDENT_DIR}") if path.is_dir())
    if students:  # an experiment folder of `monodistill run`
        held = ", ".join(f"students/{student.name}" for student in students)
        raise MonodistillError(
            f"{run_dir} is an experiment folder, not a distillation run: it holds {held}; pass one, "
            f"e.g. monodistill card {students[0]}"
        )
    raise MonodistillError(f"{run_dir} is not a finished distillation run (no config.yaml or student/)")


def _parameter_counts(config: DistillConfig, student_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The student's and the teacher's ``encoder_parameter_counts``, read from their configs."""
    student_counts = encoder_parameter_counts(str(student_dir))
    teacher_counts = encoder_parameter_counts(config.teacher.name_or_path, config.teacher.revision)
    if student_counts is None or teacher_counts is None:
        unread = student_dir if student_counts is None else config.teacher.name_or_path
        raise MonodistillError(f"cannot read the config.json of {unread} to count its parameters")
    return student_counts, teacher_counts


def _downstream_results(summary_path: Path, student_dir: Path) -> tuple[str, list[dict[str, Any]] | None]:
    """The card's downstream results section and model-index entries, when ``summary_path`` exists."""
    if not summary_path.is_file():
        return "", None
    summary = json.loads(summary_path.read_text())
    evaluation = summary_path.parent / "config.yaml"
    results = evaluation_section(summary, student_dir, evaluation_epochs(evaluation))
    return results, model_index_results(summary, student_dir, task_kinds(evaluation))
