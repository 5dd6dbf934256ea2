"""The summary of an evaluation: mean ± std over seeds per model and task, ranks, significance and cost.

Read from the seed results in the output folder (``harness.py`` writes them) into ``summary.json``, and
written as the Markdown tables of ``summary.md`` (the report shows the same tables). Results fine-tuned
with task-stage distillation (``evaluate.distil_from``) say so in both: ``distilled_from`` on their
entries, and a ``(task KD from MODEL)`` mark on their rows.

Beside the scores, the summary records what a reader needs to weigh them: where each task's data was read
(``task_sources``: a Hub dataset and split, or local files; a name alone does not say), each task's constant-prediction
score (the most frequent test label everywhere: the floor a model must beat), one parameter count per
model (the encoder with its embeddings, heads aside: the same whatever head a model carries, so the
report and the model card give one figure) and the dtype its weight files are stored in, since a bf16
file is half the size of a float32 one with as many parameters.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import scipy.stats
import torch
from transformers import AutoConfig, AutoModel

from monodistill.evaluate.machine import BUSY_MARGIN, describe_machine
from monodistill.evaluate.metrics import METRIC_NAMES, main_metric, majority_class
from monodistill.evaluate.tasks import Task

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SIGNIFICANCE_LEVELS = ((0.01, "**"), (0.05, "*"))
"""p-value thresholds of the marks beside a score: Welch's t-test over seeds against the first model."""
DISTILLED_KEYS = ("label", "model", "alpha", "temperature")
"""What a summary entry keeps of its runs' ``distilled_from`` record."""
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16", "I8": "int8"}
ENCODER_COUNTED = "the encoder with its embeddings, heads aside"
CLASSIFIER_COUNTED = "the fine-tuned classifier, one task's head included"
"""What a summary's parameter counts are of: ``encoder_parameters`` (since they were recorded), else the
classifier of the last task fine-tuned (older summaries)."""


def disk_size_mb(model: str) -> float | None:
    """Size of a local model's weight files in MB; None for Hub ids."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    return sum(file.stat().st_size for file in folder.iterdir() if file.suffix in WEIGHT_SUFFIXES) / 1e6


def weights_dtype(model: str) -> str | None:
    """The dtype a local model's safetensors files store (``float32/bfloat16`` when mixed), read from their
    headers; None for a Hub id or a folder without safetensors files. ``config.json``'s ``dtype`` is not
    evidence: a bf16 file may say float32 there."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    dtypes = set()
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with open(file, "rb") as handle:
                header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        except (OSError, ValueError):  # a damaged file: the checks that load it say so
            return None
        dtypes |= {entry["dtype"] for key, entry in header.items() if key != "__metadata__"}
    return "/".join(sorted(SAFETENSORS_DTYPES.get(dtype, dtype.lower()) for dtype in dtypes)) or None


def encoder_counts(model: torch.nn.Module) -> dict[str, int]:
    """Total, embedding (the input embedding matrix) and non-embedding parameters of a model's encoder with
    its embeddings: its heads and pooler aside, so that a masked LM and any classifier of it count alike."""
    encoder = getattr(model, "base_model", model)
    total = sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith("pooler."))
    embedding = sum(p.numel() for p in encoder.get_input_embeddings().parameters())  # type: ignore[operator]
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def encoder_parameter_counts(model: str, revision: str | None = None) -> dict[str, int] | None:
    """``encoder_counts`` of a model folder or Hub id, built from its config on the meta device (no weights
    read); None when its config cannot be read."""
    try:
        config = AutoConfig.from_pretrained(model, revision=revision)
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        return encoder_counts(AutoModel.from_config(config))


def parameter_counts_of(entry: dict[str, Any]) -> tuple[dict[str, int], str]:
    """A summary entry's parameter counts and what they are of (``ENCODER_COUNTED`` or ``CLASSIFIER_COUNTED``)."""
    if entry.get("encoder_parameters"):
        return entry["encoder_parameters"], ENCODER_COUNTED
    return entry.get("parameters") or {}, CLASSIFIER_COUNTED


def constant_prediction(task: Task) -> dict[str, Any] | None:
    """The scores of predicting the most frequent test label for every example (every word of a token task),
    and that label, over the task's whole test split: the floor a model must beat. None for an empty split.
    Results record it over the examples they scored (``majority_class``), which the summary prefers."""
    return majority_class(task, task.test)


def summarise(
    folders: list[Path],
    models: list[str],
    labels: list[str],
    tasks: list[Task],
    seeds: list[int],
    timing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean and std of every metric and cost figure per model and task, with speed ratios to the first model.

    Only this evaluation's seeds are read: results of other seeds left in the folder by earlier runs are not.
    ``timing``, the interleaved inference measurement (``timing.measure_inference``), gives the inference
    speedups where it has the model and task; the fine-tuning runs' own passes give the others.
    """
    results: dict[str, Any] = {}
    majorities: dict[str, Any] = {}  # task -> its majority class over the examples scored, as results record it
    for model, label, folder in zip(models, labels, folders, strict=True):
        per_task: dict[str, Any] = {}
        parameters: dict[str, int] = {}
        for task in tasks:
            files = [folder / task.name / f"seed-{seed}.json" for seed in seeds]
            runs = [json.loads(p.read_text()) for p in files if p.is_file()]
            if not runs:
                continue
            if runs[0].get("majority_class"):
                majorities.setdefault(task.name, runs[0]["majority_class"])
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
                # The examples fine-tuned on and scored (evaluate.max_train_samples, max_eval_samples), alike per seed.
                "train_samples": runs[0].get("train_samples"),
                "test_samples": runs[0].get("test_samples"),
                **{key: _mean_std(values) for key, values in fields.items()},
                **_load_context(runs),
                **_training_record(runs),
            }
            parameters = runs[0]["parameters"]
        results[label] = {
            "model": model,
            "disk_mb": disk_size_mb(model),
            "weights_dtype": weights_dtype(model),
            "encoder_parameters": encoder_parameter_counts(model),
            "parameters": parameters,  # of the last task's fine-tuned classifier, its head included
            "tasks": per_task,
        }
    baseline = results[labels[0]]["tasks"]
    for task in tasks:
        _rank_and_compare([results[label]["tasks"].get(task.name) for label in labels])
    for label in labels:
        for name, entry in results[label]["tasks"].items():
            base = baseline.get(name)
            if base:
                entry["finetune_speedup"] = base["finetune_seconds"]["mean"] / entry["finetune_seconds"]["mean"]
                # A ratio is as busy as the busier of its two timings (None: neither recorded its load).
                flags = [entry.get("finetune_busy"), base.get("finetune_busy")]
                if entry is not base:  # the baseline's own ratio is 1 whatever the load
                    entry["finetune_speedup_busy"] = True if True in flags else (None if None in flags else False)
                entry["inference_speedup"] = (
                    entry["inference_samples_per_second"]["mean"] / base["inference_samples_per_second"]["mean"]
                )
            interleaved = ((timing or {}).get("tasks", {}).get(name) or {}).get("models", {}).get(label)
            if interleaved:
                entry["inference_interleaved"] = interleaved
                entry["inference_speedup"] = interleaved["speedup"]
    precisions = sorted(
        {p for entry in results.values() for task in entry["tasks"].values() for p in task["mixed_precision"]}
    )
    return {
        "baseline": labels[0],
        "tasks": [task.name for task in tasks],
        "mixed_precision": precisions,
        # Over the examples scored (a capped test split is a sample); over the whole split for older results.
        "constant_prediction": {task.name: majorities.get(task.name) or constant_prediction(task) for task in tasks},
        "inference_timing": timing,
        "machines": sorted(
            {
                machine
                for entry in results.values()
                for task in entry["tasks"].values()
                for machine in task.get("machines", [])
            }
        ),
        "task_sources": {task.name: task.source for task in tasks},
        "models": results,
    }


def _load_context(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the runs' fine-tuning times were measured on and under: the machines, the peak 1-minute load
    average, and whether any run was busy (None where no run recorded its load: results made before)."""
    loads = [run["load"]["finetune"] for run in runs if run.get("load")]
    peaks = [load["peak"] for load in loads if load.get("peak") is not None]
    busy = [load.get("busy") for load in loads]
    return {
        "machines": sorted({describe_machine(run["machine"]) for run in runs if run.get("machine")}),
        "finetune_load_peak": max(peaks) if peaks else None,
        "finetune_busy": True if True in busy else (False if busy and None not in busy else None),
        "threads": sorted({run["machine"]["torch_threads"] for run in runs if run.get("machine")}),
    }


def _training_record(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The learning rate each seed was fine-tuned with, how it was chosen, and the seeds whose model ended at
    the majority class, with why (``metrics.near_majority``); empty where the runs were made before these were
    recorded."""
    if "learning_rate" not in runs[0]:
        return {}
    selection = runs[0].get("learning_rate_selection")
    chosen_by = None
    if selection:
        chosen_by = {key: selection[key] for key in ("by", "dev")}
        chosen_by["candidates"] = [trial["learning_rate"] for trial in selection["trials"]]
    return {
        "learning_rates": [run["learning_rate"] for run in runs],
        "learning_rate_selection": chosen_by,
        "near_majority": {str(run["seed"]): run["near_majority"] for run in runs if run.get("near_majority")},
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
        # Both models alike on every seed: the test's standard error is 0 and its t undefined (0/0 for equal
        # scores, infinite for others), so no p-value is given rather than scipy's 0 from two seeds apiece.
        if len(first) < 2 or len(other) < 2 or not (_varies(first) or _varies(other)):
            continue
        with warnings.catch_warnings():
            # One model's seeds alike (or alike but for float rounding) make scipy warn of precision loss in
            # its variance, which is then 0 as it should be: the test stands on the other model's spread.
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            p = float(scipy.stats.ttest_ind(other, first, equal_var=False).pvalue)
        if math.isfinite(p):
            entry["welch_p"] = p


def _varies(values: list[float]) -> bool:
    """Whether seed scores differ beyond float rounding (``1e-12`` relative)."""
    return max(values) - min(values) > 1e-12 * max(1.0, *(abs(value) for value in values))


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


def _main_scores(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        result[f"metric.{result['main_metric']}"]
        for entry in summary["models"].values()
        for result in entry["tasks"].values()
    ]


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count:,}"


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: quality (mean ± std over seeds, rank, significance), size and speed (ratios to the baseline)."""
    notes = {label: distilled_note(summary, entry) for label, entry in summary["models"].items()}
    counts = {seed_count(metric) for metric in _main_scores(summary)}
    mixed = len(counts - {None}) > 1
    ranked = any("rank" in result for entry in summary["models"].values() for result in entry["tasks"].values())
    if not ranked:  # ranks and significance are computed together (_rank_and_compare)
        significance = ", with no ranks or significance tests (this summary was written before they were)"
    elif counts == {1}:
        significance = ", then the rank among the models; no significance test with one seed"
    else:
        significance = (
            f", then the rank among the models; * p < 0.05, ** p < 0.01 against {summary['baseline']} "
            "(Welch's t-test over seeds; needs 2 or more seeds)"
        )
    lines = [f"Scores in points: {seeds_phrase(counts)}{significance}."]
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
    columns = score_columns(summary)
    if any(key == "macro_f1" for _, key in columns):
        lines.append(
            "Classification tasks show macro-F1 beside accuracy (rank and significance are the accuracy's): a model "
            "that predicts mostly one class keeps an accuracy near the constant prediction's, and only its "
            "macro-F1 shows it."
        )
    lines += ["", "| model | " + " | ".join(column_headers(columns)) + " |", "|---" * (len(columns) + 1) + "|"]
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
    lines += _constant_row(summary, columns)
    lines += [f"\n{note}" for note in (majority_note(summary), learning_rate_note(summary)) if note]
    return "\n".join(lines + _size_table(summary, notes) + _speed_table(summary, notes, bool(distilled))) + "\n"


def majority_note(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """Which models of ``labels`` (default: all) ended at the majority class on which task and seed, and why;
    "" when none did."""
    flagged = [
        f"{label} on {task} (seed {seed}: {why})"
        for label, entry in summary["models"].items()
        if labels is None or label in labels
        for task, result in entry["tasks"].items()
        for seed, why in (result.get("near_majority") or {}).items()
    ]
    if not flagged:
        return ""
    return (
        f"Ends at the majority class: {'; '.join(flagged)}. Such a score says no more than the label distribution; "
        "evaluate.learning_rates chooses the learning rate on held-out data."
    )


def learning_rate_note(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """The learning rate each model of ``labels`` (default: all) was fine-tuned with per task, and how it was
    chosen; "" for a summary that does not record it."""
    chosen: dict[str, list[str]] = {}  # how it was chosen -> "model on task: rate"
    for label, entry in summary["models"].items():
        for task, result in entry["tasks"].items():
            if not result.get("learning_rates") or (labels is not None and label not in labels):
                continue
            selection = result.get("learning_rate_selection")
            if selection:
                name = METRIC_NAMES.get(selection["by"], selection["by"])
                candidates = ", ".join(f"{rate:g}" for rate in selection["candidates"])
                how = f"chosen from {candidates} by {name} on {selection['dev']}"
            else:
                how = "evaluate.learning_rate, not chosen on held-out data"
            rates = "/".join(f"{rate:g}" for rate in dict.fromkeys(result["learning_rates"]))
            chosen.setdefault(how, []).append(f"{label} on {task}: {rates}")
    parts = [f"{', '.join(items)} ({how})" for how, items in chosen.items()]
    return f"Fine-tuning learning rate: {'; '.join(parts)}." if parts else ""


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


def measurement_notes(summary: dict[str, Any], table: bool = True) -> list[str]:
    """How the speed figures were measured, in sentences: fine-tuning sequential, inference interleaved (or,
    in summaries made before, each model's own pass), and the machines they ran on; ``table``: with the
    speed table's peak-load column explained."""
    timing = summary.get("inference_timing")
    peak = " (peak load: the highest 1-minute load average during the runs)" if table else ""
    notes = [
        "Fine-tuning: each model's own run, one after another, so a change of the machine's load between runs "
        f"moves its ratio{peak}."
    ]
    if timing:
        sizes = sorted({task["batch_size"] for task in timing["tasks"].values()})
        threads = timing["machine"]["torch_threads"]
        notes.append(
            f"Inference: measured interleaved, {summary['baseline']} and each model taking turns on one batch of "
            f"{'/'.join(map(str, sizes))} test examples, median of {timing['rounds']} turns each, on "
            f"{threads} torch thread{'s' if threads != 1 else ''}, so a steady load slows both alike and the "
            "ratio holds."
        )
    else:
        notes.append("Inference: each model's pass over the test split after its fine-tuning, one after another.")
    machines = list(summary.get("machines") or [])
    if not machines and timing:
        machines.append(describe_machine(timing["machine"]))
    if machines:
        notes.append(f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}.")
    else:
        notes.append("The machine and its load were not recorded (results made before they were).")
    return notes


def busy_measurements(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """What the busy timings of ``labels`` (default: every model) are, and how far to trust their ratios; ""
    when none was busy."""
    models = {label: entry for label, entry in summary["models"].items() if labels is None or label in labels}
    busy = [
        (label, task, result)
        for label, entry in models.items()
        for task, result in entry["tasks"].items()
        if result.get("finetune_busy")
    ]
    parts = []
    if busy:
        peak = max(result["finetune_load_peak"] for _, _, result in busy)
        threads = sorted({thread for _, _, result in busy for thread in result.get("threads", [])})
        runs = ", ".join(f"{label} on {task}" for label, task, _ in busy)
        parts.append(
            f"Busy: {runs} fine-tuned while the 1-minute load average (up to {peak:.1f}) was above the "
            f"{'/'.join(map(str, threads))} torch threads used by more than {BUSY_MARGIN}: other work held CPUs "
            "they wanted, so those times, and the fine-tuning speedups that involve them, are not the models' own "
            "speed; rerun on an idle machine to measure it."
        )
    timing = summary.get("inference_timing") or {}
    if (timing.get("load") or {}).get("busy"):
        parts.append(
            f"The interleaved inference measurement ran under load too (peak {timing['load']['peak']:.1f}); "
            "both models of each ratio shared it."
        )
    return " ".join(parts)


def cost_note(summary: dict[str, Any], labels: list[str]) -> str:
    """A model card's paragraph under its speedups: how they were measured, on what, and any busy timing of
    ``labels`` (the model and its baseline)."""
    return " ".join([*measurement_notes(summary, table=False), busy_measurements(summary, labels)]).strip()


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
