"""``monodistill report``: tables and plots from experiment, distillation and evaluation folders.

Reads what the other stages wrote (``checkpoint.read_metrics`` for distillation curves,
``summary.json`` for evaluation) and writes, into one folder:

- ``report.md``: the paper-style quality table (model x task, mean ± std over seeds), the size and
  speed table with ratios to the teacher, and the figures;
- ``report.html``: the same as one self-contained page (figures inlined as data URIs) with the
  students' model-card summaries and the run settings; it opens from disk, no server;
- ``results.csv`` and ``results.json``: the same numbers;
- ``distillation.png`` (training loss parts; validation KL, accuracy and agreement with the teacher),
  ``quality.png`` (a panel per task: main metric per model, with std error bars) and ``cost.png``
  (parameters, fine-tuning and inference speedups against the first model).

Models fine-tuned with task-stage distillation (``evaluate.distil_from``) are marked: ``(task KD from
MODEL)`` in the tables, ``(task KD)`` under their bars, and ``distilled_from`` in results.csv/json.

Models are named as a reader knows them: ``teacher`` (the first model of an evaluation),
``teacher-trimmed`` (the teacher on the trimmed vocabulary) and each student by its run's name;
``label_models`` gives each one label, the same in every table, figure, CSV/JSON row and the page.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import yaml

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import distilled_source, format_summary

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
    run_labels, model_labels = report_labels(runs, summaries)
    output.mkdir(parents=True, exist_ok=True)
    sections = ["# monodistill report", ""]
    rows: list[dict[str, Any]] = []
    cards: dict[Path, str] = {}  # model card -> label, each card once
    for summary_path, raw in summaries.items():
        summary = with_labels(raw, model_labels[summary_path])
        sections += [f"## Evaluation: {summary_path.parent}", "", format_summary(summary)]
        rows += result_rows(summary, str(summary_path.parent))
        for label, entry in summary["models"].items():
            cards.setdefault(Path(entry["model"]) / "README.md", label)
    if summaries:
        plot_quality(rows, output / "quality.png")
        plot_cost(rows, output / "cost.png")
        sections += ["![quality](quality.png)", "", "![size and speed](cost.png)", ""]
    if runs:
        records = {run_labels[run]: ckpt.read_metrics(run) for run in runs}
        sections += ["## Distillation", "", distillation_table(records), ""]
        plot_distillation(records, output / "distillation.png")
        sections += ["![distillation curves](distillation.png)", ""]
    ckpt.atomic_write_text(output / "results.json", json.dumps(rows, indent=2) + "\n")
    write_csv(rows, output / "results.csv")
    report = output / "report.md"
    ckpt.atomic_write_text(report, "\n".join(sections) + "\n")
    settings = [path for folder in run_dirs if (path := folder / "config.yaml").is_file()]
    settings += [path for summary in summaries if (path := summary.parent / "config.yaml").is_file()]
    card_paths = {label: path for path, label in cards.items()}
    page = render_html(sections, output, card_summaries(card_paths), list(dict.fromkeys(settings)))
    ckpt.atomic_write_text(output / "report.html", page)
    return report


def report_labels(
    runs: list[Path], summaries: dict[Path, dict[str, Any]]
) -> tuple[dict[Path, str], dict[Path, dict[str, str]]]:
    """The label of each distillation run, and of each model of each evaluation (summary -> its label -> label)."""
    named = [Named(run_name(run), experiment_folder(run), run, "distillation") for run in runs]
    evaluated = []  # (summary, result-folder label) of each evaluated model, in the order of `named` after the runs
    for path, summary in summaries.items():
        experiment = experiment_folder(path.parent)
        for label, name in display_names(summary).items():
            named.append(Named(name, experiment, path.parent, "evaluation"))
            evaluated.append((path, label))
    labels = label_models(named)
    model_labels: dict[Path, dict[str, str]] = {path: {} for path in summaries}
    for (path, label), report_label in zip(evaluated, labels[len(runs) :], strict=True):
        model_labels[path][label] = report_label
    return dict(zip(runs, labels[: len(runs)], strict=True)), model_labels


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


def experiment_folder(folder: Path) -> Path:
    """The experiment a run or evaluation folder belongs to: EXP for ``EXP/students/NAME`` and ``EXP/evaluate``
    (``monodistill run``'s layout); otherwise the folder it sits in (``runs`` for ``runs/tiny``)."""
    folder = folder.resolve()
    return folder.parent.parent if folder.parent.name == "students" else folder.parent


def with_labels(summary: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The summary with its models keyed by their report labels (``report_labels``) instead of
    result-folder labels, which each keeps as ``label``."""
    models = {labels[label]: {**entry, "label": label} for label, entry in summary["models"].items()}
    return {**summary, "baseline": labels.get(summary["baseline"], summary["baseline"]), "models": models}


def display_names(summary: dict[str, Any]) -> dict[str, str]:
    """Result-folder label -> display name (``teacher``, ``teacher-trimmed``, a student's run name) of
    each model of an evaluation; a name that would clash within it keeps the label."""
    labels = list(summary["models"])
    names = [display_name(summary["models"][label]["model"], index) for index, label in enumerate(labels)]
    names = [name if names.count(name) == 1 else label for name, label in zip(names, labels, strict=True)]
    return dict(zip(labels, names, strict=True))


def display_name(model: str, index: int) -> str:
    """How a reader knows a model: the first is the teacher, a student goes by its run's name."""
    path = Path(model.rstrip("/"))
    if index == 0:
        return "teacher"
    if path.name == "teacher" and path.parent.name.startswith("vocab"):
        # EXP/vocab/teacher: the shared vocabulary; EXP/vocab-NAME/teacher: one student's own.
        return "teacher-trimmed" + path.parent.name.removeprefix("vocab")
    if path.name == ckpt.STUDENT_DIR:
        return run_name(path.parent)
    return path.name or model


def run_name(run: Path) -> str:
    """A distillation run's name: its config's ``student.name``, else the run folder's name."""
    config = run / "config.yaml"
    settings = yaml.safe_load(config.read_text()) if config.is_file() else None
    student = settings.get("student") if isinstance(settings, dict) else None
    return str((student if isinstance(student, dict) else {}).get("name") or run.resolve().name)


def result_rows(summary: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One flat row per model and task: every metric's mean and std, cost and ratios."""
    rows = []
    for label, entry in summary["models"].items():
        for task, result in entry["tasks"].items():
            row: dict[str, Any] = {"source": source, "model": label, "task": task, "main_metric": result["main_metric"]}
            row["label"] = entry.get("label", label)
            # Task-stage distillation (evaluate.distil_from): the model whose fine-tuned logits it also learned from.
            row["distilled_from"] = distilled_source(summary, result)
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
    """A grid of panels, one per task: main metric per model, with std error bars."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    columns = len(tasks) if len(tasks) <= 3 else min(3, math.ceil(math.sqrt(len(tasks))))  # 4 tasks: 2 x 2
    panel_width = max(3.5, 0.45 * len(models) + 1)
    figure, grid = plt.subplots(
        math.ceil(len(tasks) / columns),
        columns,
        figsize=(panel_width * columns, 3.2 * math.ceil(len(tasks) / columns)),
        layout="constrained",
        squeeze=False,
    )
    colors = {model: f"C{index % 10}" for index, model in enumerate(models)}
    for axis, task in zip(grid.ravel(), tasks, strict=False):
        picked = [row for row in rows if row["task"] == task]
        metric = picked[0]["main_metric"]
        axis.bar(
            [f"{row['model']} (task KD)" if row.get("distilled_from") else row["model"] for row in picked],
            [100 * row[f"metric.{metric}.mean"] for row in picked],
            yerr=[100 * row[f"metric.{metric}.std"] for row in picked],
            capsize=3,
            color=[colors[row["model"]] for row in picked],
        )
        axis.set_title(task, fontsize="medium")
        axis.set_ylabel(f"{metric} (%)")
        plt.setp(axis.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor", fontsize="small")
        axis.grid(axis="y", alpha=0.3)
    for axis in grid.ravel()[len(tasks) :]:
        axis.set_visible(False)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_cost(rows: list[dict[str, Any]], path: Path) -> None:
    """Parameters per model (embedding and the rest) and fine-tuning and inference speedups per task."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    first = {model: next(row for row in rows if row["model"] == model) for model in models}
    figure, axes = plt.subplots(1, 3, figsize=(min(18, max(12, 1.2 * len(models) * 3)), 3.8), layout="constrained")
    non_embedding = [first[model]["non_embedding_parameters"] / 1e6 for model in models]
    embedding = [(first[model]["parameters"] - first[model]["non_embedding_parameters"]) / 1e6 for model in models]
    axes[0].bar(models, non_embedding, label="non-embedding")
    axes[0].bar(models, embedding, bottom=non_embedding, label="embedding")
    axes[0].set_ylabel("parameters (M)")
    plt.setp(axes[0].get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
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


CARD_SECTIONS = ("Model", "Downstream results")
"""Sections of a student's model card that the HTML report shows (its title line too)."""
PAGE_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:0.3em 0.6em}
th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}img{max-width:100%;display:block}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:0.85em}details{margin:0.5em 0}"""


def card_summaries(cards: dict[str, Path]) -> dict[str, str]:
    """Model name -> the title, model and downstream-results sections of its monodistill model card."""
    summaries = {}
    for name, path in cards.items():
        if not path.is_file() or "monodistill" not in (text := path.read_text()):
            continue
        body = text.split("---", 2)[2] if text.startswith("---") else text  # drop the Hub front matter
        title = next((line for line in body.splitlines() if line.startswith("# ")), f"# {name}")
        if not title.startswith(f"# {name}:"):  # the card's own name is not the report's label
            title += f" ({name})"
        parts = re.split(r"^## ", body, flags=re.MULTILINE)[1:]
        kept = [f"### {part.strip()}" for part in parts if part.split("\n", 1)[0].strip() in CARD_SECTIONS]
        summaries[name] = "\n\n".join([f"## Model card: {title.removeprefix('# ')}", *kept])
    return summaries


def render_html(sections: list[str], output: Path, cards: dict[str, str], settings: list[Path]) -> str:
    """The report as one self-contained HTML page: figures inlined from ``output`` as PNG data URIs."""
    body = [markdown_to_html("\n".join(sections), output)]
    body += [markdown_to_html(card, output) for card in cards.values()]
    if settings:
        body.append("<h2>Run settings</h2>")
        for path in settings:
            body.append(
                f"<details><summary>{html.escape(str(path))}</summary>"
                f"<pre>{html.escape(path.read_text())}</pre></details>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>monodistill report</title>\n'
        f"<style>{PAGE_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def markdown_to_html(text: str, folder: Path) -> str:
    """HTML for the Markdown this module writes: headings, pipe tables, images (inlined from ``folder``),
    fenced blocks and paragraphs."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), len(lines))
            out.append(f"<pre>{html.escape(chr(10).join(lines[index + 1 : end]))}</pre>")
            index = end + 1
            continue
        if line.startswith("|"):
            end = next((i for i in range(index, len(lines)) if not lines[i].startswith("|")), len(lines))
            out.append(_table_html(lines[index:end]))
            index = end
            continue
        if heading := re.match(r"^(#{1,6}) (.*)", line):
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline_html(heading.group(2))}</h{level}>")
        elif image := re.match(r"^!\[(.*)\]\((.*)\)$", line.strip()):
            data = base64.b64encode((folder / image.group(2)).read_bytes()).decode()
            out.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(image.group(1))}">')
        elif line.strip():
            out.append(f"<p>{_inline_html(line)}</p>")
        index += 1
    return "\n".join(out)


def _table_html(rows: list[str]) -> str:
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    body = [row for row in cells[1:] if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]
    head = "".join(f"<th>{_inline_html(cell)}</th>" for cell in cells[0])
    lines = ["<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row) + "</tr>" for row in body]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody>\n</table>"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
