"""An evaluation summary as Markdown tables: quality (mean ± std over seeds, rank, significance), size and
speed (ratios to the baseline), and a model card's table of one model beside the baseline.

``summary.md`` is ``format_summary``; the report and the model card take the same tables and the sentences
under them (``notes.py``). A row fine-tuned with task-stage distillation (``evaluate.distil_from``) is
marked ``(task KD from MODEL)``. The tasks scored with no fine-tuning (bits per byte, multiple choice,
generation samples) follow, from ``lm_tables.py``; an evaluation of those alone shows only them and the sizes.
"""

from __future__ import annotations

from typing import Any

from monodistill.evaluate.lm_tables import language_tables
from monodistill.evaluate.metrics import METRIC_NAMES
from monodistill.evaluate.notes import (
    busy_measurements,
    cost_note,
    learning_rate_note,
    majority_note,
    measurement_notes,
)
from monodistill.evaluate.summary import parameter_counts_of

SIGNIFICANCE_LEVELS = ((0.01, "**"), (0.05, "*"))
"""p-value thresholds of the marks beside a score: Welch's t-test over seeds against the first model."""


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: quality (mean ± std over seeds, rank, significance), size and speed (ratios to the baseline),
    then the language-model tasks'."""
    notes = {label: distilled_note(summary, entry) for label, entry in summary["models"].items()}
    if not summary["tasks"]:  # language-model tasks alone: nothing was fine-tuned or timed
        return "\n".join(_size_table(summary, notes)[1:] + language_tables(summary)) + "\n"
    distilled = [
        result["distilled_from"]
        for entry in summary["models"].values()
        for result in entry["tasks"].values()
        if result.get("distilled_from")
    ]
    lines = _quality_legend(summary, distilled) + _quality_table(summary, notes)
    lines += [f"\n{note}" for note in (majority_note(summary), learning_rate_note(summary)) if note]
    lines += _size_table(summary, notes) + _speed_table(summary, notes, bool(distilled)) + language_tables(summary)
    return "\n".join(lines) + "\n"


def _quality_legend(summary: dict[str, Any], distilled: list[dict[str, Any]]) -> list[str]:
    """What the quality table's scores are: seeds, ranks and significance, task-stage distillation, macro-F1."""
    counts = {seed_count(metric) for metric in _main_scores(summary)}
    ranked = any("rank" in result for entry in summary["models"].values() for result in entry["tasks"].values())
    if not ranked:  # ranks and significance are computed together (summary.rank_and_compare)
        significance = ", with no ranks or significance tests (this summary was written before they were)"
    elif counts == {1}:
        significance = ", then the rank among the models; no significance test with one seed"
    else:
        significance = (
            f", then the rank among the models; * p < 0.05, ** p < 0.01 against {summary['baseline']} "
            "(Welch's t-test over seeds; needs 2 or more seeds)"
        )
    lines = [f"Scores in points: {seeds_phrase(counts)}{significance}."]
    if distilled:
        lines.append(
            "Rows marked (task KD from MODEL) were fine-tuned with task-stage distillation: "
            f"(1 - {distilled[0]['alpha']}) x task loss + {distilled[0]['alpha']} x T^2 x KL to MODEL's fine-tuned "
            f"logits, T = {distilled[0]['temperature']}; the others plainly. Ranks and p-values compare both kinds "
            "in one ranking."
        )
    if any(key == "macro_f1" for _, key in score_columns(summary)):
        lines.append(
            "Classification tasks show macro-F1 beside accuracy (rank and significance are the accuracy's): a model "
            "that predicts mostly one class keeps an accuracy near the constant prediction's, and only its "
            "macro-F1 shows it."
        )
    return lines


def _quality_table(summary: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """One row per model, a column per task and metric (``score_columns``), then the constant prediction's row."""
    columns = score_columns(summary)
    counts = {seed_count(metric) for metric in _main_scores(summary)}
    mixed = len(counts - {None}) > 1  # seed counts differ: each score says its own
    lines = ["", "| model | " + " | ".join(column_headers(columns)) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, entry in summary["models"].items():
        cells = []
        for task, key in columns:
            result = entry["tasks"].get(task)
            if result is None or f"metric.{key}" not in result:
                cells.append("-")
                continue
            metric = result[f"metric.{key}"]
            seeds = f", n = {seed_count(metric)}" if mixed else ""
            if key != result["main_metric"]:  # ranks and significance are the main metric's
                cells.append(f"{format_score(metric)}{seeds}")
                continue
            rank = f" ({result['rank']})" if "rank" in result else ""
            cells.append(f"{format_score(metric)}{seeds}{_mark(result)}{rank}")
        lines.append(f"| {label}{notes[label]} | " + " | ".join(cells) + " |")
    return lines + _constant_row(summary, columns)


def score_columns(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The columns of a quality table, as (task, metric key): each task's main metric, and macro-F1 beside it
    where the task's results have it (classification), since accuracy alone hides a near-constant classifier."""
    columns = []
    for task in summary["tasks"]:
        results = [entry["tasks"][task] for entry in summary["models"].values() if task in entry["tasks"]]
        main = results[0]["main_metric"] if results else "accuracy"
        columns.append((task, main))
        if main != "macro_f1" and any("metric.macro_f1" in result for result in results):
            columns.append((task, "macro_f1"))
    return columns


def column_headers(columns: list[tuple[str, str]]) -> list[str]:
    """A quality table's headers: the task's name, with the metric's where the task has two columns."""
    split = {task for task, key in columns if key == "macro_f1"}
    return [f"{task} {METRIC_NAMES.get(key, key)}" if task in split else task for task, key in columns]


def _constant_row(summary: dict[str, Any], columns: list[tuple[str, str]]) -> list[str]:
    """The quality table's row of constant-prediction scores, when the summary records them."""
    constant = summary.get("constant_prediction") or {}
    if not any(constant.values()):
        return []
    cells = [f"{100 * constant[task][key]:.2f}" if key in (constant.get(task) or {}) else "-" for task, key in columns]
    return ["| constant prediction (most frequent test label) | " + " | ".join(cells) + " |"]


def _size_table(summary: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """One row per model: the counted parameters, their float32 size, and the weight files as stored."""
    counted = {parameter_counts_of(entry)[1] for entry in summary["models"].values()}
    lines = [
        "",
        f"Size (parameters: {' / '.join(sorted(counted))}; float32 MB: those parameters at 4 bytes each, to "
        "compare models stored in different dtypes; file: the weight files as stored, and their dtype):",
        "",
        "| model | parameters | embedding | non-embedding | float32 MB | file MB and dtype |",
        "|---|---|---|---|---|---|",
    ]
    for label, entry in summary["models"].items():
        parameters = parameter_counts_of(entry)[0]
        total, non_embedding = parameters.get("total", 0), parameters.get("non_embedding", 0)
        disk, dtype = entry.get("disk_mb"), entry.get("weights_dtype") or "(dtype not recorded)"
        lines.append(
            f"| {label}{notes[label]} | {_millions(total)} | {_millions(total - non_embedding)} | "
            f"{_millions(non_embedding)} | {4 * total / 1e6:.1f} | {'-' if disk is None else f'{disk:.1f} {dtype}'} |"
        )
    return lines


def _speed_table(summary: dict[str, Any], notes: dict[str, str], distilled: bool) -> list[str]:
    """One row per model and task: fine-tuning time, the load it ran under and inference throughput, with their
    ratios to the baseline; how each was measured above it, and what a busy measurement means below."""
    cost = [
        f"speedups against {summary['baseline']}",
        f"mixed precision {'/'.join(summary.get('mixed_precision') or ['no'])}",
    ]
    if distilled:  # the pass is made once per task and seed, for every model it teaches
        cost.append("a distilled model's fine-tuning time leaves out its teacher's logit pass")
    lines = ["", f"Speed ({', '.join(cost)}). {' '.join(measurement_notes(summary))}", ""]
    lines += [
        "| model | task | fine-tune s | fine-tune speedup | peak load, fine-tuning | inference samples/s "
        "| inference speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, entry in summary["models"].items():
        for task, result in entry["tasks"].items():
            busy = " (busy)" if result.get("finetune_speedup_busy") else ""
            peak = result.get("finetune_load_peak")
            load = "-" if peak is None else f"{peak:.1f}" + (" (busy)" if result.get("finetune_busy") else "")
            interleaved = result.get("inference_interleaved")
            rate = interleaved["samples_per_second"] if interleaved else result["inference_samples_per_second"]["mean"]
            lines.append(
                f"| {label}{notes[label]} | {task} | {result['finetune_seconds']['mean']:.1f} | "
                f"{result.get('finetune_speedup', float('nan')):.2f}x{busy} | {load} | {rate:.1f} | "
                f"{result.get('inference_speedup', float('nan')):.2f}x |"
            )
    busy_note = busy_measurements(summary)
    return lines + (["", busy_note] if busy_note else [])


def card_table(summary: dict[str, Any], label: str) -> list[str]:
    """A model card's table of ``label``'s scores beside the baseline's (macro-F1 below accuracy for
    classification), with both speedups (a busy fine-tuning ratio marked), then how they were measured
    (``cost_note``)."""
    mine, baseline = summary["models"][label], summary["models"][summary["baseline"]]
    lines = [
        "| task | metric | this model | baseline | fine-tuning speedup | inference speedup |",
        "|---|---|---|---|---|---|",
    ]
    for task, result in mine["tasks"].items():
        key = f"metric.{result['main_metric']}"
        base = baseline["tasks"].get(task, {}).get(key)
        score = format_score(result[key]) + (" (task KD)" if result.get("distilled_from") else "")
        busy = " (busy)" if result.get("finetune_speedup_busy") else ""
        lines.append(
            f"| {task} | {result['main_metric']} | {score} | {format_score(base) if base else '-'} "
            f"| {result.get('finetune_speedup', float('nan')):.2f}x{busy} "
            f"| {result.get('inference_speedup', float('nan')):.2f}x |"
        )
        if "metric.macro_f1" in result and result["main_metric"] != "macro_f1":  # beside accuracy, always
            base_f1 = baseline["tasks"].get(task, {}).get("metric.macro_f1")
            lines.append(
                f"| {task} | macro-F1 | {format_score(result['metric.macro_f1'])} "
                f"| {format_score(base_f1) if base_f1 else '-'} | | |"
            )
    notes = [majority_note(summary, [label]), learning_rate_note(summary, [label, summary["baseline"]])]
    return [*lines, *[f"\n{note}" for note in notes if note], "", cost_note(summary, [label, summary["baseline"]])]


def distilled_source(summary: dict[str, Any], result: dict[str, Any]) -> str | None:
    """The summary's name for the model a task result was distilled from (a report renames models), or None."""
    source = result.get("distilled_from")
    if not source:
        return None
    names = {entry["model"]: label for label, entry in summary["models"].items()}
    return str(names.get(source["model"], source["label"]))


def distilled_note(summary: dict[str, Any], entry: dict[str, Any]) -> str:
    """`` (task KD from MODEL)`` for a model fine-tuned with task-stage distillation, else ``""``."""
    sources = [distilled_source(summary, result) for result in entry["tasks"].values()]
    source = next((name for name in sources if name), None)
    return f" (task KD from {source})" if source else ""


def seed_count(metric: dict[str, Any]) -> int | None:
    """How many seeds a score averages (None when the entry does not list its values)."""
    values = metric.get("values")
    return len(values) if isinstance(values, list) else None


def format_score(metric: dict[str, Any]) -> str:
    """A score in points: ``mean ± std`` over several seeds; the mean alone for one seed, whose std is no spread."""
    if seed_count(metric) == 1:
        return f"{100 * metric['mean']:.2f}"
    return f"{100 * metric['mean']:.2f} ± {100 * metric['std']:.2f}"


def seeds_phrase(counts: set[int | None]) -> str:
    """What the scores of a table are, given their seed counts: ``mean ± std over n = 3 seeds``..."""
    known = {count for count in counts if count is not None}
    if known == {1}:
        return "one fine-tuning seed (n = 1), so no spread is shown"
    if len(known) == 1:
        return f"mean ± std over n = {known.pop()} seeds"
    return "mean ± std over seeds (n per score)" if known else "mean ± std over seeds"


def _mark(result: dict[str, Any]) -> str:
    p = result.get("welch_p")
    return next((mark for level, mark in SIGNIFICANCE_LEVELS if p is not None and p < level), "")


def _main_scores(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        result[f"metric.{result['main_metric']}"]
        for entry in summary["models"].values()
        for result in entry["tasks"].values()
    ]


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count:,}"
