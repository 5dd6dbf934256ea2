"""The summary of an evaluation: mean ± std over seeds per model and task, ranks, significance and cost.

Read from the seed results in the output folder (``harness.py`` writes them) into ``summary.json``, and
written as the Markdown tables of ``summary.md`` (``tables.py``; the report shows the same tables). Results
fine-tuned with task-stage distillation (``evaluate.distil_from``) say so in both: ``distilled_from`` on
their entries, and a ``(task KD from MODEL)`` mark on their rows.

Beside the scores, the summary records what a reader needs to weigh them: where each task's data was read
(``task_sources``: a Hub dataset and split, or local files; a name alone does not say), each task's constant-prediction
score (the most frequent test label everywhere: the floor a model must beat), one parameter count per
model (the encoder with its embeddings, heads aside: the same whatever head a model carries, so the
report and the model card give one figure; a decoder's likewise, its LM head counted once as the embeddings
where it is tied to them, left out where it is a matrix of its own: ``counted_as`` says which kind) and the
dtype its weight files are stored in, since a bf16 file is half the size of a float32 one with as many
parameters.
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

from monodistill.evaluate.machine import describe_machine
from monodistill.evaluate.metrics import main_metric, majority_class
from monodistill.evaluate.tasks import Task
from monodistill.families import family_of

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DISTILLED_KEYS = ("label", "model", "alpha", "temperature")
"""What a summary entry keeps of its runs' ``distilled_from`` record."""
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16", "I8": "int8"}
ENCODER_COUNTED = "the encoder with its embeddings, heads aside"
DECODER_COUNTED = "the decoder with its embeddings, an untied LM head aside"
"""What ``encoder_counts`` counts of a causal LM: its base model, so a head tied to the embeddings is counted once
(as them) and an untied one (Llama-3 8B's: 0.5B of its weights) not at all."""
COUNTED = {"masked": ENCODER_COUNTED, "causal": DECODER_COUNTED}
"""What ``encoder_counts`` counts, in words, by the objective of the model's family (``counted_as``)."""
CLASSIFIER_COUNTED = "the fine-tuned classifier, one task's head included"
"""What a summary's parameter counts are of: ``encoder_parameters`` (since they were recorded: of an encoder or
a decoder, ``counted_as``), else the classifier of the last task fine-tuned (older summaries)."""


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


def counted_as(model_or_config: Any) -> str:
    """What ``encoder_counts`` counts of a model, its config or a ``model_type`` name, in words: ``ENCODER_COUNTED``
    for a masked LM (and a family no adapter serves), ``DECODER_COUNTED`` for a causal one."""
    return COUNTED[family_of(model_or_config, required=False).objective]


def encoder_parameter_counts(model: str, revision: str | None = None) -> dict[str, int] | None:
    """``encoder_counts`` of a model folder or Hub id, built from its config on the meta device (no weights
    read); None when its config cannot be read."""
    config = _read_config(model, revision)
    if config is None:
        return None
    with torch.device("meta"):
        return encoder_counts(AutoModel.from_config(config))


def _read_config(model: str, revision: str | None = None) -> Any:
    try:
        return AutoConfig.from_pretrained(model, revision=revision)
    except (OSError, ValueError):
        return None


def parameter_counts_of(entry: dict[str, Any]) -> tuple[dict[str, int], str]:
    """A summary entry's parameter counts and what they are of (``ENCODER_COUNTED``, ``DECODER_COUNTED`` or
    ``CLASSIFIER_COUNTED``); entries recorded before ``counted_as`` was are an encoder's."""
    if entry.get("encoder_parameters"):
        return entry["encoder_parameters"], entry.get("parameters_counted") or ENCODER_COUNTED
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
        runs = {task.name: _read_runs(folder / task.name, seeds) for task in tasks}
        for name, task_runs in runs.items():
            if task_runs and task_runs[0].get("majority_class"):
                majorities.setdefault(name, task_runs[0]["majority_class"])
        results[label] = _model_entry(model, tasks, runs)
    for task in tasks:
        rank_and_compare([results[label]["tasks"].get(task.name) for label in labels])
    _add_speedups(results, labels, timing)
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


def _read_runs(task_folder: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """The stored results of ``seeds`` in a model's task folder (``seed-<n>.json``), those that exist."""
    files = [task_folder / f"seed-{seed}.json" for seed in seeds]
    return [json.loads(path.read_text()) for path in files if path.is_file()]


def _model_entry(model: str, tasks: list[Task], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A model's summary entry: where it is, its size, and each task it has results on (``_task_entry``)."""
    per_task: dict[str, Any] = {}
    parameters: dict[str, int] = {}
    for task in tasks:
        if runs[task.name]:
            per_task[task.name] = _task_entry(task, runs[task.name])
            parameters = runs[task.name][0]["parameters"]
    config = _read_config(model)
    return {
        "model": model,
        "disk_mb": disk_size_mb(model),
        "weights_dtype": weights_dtype(model),
        "encoder_parameters": encoder_parameter_counts(model),
        "parameters_counted": counted_as(config) if config is not None else None,
        "parameters": parameters,  # of the last task's fine-tuned classifier, its head included
        "tasks": per_task,
    }


def _task_entry(task: Task, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's results on one task: mean and std over its seeds of every metric and cost figure, and what
    they were measured with."""
    fields = {**{f"metric.{k}": [r["metrics"][k] for r in runs] for k in runs[0]["metrics"]}}
    for key in ("finetune_seconds", "train_samples_per_second", "inference_samples_per_second"):
        fields[key] = [r[key] for r in runs]
    # One evaluation distils every seed alike (a result made otherwise is recomputed, not reused).
    distilled = runs[0].get("distilled_from")
    return {
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


def _add_speedups(results: dict[str, Any], labels: list[str], timing: dict[str, Any] | None) -> None:
    """Add each result's fine-tuning and inference speedups over the baseline's (the first model's) on its task,
    the interleaved inference measurement's where it has the model and task."""
    baseline = results[labels[0]]["tasks"]
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


def rank_and_compare(entries: list[dict[str, Any] | None]) -> None:
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


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }
