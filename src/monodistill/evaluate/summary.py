"""The summary of an evaluation: mean ± std over seeds per model and task, ranks, significance and cost.

Read from the seed results in the output folder (``harness.py`` writes them) into ``summary.json``, and
written as the Markdown tables of ``summary.md`` (the report shows the same tables). Results fine-tuned
with task-stage distillation (``evaluate.distil_from``) say so in both: ``distilled_from`` on their
entries, and a ``(task KD from MODEL)`` mark on their rows.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import scipy.stats

from monodistill.evaluate.metrics import main_metric
from monodistill.evaluate.tasks import Task

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SIGNIFICANCE_LEVELS = ((0.01, "**"), (0.05, "*"))
"""p-value thresholds of the marks beside a score: Welch's t-test over seeds against the first model."""
DISTILLED_KEYS = ("label", "model", "alpha", "temperature")
"""What a summary entry keeps of its runs' ``distilled_from`` record."""


def disk_size_mb(model: str) -> float | None:
    """Size of a local model's weight files in MB; None for Hub ids."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    return sum(file.stat().st_size for file in folder.iterdir() if file.suffix in WEIGHT_SUFFIXES) / 1e6


def summarise(
    folders: list[Path], models: list[str], labels: list[str], tasks: list[Task], seeds: list[int]
) -> dict[str, Any]:
    """Mean and std of every metric and cost figure per model and task, with speed ratios to the first model.

    Only this evaluation's seeds are read: results of other seeds left in the folder by earlier runs are not.
    """
    results: dict[str, Any] = {}
    for model, label, folder in zip(models, labels, folders, strict=True):
        per_task: dict[str, Any] = {}
        parameters: dict[str, int] = {}
        for task in tasks:
            files = [folder / task.name / f"seed-{seed}.json" for seed in seeds]
            runs = [json.loads(p.read_text()) for p in files if p.is_file()]
            if not runs:
                continue
            fields = {**{f"metric.{k}": [r["metrics"][k] for r in runs] for k in runs[0]["metrics"]}}
            for key in ("finetune_seconds", "train_samples_per_second", "inference_samples_per_second"):
                fields[key] = [r[key] for r in runs]
            # One evaluation distils every seed alike (a result made otherwise is recomputed, not reused).
            distilled = runs[0].get("distilled_from")
            per_task[task.name] = {
                "main_metric": main_metric(task.metric),
                "seeds": [r["seed"] for r in runs],
                # Cost figures are comparable only between runs at the same precision.
                "mixed_precision": sorted({r.get("mixed_precision", "no") for r in runs}),
                "distilled_from": {key: distilled.get(key) for key in DISTILLED_KEYS} if distilled else None,
                **{key: _mean_std(values) for key, values in fields.items()},
            }
            parameters = runs[0]["parameters"]
        results[label] = {"model": model, "disk_mb": disk_size_mb(model), "parameters": parameters, "tasks": per_task}
    baseline = results[labels[0]]["tasks"]
    for task in tasks:
        _rank_and_compare([results[label]["tasks"].get(task.name) for label in labels])
    for label in labels:
        for name, entry in results[label]["tasks"].items():
            base = baseline.get(name)
            if base:
                entry["finetune_speedup"] = base["finetune_seconds"]["mean"] / entry["finetune_seconds"]["mean"]
                entry["inference_speedup"] = (
                    entry["inference_samples_per_second"]["mean"] / base["inference_samples_per_second"]["mean"]
                )
    precisions = sorted(
        {p for entry in results.values() for task in entry["tasks"].values() for p in task["mixed_precision"]}
    )
    return {
        "baseline": labels[0],
        "tasks": [task.name for task in tasks],
        "mixed_precision": precisions,
        "models": results,
    }


def _rank_and_compare(entries: list[dict[str, Any] | None]) -> None:
    """Add each model's rank on a task (1 = best mean) and Welch's t-test over seeds against the first.

    Welch's test compares the seeds' scores without assuming equal variances; it needs at least two
    seeds per model, and fine-tuning seeds are the variation a reader can rerun. A paired bootstrap over
    test examples would need every prediction stored; seeds are what the results hold.
    """
    present = [entry for entry in entries if entry is not None]
    if not present:
        return
    key = f"metric.{present[0]['main_metric']}"
    order = sorted(present, key=lambda entry: -entry[key]["mean"])
    for entry in present:
        entry["rank"] = 1 + sum(other[key]["mean"] > entry[key]["mean"] for other in order)
    base = entries[0]
    for entry in present[1:] if base is present[0] else []:
        first, other = base[key]["values"], entry[key]["values"]  # type: ignore[index]
        if len(first) < 2 or len(other) < 2 or statistics.pstdev(first + other) == 0:
            continue
        entry["welch_p"] = float(scipy.stats.ttest_ind(other, first, equal_var=False).pvalue)


def _mark(result: dict[str, Any]) -> str:
    p = result.get("welch_p")
    return next((mark for level, mark in SIGNIFICANCE_LEVELS if p is not None and p < level), "")


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


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


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: quality (mean ± std over seeds, rank, significance) and cost (ratios to the baseline)."""
    tasks = summary["tasks"]
    notes = {label: distilled_note(summary, entry) for label, entry in summary["models"].items()}
    lines = [
        f"Scores: mean ± std over seeds, (rank among the models); * p < 0.05, ** p < 0.01 against "
        f"{summary['baseline']} (Welch's t-test over seeds; needs 2 or more seeds).",
    ]
    distilled = [
        result["distilled_from"]
        for entry in summary["models"].values()
        for result in entry["tasks"].values()
        if result.get("distilled_from")
    ]
    if distilled:
        lines.append(
            "Rows marked (task KD from MODEL) were fine-tuned with task-stage distillation: "
            f"(1 - {distilled[0]['alpha']}) x task loss + {distilled[0]['alpha']} x T^2 x KL to MODEL's fine-tuned "
            f"logits, T = {distilled[0]['temperature']}; the others plainly. Ranks and p-values compare both kinds "
            "in one ranking."
        )
    lines += ["", "| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for label, entry in summary["models"].items():
        cells = []
        for task in tasks:
            result = entry["tasks"].get(task)
            if result is None:
                cells.append("-")
                continue
            metric = result[f"metric.{result['main_metric']}"]
            rank = f" ({result['rank']})" if "rank" in result else ""
            cells.append(f"{metric['mean'] * 100:.2f} ± {metric['std'] * 100:.2f}{_mark(result)}{rank}")
        lines.append(f"| {label}{notes[label]} | " + " | ".join(cells) + " |")
    cost = [
        f"speedups against {summary['baseline']}, same run, same machine",
        f"mixed precision {'/'.join(summary.get('mixed_precision') or ['no'])}",
    ]
    if distilled:  # the pass is made once per task and seed, for every model it teaches
        cost.append("a distilled model's fine-tuning time leaves out its teacher's logit pass")
    lines += [
        "",
        f"Cost ({', '.join(cost)}):",
        "",
        "| model | parameters | non-embedding | disk MB | task | fine-tune s | fine-tune speedup | "
        "inference samples/s | inference speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in summary["models"].items():
        parameters, disk = entry["parameters"], entry["disk_mb"]
        for task, result in entry["tasks"].items():
            lines.append(
                f"| {label}{notes[label]} | {parameters['total'] / 1e6:.1f}M | "
                f"{parameters['non_embedding'] / 1e6:.1f}M | "
                f"{'-' if disk is None else f'{disk:.0f}'} | {task} | {result['finetune_seconds']['mean']:.1f} | "
                f"{result.get('finetune_speedup', float('nan')):.2f}x | "
                f"{result['inference_samples_per_second']['mean']:.1f} | "
                f"{result.get('inference_speedup', float('nan')):.2f}x |"
            )
    return "\n".join(lines) + "\n"
