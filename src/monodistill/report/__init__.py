"""``monodistill report``: tables and plots from experiment, distillation and evaluation folders.

Reads what the other stages wrote (``checkpoint.read_metrics`` for distillation curves,
``summary.json`` for evaluation) and writes, into one folder:

- ``report.md``: which model is the teacher; the paper-style quality table (model x task, mean ± std
  over n seeds, the constant prediction's score below), the size table (one parameter count per model,
  its float32 size and the weight files with their dtype), the speed table with ratios to the first
  model (fine-tuning runs one after another, each with the load it ran under and busy ones marked;
  inference timed interleaved), the last validation of each distillation run (with a note on a degenerate
  student, or on one whose MLM head is never trained), and the figures;
- ``report.html``: the same as one self-contained page with the students' model-card summaries and the
  run settings (``page.py``);
- ``results.csv`` and ``results.json``: the same numbers, a row per model and task (a language-model task's
  rows, scored with no fine-tuning, carry its ``kind`` and its metrics: ``language_rows``);
- ``distillation.png``, ``quality.png`` and ``cost.png`` (``figures.py``): one colour per model in all three.

Models fine-tuned with task-stage distillation (``evaluate.distil_from``) are marked: ``(task KD from
MODEL)`` in the tables, ``(task KD)`` under their bars, and ``distilled_from`` in results.csv/json.
Models are named from each evaluation's own records (``labels.py``): ``teacher`` is the experiment's
teacher wherever it stands, not the first model of an evaluation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.card.record import mlm_head_trained, read_run_config, run_objective, validation_note
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import parameter_counts_of
from monodistill.evaluate.tables import distilled_source, format_summary
from monodistill.report.figures import (
    OWN_LOSS,
    TRAIN_TITLES,
    RunTerms,
    model_colours,
    named_for,
    plot_cost,
    plot_distillation,
    plot_quality,
)
from monodistill.report.labels import TEACHER, Named, label_models, report_labels, summary_teachers
from monodistill.report.page import card_summaries, render_html

__all__ = ["Named", "find_inputs", "label_models", "write_report"]


def find_inputs(run_dirs: list[Path]) -> tuple[list[Path], list[Path]]:
    """Distillation run folders and evaluation summaries found in the given folders, each once."""
    runs: dict[Path, Path] = {}
    summaries: dict[Path, Path] = {}
    for folder in run_dirs:
        if not folder.is_dir():
            raise MonodistillError(f"report input {folder} does not exist")
        for metrics in sorted(folder.rglob(ckpt.METRICS_FILE)):
            runs.setdefault(metrics.parent.resolve(), metrics.parent)
        for summary in sorted(folder.rglob("summary.json")):
            summaries.setdefault(summary.resolve(), summary)
    if not runs and not summaries:
        folders = ", ".join(str(folder) for folder in run_dirs)
        raise MonodistillError(f"no distillation runs (metrics.jsonl) or evaluations (summary.json) in {folders}")
    return list(runs.values()), list(summaries.values())


def write_report(run_dirs: list[Path], output: Path) -> Path:
    """Write report.md, report.html, results.csv/json and PNG figures for the given folders; returns report.md."""
    runfolder.check_output_path(output)
    runs, summary_paths = find_inputs(run_dirs)
    summaries = {path: json.loads(path.read_text()) for path in summary_paths}
    named, labels, model_labels = report_labels(runs, summaries)
    names = dict(zip(labels, (model.name for model in named), strict=True))
    colours = model_colours(named, labels)
    output.mkdir(parents=True, exist_ok=True)
    sections = ["# monodistill report", ""]
    rows: list[dict[str, Any]] = []
    language: list[dict[str, Any]] = []  # the language-model tasks' rows: no fine-tuning, no figure of theirs
    cards: dict[Path, str] = {}  # model card -> label, each card once
    teacher_lines = []
    for summary_path, raw in summaries.items():
        summary = with_labels(raw, model_labels[summary_path])
        teacher_lines += [
            f"{label}: `{entry['model']}` ({summary_teachers(summary_path.parent, raw)})"
            for label, entry in summary["models"].items()
            if names[label] == TEACHER
        ]
        rows += result_rows(summary, str(summary_path.parent))
        language += language_rows(summary, str(summary_path.parent))
        for label, entry in summary["models"].items():
            cards.setdefault(Path(entry["model"]) / "README.md", label)
    if teacher_lines:  # which model `teacher` is, and which record says so
        sections += [*dict.fromkeys(teacher_lines), ""]
    for summary_path, raw in summaries.items():
        summary = with_labels(raw, model_labels[summary_path])
        sections += [f"## Evaluation: {summary_path.parent}", "", format_summary(summary)]
        if raw.get("tasks") and not any((raw.get("constant_prediction") or {}).values()):
            sections += [
                f"(No constant-prediction line in quality.png for this evaluation: {summary_path} does not record "
                "the tasks' constant-prediction scores; evaluations since they were recorded do.)",
                "",
            ]
    if summaries and (rows or not language):  # an evaluation of language-model tasks alone draws nothing here
        teachers = {label for label in names if names[label] == TEACHER}
        plot_quality(rows, output / "quality.png", colours, teachers)
        plot_cost(rows, output / "cost.png", colours)
        sections += ["![quality](quality.png)", "", "![size and speed](cost.png)", ""]
    if runs:
        run_labels = dict(zip(runs, labels[: len(runs)], strict=True))
        records = {run_labels[run]: ckpt.read_metrics(run) for run in runs}
        notes = [note for run in runs if (note := validation_note(run, records[run_labels[run]], run_labels[run]))]
        untrained = frozenset(run_labels[run] for run in runs if not mlm_head_trained(run))
        terms = {run_labels[run]: run_terms(run, records[run_labels[run]]) for run in runs}
        table = distillation_table(records, untrained, {label: terms[label].objective for label in terms})
        notes += [note for label in terms if (note := cache_note(label, terms[label]))]
        sections += ["## Distillation", "", table, "", *[f"{note}\n" for note in notes]]
        plot_distillation(records, output / "distillation.png", colours, terms)
        sections += ["![distillation curves](distillation.png)", ""]
    ckpt.atomic_write_text(output / "results.json", json.dumps(rows + language, indent=2) + "\n")
    write_csv(rows + language, output / "results.csv")
    report = output / "report.md"
    ckpt.atomic_write_text(report, "\n".join(sections) + "\n")
    settings = [path for folder in run_dirs if (path := folder / "config.yaml").is_file()]
    settings += [path for summary in summaries if (path := summary.parent / "config.yaml").is_file()]
    card_paths = {label: path for path, label in cards.items()}
    page = render_html(sections, output, card_summaries(card_paths), list(dict.fromkeys(settings)))
    ckpt.atomic_write_text(output / "report.html", page)
    return report


def cache_note(label: str, terms: RunTerms) -> str | None:
    """What a run's validation KL is read against when it read the teacher from a cache; None for a live teacher."""
    if terms.teacher_cache is None:
        return None
    return (
        f"{label} read the teacher from a teacher cache ({terms.teacher_cache}): its validation KL is read against "
        "the cache's validation summary (the top `cache.validation_k` tokens at T = 1, the rest spread evenly), a "
        "live run's against the whole distribution, so the two do not compare (its teacher loss and agreement are "
        "exact). `python benchmarks/cache_quality.py RUN` scores every student of a run against the teacher itself."
    )


def run_terms(run: Path, records: list[dict[str, Any]]) -> RunTerms:
    """The loss parts a run's recipe trains (its ``config.yaml``; a run without a readable one: every part its log
    records), its student's vocabulary size (``student/config.json``) and objective (``run_objective``), for the
    distillation figure and table, and the teacher cache it read (its config's ``teacher_cache``)."""
    teacher_cache = None
    try:
        run_config = read_run_config(run)
        parts, teacher_cache = run_config.loss.trained_parts(), run_config.teacher_cache
    except MonodistillError:
        logged = [key for record in records if record.get("split") == "train" for key in record]
        parts = tuple(part for part in TRAIN_TITLES if part in logged)
    config = run / ckpt.STUDENT_DIR / "config.json"
    try:
        vocab_size = json.loads(config.read_text())["vocab_size"] if config.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        vocab_size = None
    return RunTerms(tuple(part for part in parts if part != "loss"), vocab_size, run_objective(run), teacher_cache)


def with_labels(summary: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The summary with its models keyed by their report labels (``report_labels``) instead of
    result-folder labels, which each keeps as ``label``."""
    models = {labels[label]: {**entry, "label": label} for label, entry in summary["models"].items()}
    return {**summary, "baseline": labels.get(summary["baseline"], summary["baseline"]), "models": models}


def result_rows(summary: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One flat row per model and task: every metric's mean and std, the constant prediction, size and speed."""
    constant = summary.get("constant_prediction") or {}
    rows = []
    for label, entry in summary["models"].items():
        parameters, counted = parameter_counts_of(entry)
        for task, result in entry["tasks"].items():
            metric = result["main_metric"]
            row: dict[str, Any] = {"source": source, "model": label, "task": task, "main_metric": metric}
            row["label"] = entry.get("label", label)
            # Task-stage distillation (evaluate.distil_from): the model whose fine-tuned logits it also learned from.
            row["distilled_from"] = distilled_source(summary, result)
            for key, value in result.items():
                if isinstance(value, dict) and "mean" in value:
                    row[f"{key}.mean"], row[f"{key}.std"] = value["mean"], value["std"]
            row["constant_prediction"] = (constant.get(task) or {}).get(metric)
            row["parameters"] = parameters.get("total")
            row["non_embedding_parameters"] = parameters.get("non_embedding")
            row["parameters_counted"] = counted
            row["float32_mb"] = 4 * row["parameters"] / 1e6 if row["parameters"] is not None else None
            row["disk_mb"] = entry.get("disk_mb")
            row["weights_dtype"] = entry.get("weights_dtype")
            row["baseline"] = summary["baseline"]
            row["finetune_speedup"] = result.get("finetune_speedup")
            row["inference_speedup"] = result.get("inference_speedup")
            # How far to trust the ratios: the load fine-tuning ran under, and how inference was timed.
            row["finetune_load_peak"] = result.get("finetune_load_peak")
            row["finetune_busy"] = result.get("finetune_busy")
            row["finetune_speedup_busy"] = result.get("finetune_speedup_busy")
            row["inference_measured"] = "interleaved" if result.get("inference_interleaved") else "sequential"
            row["machines"] = "; ".join(result.get("machines") or []) or None
            # The learning rate each seed used (chosen on dev with evaluate.learning_rates), and seeds whose
            # model ended at the majority class.
            row["learning_rates"] = "/".join(f"{rate:g}" for rate in result.get("learning_rates") or []) or None
            row["learning_rate_chosen_by"] = (result.get("learning_rate_selection") or {}).get("by")
            row["near_majority_seeds"] = " ".join(result.get("near_majority") or {}) or None
            row["seeds"] = len(result["seeds"])
            rows.append(row)
    return rows


def language_rows(summary: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One flat row per model and scored language-model task (``evaluate.lm_harness``): its kind and metrics, and
    what was counted (tokens and bytes, or questions); generation samples are text, shown in the tables alone."""
    kinds = {name: task["kind"] for name, task in (summary.get("language_tasks") or {}).items()}
    rows = []
    for label, entry in summary["models"].items():
        for task, result in (entry.get("language") or {}).items():
            if not result.get("metrics"):
                continue  # generation samples: text, in the report's tables
            row: dict[str, Any] = {"source": source, "model": label, "task": task, "kind": kinds.get(task)}
            row["label"] = entry.get("label", label)
            row.update({f"metric.{key}": value for key, value in (result.get("metrics") or {}).items()})
            for key in ("tokens", "bytes", "bytes_per_token", "documents", "max_length", "stride", "questions"):
                if key in result:
                    row[key] = result[key]
            row["chance"] = result.get("chance")
            row["baseline"] = summary["baseline"]
            rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as CSV, with the union of their columns."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def distillation_table(
    records: dict[str, list[dict[str, Any]]],
    untrained: frozenset[str] = frozenset(),
    objectives: dict[str, str] | None = None,
) -> str:
    """Last validation of each distillation run (label -> its metrics records).

    Agreement stands beside a constant prediction's (the teacher's most frequent top token, always): a
    student stuck on ``,`` agrees as often as the teacher predicts ``,``, and no more. Runs validated before
    it was recorded show ``-``. The student's own loss is named by its ``objectives`` (label -> masked or
    causal; masked where not given): an MLM loss, a decoder's next-token loss.
    """
    own_loss = named_for(OWN_LOSS, (objectives or {}).values())
    lines = [
        f"| student | steps | {own_loss} | KL to teacher | agreement with teacher | a constant prediction's agreement "
        "| student accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, run_records in records.items():
        validations = [r for r in run_records if r.get("split") == "validation"]
        if not validations:
            continue
        last = validations[-1]
        if label in untrained:  # its loss never trains the MLM head, which every figure here scores
            lines.append(f"| {label} | {last['step']} |" + " - |" * (lines[1].count("|") - 3))
            continue
        lines.append(
            f"| {label} | {last['step']} | {last['mlm_loss']:.3f} | {last['kl_to_teacher']:.3f} | "
            f"{last['teacher_agreement']:.3f} | {_optional(last.get('agreement_constant'))} | "
            f"{last['student_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
