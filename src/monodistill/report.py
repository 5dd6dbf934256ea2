"""``monodistill report``: tables and plots from experiment, distillation and evaluation folders.

Reads what the other stages wrote (``checkpoint.read_metrics`` for distillation curves,
``summary.json`` for evaluation) and writes, into one folder:

- ``report.md``: the paper-style quality table (model x task, mean ± std over seeds), the size and
  speed table with ratios to the teacher, and the figures;
- ``results.csv`` and ``results.json``: the same numbers;
- ``distillation.png`` (training loss parts; validation KL, accuracy and agreement with the teacher),
  ``quality.png`` (main metric per task and model, with std error bars) and ``cost.png``
  (parameters, fine-tuning and inference speedups against the first model).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.errors import MonodistillError
from monodistill.evaluate.harness import format_summary

CURVES = (
    ("train", "loss", "train loss"),
    ("train", "kl", "train KL at T, x T^2"),
    ("train", "mlm", "train MLM loss"),
    ("validation", "kl_to_teacher", "validation KL to the teacher (T = 1)"),
    ("validation", "student_accuracy", "validation masked-token accuracy"),
    ("validation", "teacher_agreement", "validation top-1 agreement with the teacher"),
)
"""Panels of the distillation figure: (split, metric, title). Validation KL is at T = 1, so students
distilled at different temperatures compare on it; top-1 agreement alone can mislead when the teacher
favours one token."""


def find_inputs(run_dirs: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    """Distillation runs (label -> folder) and evaluation summaries found in the given folders."""
    distillations: dict[str, Path] = {}
    summaries: list[Path] = []
    for folder in run_dirs:
        if not folder.is_dir():
            raise MonodistillError(f"report input {folder} does not exist")
        for metrics in sorted(folder.rglob(ckpt.METRICS_FILE)):
            run = metrics.parent
            label = run.name if run.name not in distillations else f"{run.parent.name}/{run.name}"
            distillations[label] = run
        summaries += sorted(folder.rglob("summary.json"))
    if not distillations and not summaries:
        raise MonodistillError(f"no distillation runs (metrics.jsonl) or evaluations (summary.json) in {run_dirs}")
    return distillations, summaries


def write_report(run_dirs: list[Path], output: Path) -> Path:
    """Write report.md, results.csv/json and PNG figures for the given folders; returns report.md."""
    runfolder.check_output_path(output)
    distillations, summaries = find_inputs(run_dirs)
    output.mkdir(parents=True, exist_ok=True)
    sections = ["# monodistill report", ""]
    rows: list[dict[str, Any]] = []
    for summary_path in summaries:
        summary = json.loads(summary_path.read_text())
        sections += [f"## Evaluation: {summary_path.parent}", "", format_summary(summary)]
        rows += result_rows(summary, str(summary_path.parent))
    if summaries:
        plot_quality(rows, output / "quality.png")
        plot_cost(rows, output / "cost.png")
        sections += ["![quality](quality.png)", "", "![size and speed](cost.png)", ""]
    if distillations:
        records = {label: ckpt.read_metrics(run) for label, run in distillations.items()}
        sections += ["## Distillation", "", distillation_table(records), ""]
        plot_distillation(records, output / "distillation.png")
        sections += ["![distillation curves](distillation.png)", ""]
    ckpt.atomic_write_text(output / "results.json", json.dumps(rows, indent=2) + "\n")
    write_csv(rows, output / "results.csv")
    report = output / "report.md"
    ckpt.atomic_write_text(report, "\n".join(sections) + "\n")
    return report


def result_rows(summary: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One flat row per model and task: every metric's mean and std, cost and ratios."""
    rows = []
    for label, entry in summary["models"].items():
        for task, result in entry["tasks"].items():
            row: dict[str, Any] = {"source": source, "model": label, "task": task, "main_metric": result["main_metric"]}
            for key, value in result.items():
                if isinstance(value, dict) and "mean" in value:
                    row[f"{key}.mean"], row[f"{key}.std"] = value["mean"], value["std"]
            row["parameters"] = entry["parameters"].get("total")
            row["non_embedding_parameters"] = entry["parameters"].get("non_embedding")
            row["disk_mb"] = entry["disk_mb"]
            row["finetune_speedup"] = result.get("finetune_speedup")
            row["inference_speedup"] = result.get("inference_speedup")
            row["seeds"] = len(result["seeds"])
            rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as CSV, with the union of their columns."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def distillation_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """Last validation of each distillation run (label -> its metrics records)."""
    lines = [
        "| student | steps | MLM loss | KL to teacher | agreement with teacher | student accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for label, run_records in records.items():
        validations = [r for r in run_records if r.get("split") == "validation"]
        if not validations:
            continue
        last = validations[-1]
        lines.append(
            f"| {label} | {last['step']} | {last['mlm_loss']:.3f} | {last['kl_to_teacher']:.3f} | "
            f"{last['teacher_agreement']:.3f} | {last['student_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def plot_distillation(records: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Training loss parts and validation KL, accuracy and agreement against the step, a line per student."""
    columns = 3
    figure, grid = plt.subplots(
        len(CURVES) // columns, columns, figsize=(4 * columns + 2, 3.2 * len(CURVES) // columns), layout="constrained"
    )
    axes = grid.ravel()
    for label, run_records in records.items():
        for axis, (split, key, _) in zip(axes, CURVES, strict=True):
            points = [(r["step"], r[key]) for r in run_records if r.get("split") == split and key in r]
            if points:
                axis.plot(*zip(*points, strict=True), marker="." if split == "validation" else None, label=label)
    for axis, (_, _, title) in zip(axes, CURVES, strict=True):
        axis.set_title(title, fontsize="medium")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    _save(figure, axes[0], path)


def plot_quality(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: main metric per task (groups) and model (bars), with std error bars."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(tasks) * max(len(models), 1)), 3.5), layout="constrained")

    def score(row: dict[str, Any], part: str) -> float:
        return 100 * row[f"metric.{row['main_metric']}.{part}"]

    _grouped_bars(axis, rows, lambda row: score(row, "mean"), lambda row: score(row, "std"))
    axis.set_ylabel("score (accuracy or entity F1, %)")
    _save(figure, axis, path)


def plot_cost(rows: list[dict[str, Any]], path: Path) -> None:
    """Parameters per model (embedding and the rest) and fine-tuning and inference speedups per task."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    first = {model: next(row for row in rows if row["model"] == model) for model in models}
    figure, axes = plt.subplots(1, 3, figsize=(max(12, 1.2 * len(models) * 3), 3.8), layout="constrained")
    non_embedding = [first[model]["non_embedding_parameters"] / 1e6 for model in models]
    embedding = [(first[model]["parameters"] - first[model]["non_embedding_parameters"]) / 1e6 for model in models]
    axes[0].bar(models, non_embedding, label="non-embedding")
    axes[0].bar(models, embedding, bottom=non_embedding, label="embedding")
    axes[0].set_ylabel("parameters (M)")
    axes[0].tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize="small")
    axes[0].grid(axis="y", alpha=0.3)
    for axis, key, title in (
        (axes[1], "finetune_speedup", "fine-tuning speedup (x, vs the first model)"),
        (axes[2], "inference_speedup", "inference speedup (x, vs the first model)"),
    ):
        _grouped_bars(axis, rows, partial(_speedup, key=key))
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_title(title, fontsize="medium")
    _save(figure, axes[1], path)


def _save(figure: Any, legend_axis: Any, path: Path) -> None:
    """Write a constrained-layout figure as PNG with ``legend_axis``'s legend beside the plots, never over them."""
    figure.legend(*legend_axis.get_legend_handles_labels(), fontsize="small", loc="outside right upper")
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _speedup(row: dict[str, Any], key: str) -> float:
    return float(row[key] or 0.0)


def _grouped_bars(
    axis: Any,
    rows: list[dict[str, Any]],
    value: Callable[[dict[str, Any]], float],
    error: Callable[[dict[str, Any]], float] | None = None,
) -> None:
    """One group of bars per task, one bar per model, in the order the rows list them."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        picked = [next((r for r in rows if r["model"] == model and r["task"] == task), None) for task in tasks]
        heights = [value(row) if row else 0.0 for row in picked]
        errors = [error(row) if row else 0.0 for row in picked] if error else None
        positions = [task_index + (index - (len(models) - 1) / 2) * width for task_index in range(len(tasks))]
        axis.bar(positions, heights, width, yerr=errors, capsize=3 if errors else 0, label=model)
    axis.set_xticks(range(len(tasks)), tasks, rotation=15)
    axis.grid(axis="y", alpha=0.3)
