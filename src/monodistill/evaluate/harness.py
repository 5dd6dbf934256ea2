"""``monodistill evaluate``: every model on every task and seed, under identical settings, in one run.

Layout of the output folder::

    OUT/config.yaml                               resolved EvaluateConfig
    OUT/environment.json                          package versions, git SHA, command line, devices
    OUT/results/<model>-<id>/<task>/seed-<n>.json one fine-tuning run: metrics, timing, sizes, and
                                                  what it was made from (model, weights, task, settings)
    OUT/results/<model>-<id>/<task>/model/        with evaluate.save_models: the first seed's fine-tuned
                                                  classifier and tokenizer (``monodistill export`` takes it)
    OUT/summary.json                              mean/std per model and task, cost and ratios
    OUT/summary.md                                the same as tables

Results are filed under the model's short name plus a hash of where it is (two models both named
``student`` never share results). A stored result is reused only when it was made from the same
weights (a local folder's digest, a Hub id's commit), task data, seed and fine-tuning settings;
otherwise it is recomputed, saying why. So an interrupted evaluation resumes, and a changed setting,
retrained model or updated Hub repository is never scored from old runs.
Speed ratios are against the first model (the teacher), measured in the same run on the same machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import scipy.stats
import torch
from transformers import AutoModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.config import EvaluateConfig, config_to_dict, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.finetune import finetune, usable_max_length
from monodistill.evaluate.metrics import main_metric
from monodistill.evaluate.tasks import Task, load_task
from monodistill.teacher import is_local_reference, load_model_config, load_tokenizer, load_weights

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SAVED_MODEL_DIR = "model"
"""Where ``evaluate.save_models`` keeps a fine-tuned classifier, beside its task's seed results."""
MAX_TEST_OVERLAP = 0.5
"""Real splits share a few percent of their inputs (3% on Hatespeech Filipino); a copied split shares most."""


def run_evaluation(config: EvaluateConfig) -> Path:
    """Validate every model and task first, then fine-tune and score; returns the output folder."""
    if not config.models:
        raise MonodistillError("no model to evaluate: pass --model PATH_OR_HUB_ID (the teacher first)")
    if not config.tasks:
        raise MonodistillError("no task: pass --task NAME_OR_YAML")
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR")
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise MonodistillError("evaluate.mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on this machine")
    output = Path(config.output_dir)
    runfolder.check_output_path(output)
    labels = model_labels(config.models)
    tokenizers = {model: check_model(model, config.max_length) for model in config.models}
    tasks = [load_task(reference) for reference in config.tasks]
    overlaps = {task.name: check_overlap(task) for task in tasks}
    with runfolder.claim(output):
        ckpt.write_environment(output)
        folders = [result_folder(output, label, model) for model, label in zip(config.models, labels, strict=True)]
        tokenized: dict[tuple[Any, ...], Any] = {}  # tokenised tasks, shared by models with one tokenizer
        for model, label, folder in zip(config.models, labels, folders, strict=True):
            identity = model_identity(model)
            for task in tasks:
                made_from = {**identity, "task": task_digest(task), "settings": finetune_settings(config)}
                for seed in range(config.seed, config.seed + config.seeds):
                    path = folder / task.name / f"seed-{seed}.json"
                    stale = _stale_reason(path, made_from)
                    keep = folder / task.name / SAVED_MODEL_DIR if config.save_models and seed == config.seed else None
                    if stale is None and keep is not None and not (keep / "config.json").is_file():
                        stale = ": keeping the fine-tuned model (evaluate.save_models)"
                    if stale is None:
                        continue
                    print(f"fine-tuning {label} on {task.name} (seed {seed}){stale}")
                    result = finetune(model, tokenizers[model], task, config, seed, tokenized, save_to=keep)
                    result.update(model=model, label=label, task=task.name, seed=seed, metric=task.metric)
                    result.update(test_overlap=overlaps[task.name], made_from=made_from)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    ckpt.atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        seeds = list(range(config.seed, config.seed + config.seeds))
        summary = summarise(folders, config.models, labels, tasks, seeds)
        # Written with the summary, so the folder's config is the one its results were made with.
        save_config(config, output / "config.yaml")
        ckpt.atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
        table = format_summary(summary)
        ckpt.atomic_write_text(output / "summary.md", table)
    print(table)
    return output


def check_model(model: str, max_length: int) -> PreTrainedTokenizerBase:
    """Refuse, before anything trains, a model that cannot be evaluated as it is; returns its tokenizer.

    A local folder's files must be intact (``checkpoint.check_model_folder``), its tokenizer its own
    (``teacher.load_tokenizer``) and its weights of the shapes config.json builds: read on the meta
    device, shapes without data, as ``finetune`` will load them. A ``max_length`` beyond the model's
    positions is cut to them, and said here, once per model.
    """
    model_config = load_model_config(model, kind="model")
    if is_local_reference(model):
        ckpt.check_model_folder(Path(model), what="model")
    tokenizer = load_tokenizer(model, kind="model", model_config=model_config)
    progress_bar = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a bar for reading shapes alone would look like a load
    try:
        load_weights(AutoModel, model, kind="model", quiet=True, device_map="meta")
    finally:
        if progress_bar:
            transformers_logging.enable_progress_bar()
    used = usable_max_length(max_length, model_config)
    if used < max_length:
        print(f"model {model}: max_length={max_length} is beyond its {used} positions; using {used}")
    return tokenizer


def result_folder(output: Path, label: str, model: str) -> Path:
    """Where a model's results live: its short name plus a hash of where it is."""
    where = str(Path(model).resolve()) if is_local_reference(model) else model
    return output / "results" / f"{label}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def model_identity(model: str) -> dict[str, Any]:
    """Where a model is and what its weights are: a local folder's file digest, or a Hub id's commit.

    A Hub id names a branch that moves; its commit is what pins the files (None when it cannot be resolved).
    """
    if not is_local_reference(model):
        return {"model": model, "commit": resolve_hub_commit(model)}
    folder = Path(model).resolve()
    digest = hashlib.sha256()
    for file in sorted(f for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return {"model": str(folder), "weights": digest.hexdigest()[:16]}


def resolve_hub_commit(model: str) -> str | None:
    """The commit a Hub model id's default branch points to: asked of the Hub, or offline the one the cache recorded.

    transformers resolves the branch the same way when it loads the model, so on this machine both name one
    commit (unless the Hub moves between the two). None, with a warning, when neither can answer.
    """
    offline = huggingface_hub.constants.is_offline_mode()
    try:
        return huggingface_hub.resolve_revision(model, local_files_only=offline).resolved
    except Exception as error:  # offline without a cached ref, an unknown or gated repository, an unreachable Hub
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(
            f"warning: could not resolve the Hub commit of {model} ({reason}); its stored results will not be reused",
            file=sys.stderr,
        )
        return None


def task_digest(task: Task) -> str:
    """A digest of a task's labels and data, so an edited task file is not scored from old results."""
    content = [task.name, task.kind, task.labels, task.unseen_labels, task.metric]
    content += [task.train.to_dict(), task.test.to_dict()]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finetune_settings(config: EvaluateConfig) -> dict[str, Any]:
    """Every setting that changes a fine-tuning run's result or cost (models, tasks and paths aside)."""
    settings = config_to_dict(config)
    # save_models changes what is kept, not the result: stored results stay valid when it is switched.
    for name in ("models", "tasks", "seeds", "output_dir", "save_models"):
        settings.pop(name, None)
    return settings


def _stale_reason(path: Path, made_from: dict[str, Any]) -> str | None:
    """None when the stored result can be reused; otherwise a note saying why it is (re)computed."""
    if not path.is_file():
        return ""
    try:
        stored = json.loads(path.read_text()).get("made_from") or {}
    except ValueError:
        return ": the stored result is unreadable, recomputing"
    if "commit" in made_from and made_from["commit"] is None:
        model = made_from["model"]
        return (
            f": the Hub commit of {model} could not be resolved, so no stored result can be matched to it; recomputing"
        )
    changed = [key for key in made_from if stored.get(key) != made_from[key]]
    if not changed:
        return None
    if "settings" in changed and isinstance(stored.get("settings"), dict):
        fields = [key for key in made_from["settings"] if stored["settings"].get(key) != made_from["settings"][key]]
        changed = [key for key in changed if key != "settings"] + [f"evaluate.{key}" for key in fields]
    if "commit" in changed:
        before = str(stored.get("commit") or "none recorded")[:12]
        changed[changed.index("commit")] = f"commit ({before}, now {made_from['commit'][:12]})"
    return f": the stored result was made with other {', '.join(changed)}; recomputing"


def check_overlap(task: Task) -> float:
    """The task's train/test overlap; a test split mostly copied from train would score memorisation.

    Raises:
        MonodistillError: when at least ``MAX_TEST_OVERLAP`` of the test inputs occur in train.
    """
    overlap = task.test_overlap()
    if overlap >= MAX_TEST_OVERLAP:
        raise MonodistillError(
            f"task {task.name}: {overlap:.0%} of the test examples also occur in the training split, so scores "
            "would measure memorisation; point the task at a held-out split"
        )
    if overlap > 0:
        print(f"task {task.name}: {overlap:.1%} of the test examples also occur in the training split")
    return overlap


def model_labels(models: list[str]) -> list[str]:
    """Short, unique, filesystem-safe names: the last path part, with its parent where needed."""
    labels = [Path(model.rstrip("/")).name or model for model in models]
    if len(set(labels)) < len(labels):
        labels = ["__".join(Path(model.rstrip("/")).parts[-2:]) for model in models]
    if len(set(labels)) < len(labels):
        labels = [f"{index}-{label}" for index, label in enumerate(labels)]
    return [label.replace(os.sep, "_") for label in labels]


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
            per_task[task.name] = {
                "main_metric": main_metric(task.metric),
                "seeds": [r["seed"] for r in runs],
                # Cost figures are comparable only between runs at the same precision.
                "mixed_precision": sorted({r.get("mixed_precision", "no") for r in runs}),
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


SIGNIFICANCE_LEVELS = ((0.01, "**"), (0.05, "*"))
"""p-value thresholds of the marks beside a score: Welch's t-test over seeds against the first model."""


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


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: quality (mean ± std over seeds, rank, significance) and cost (ratios to the baseline)."""
    tasks = summary["tasks"]
    lines = [
        f"Scores: mean ± std over seeds, (rank among the models); * p < 0.05, ** p < 0.01 against "
        f"{summary['baseline']} (Welch's t-test over seeds; needs 2 or more seeds).",
        "",
        "| model | " + " | ".join(tasks) + " |",
        "|---" * (len(tasks) + 1) + "|",
    ]
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
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Cost (speedups against {summary['baseline']}, same run, same machine, "
        f"mixed precision {'/'.join(summary.get('mixed_precision') or ['no'])}):",
        "",
        "| model | parameters | non-embedding | disk MB | task | fine-tune s | fine-tune speedup | "
        "inference samples/s | inference speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in summary["models"].items():
        parameters, disk = entry["parameters"], entry["disk_mb"]
        for task, result in entry["tasks"].items():
            lines.append(
                f"| {label} | {parameters['total'] / 1e6:.1f}M | {parameters['non_embedding'] / 1e6:.1f}M | "
                f"{'-' if disk is None else f'{disk:.0f}'} | {task} | {result['finetune_seconds']['mean']:.1f} | "
                f"{result.get('finetune_speedup', float('nan')):.2f}x | "
                f"{result['inference_samples_per_second']['mean']:.1f} | "
                f"{result.get('inference_speedup', float('nan')):.2f}x |"
            )
    return "\n".join(lines) + "\n"
