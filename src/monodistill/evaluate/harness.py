"""``monodistill evaluate``: every model on every task and seed, under identical settings, in one run.

Layout of the output folder::

    OUT/config.yaml                               resolved EvaluateConfig
    OUT/environment.json                          package versions, git SHA, command line, devices
    OUT/results/<model>/<task>/seed-<n>.json      one fine-tuning run: metrics, timing, sizes
    OUT/summary.json                              mean/std per model and task, cost and ratios
    OUT/summary.md                                the same as tables

A finished (model, task, seed) result is never redone, so an interrupted evaluation resumes.
Speed ratios are against the first model (the teacher), measured in the same run on the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from monodistill import checkpoint as ckpt
from monodistill.config import EvaluateConfig, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.finetune import finetune
from monodistill.evaluate.metrics import main_metric
from monodistill.evaluate.tasks import Task, load_task
from monodistill.teacher import is_local_reference, load_tokenizer

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
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
    labels = model_labels(config.models)
    tokenizers = {model: load_tokenizer(model, kind="model") for model in config.models}
    for model in config.models:
        if is_local_reference(model) and not (Path(model) / "config.json").is_file():
            raise MonodistillError(f"model folder {model} holds no config.json")
    tasks = [load_task(reference) for reference in config.tasks]
    overlaps = {task.name: check_overlap(task) for task in tasks}
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / "config.yaml")
    ckpt.write_environment(output)

    for model, label in zip(config.models, labels, strict=True):
        for task in tasks:
            for seed in range(config.seed, config.seed + config.seeds):
                path = output / "results" / label / task.name / f"seed-{seed}.json"
                if path.is_file():
                    continue
                print(f"fine-tuning {label} on {task.name} (seed {seed})")
                result = finetune(model, tokenizers[model], task, config, seed)
                result.update(model=model, label=label, task=task.name, seed=seed, metric=task.metric)
                result["test_overlap"] = overlaps[task.name]
                path.parent.mkdir(parents=True, exist_ok=True)
                ckpt.atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    summary = summarise(output, config.models, labels, tasks)
    ckpt.atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
    table = format_summary(summary)
    ckpt.atomic_write_text(output / "summary.md", table)
    print(table)
    return output


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


def summarise(output: Path, models: list[str], labels: list[str], tasks: list[Task]) -> dict[str, Any]:
    """Mean and std of every metric and cost figure per model and task, with speed ratios to the first model."""
    results: dict[str, Any] = {}
    for model, label in zip(models, labels, strict=True):
        per_task: dict[str, Any] = {}
        parameters: dict[str, int] = {}
        for task in tasks:
            runs = [json.loads(p.read_text()) for p in sorted((output / "results" / label / task.name).glob("*.json"))]
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


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: quality (mean ± std over seeds) and cost (with ratios to the baseline)."""
    tasks = summary["tasks"]
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for label, entry in summary["models"].items():
        cells = []
        for task in tasks:
            result = entry["tasks"].get(task)
            if result is None:
                cells.append("-")
                continue
            metric = result[f"metric.{result['main_metric']}"]
            cells.append(f"{metric['mean'] * 100:.2f} ± {metric['std'] * 100:.2f}")
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
