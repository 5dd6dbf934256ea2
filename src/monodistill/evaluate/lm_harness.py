"""Every model of an evaluation scored on the language-model tasks (``lm_tasks.py``), with no fine-tuning.

Each causal LM is loaded once, as it is (``AutoModelForCausalLM``, float32, frozen, under
evaluate.mixed_precision's autocast), and scored on every such task: bits per byte (``language.py``),
multiple choice (``choice.py``), generation samples (``generation.py``). The score of a model does not
depend on a seed, so each task has one result per model, filed as the fine-tuning results are::

    OUT/results/<model>-<id>/<task>/result.json   metrics, what was counted, samples, and what it was made from

and reused while it was made from the same weights, task content and settings (``results.stale_reason``).
The summary keeps each model's results under ``language`` and the tasks under ``language_tasks``.

Which task kinds a model can serve is checked before anything runs (``check_task_kinds``): these kinds need
a causal LM; a decoder fine-tuned on a sequence or token task needs the task class transformers has for
its family, and a padding token (its EOS where it has none).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import EvaluateConfig
from monodistill.errors import MonodistillError
from monodistill.evaluate.choice import score_choices
from monodistill.evaluate.distil import AUTOCAST_DTYPES
from monodistill.evaluate.generation import describe_settings, generate_samples
from monodistill.evaluate.language import score_text
from monodistill.evaluate.lm_tasks import ChoiceTask, GenerationTask, LanguageTask, TextTask, task_content_digest
from monodistill.evaluate.machine import machine
from monodistill.evaluate.results import model_identity, stale_reason
from monodistill.evaluate.splits import subset, usable_max_length
from monodistill.evaluate.tasks import Task
from monodistill.families import GENERIC, family_of
from monodistill.families.decoder import CAUSAL_ARCHITECTURES
from monodistill.teacher import load_model_config, load_weights, untrained_head_keys

RESULT_FILE = "result.json"
SCORING = "language-model scoring v1 (2026-12)"
"""How these tasks are scored; part of every result's settings, so that a change of method recomputes them."""
SUMMARY_LEFT_OUT = ("made_from", "machine", "predicted", "predicted_per_byte")
"""What a result keeps that its summary entry does not (per-question predictions stay in the result file)."""


def is_causal_lm(model_config: Any) -> bool:
    """Whether a model is a causal LM: its family adapter's objective, else its architectures (``*ForCausalLM``)."""
    family = family_of(model_config, required=False)
    if family is not GENERIC:
        return family.objective == "causal"
    return any(str(name).endswith(CAUSAL_ARCHITECTURES) for name in getattr(model_config, "architectures", None) or [])


def check_task_kinds(
    model: str, tokenizer: PreTrainedTokenizerBase, tasks: list[Task], language_tasks: list[LanguageTask]
) -> None:
    """Refuse, in one line, a task kind ``model`` cannot serve; give a decoder's tokenizer a padding token.

    Raises:
        MonodistillError: a language-model task on a masked LM, or a fine-tuned task kind on a decoder whose
            family has no such task class in transformers.
    """
    model_config = load_model_config(model, kind="model")
    model_type = str(getattr(model_config, "model_type", "?"))
    if not is_causal_lm(model_config):
        if language_tasks:
            first = language_tasks[0]
            raise MonodistillError(
                f"task {first.name} ({first.kind}) scores a causal LM's next-token probabilities, and model {model} "
                f"is a masked LM ({model_type}); evaluate it on fine-tuned tasks, or drop the task"
            )
        return
    for task in tasks:
        token = task.is_token_task
        names = (
            MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES if token else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
        )
        if model_type not in names:
            head = "AutoModelForTokenClassification" if token else "AutoModelForSequenceClassification"
            raise MonodistillError(
                f"task {task.name} ({task.kind}) fine-tunes {head}, which transformers does not build for model "
                f"{model} ({model_type}); drop the task or the model"
            )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # a classifier reads the last token that is not padding
    tokenizer.padding_side = "right"  # every real token keeps its position, whatever the family's positions


def cap_language_task(task: LanguageTask, limit: int | None, seed: int) -> LanguageTask:
    """``task`` with at most ``limit`` documents or questions (evaluate.max_eval_samples), a random subset drawn
    with the first seed, in the file's order, as a fine-tuned task's test split is capped; prompts are not."""
    if limit is None or isinstance(task, GenerationTask):
        return task
    if isinstance(task, TextTask):
        return replace(task, documents=[task.documents[index] for index in subset(len(task.documents), limit, seed)])
    return replace(task, questions=[task.questions[index] for index in subset(len(task.questions), limit, seed)])


def language_settings(config: EvaluateConfig) -> dict[str, Any]:
    """Every setting that changes a language-model task's result."""
    return {"max_length": config.max_length, "mixed_precision": config.mixed_precision, "scoring": SCORING}


def score_language_tasks(
    config: EvaluateConfig,
    labels: list[str],
    folders: list[Path],
    tokenizers: dict[str, PreTrainedTokenizerBase],
    tasks: list[LanguageTask],
) -> None:
    """Every model on every language-model task: stored results reused where they hold, the rest scored."""
    settings = language_settings(config)
    for model, label, folder in zip(config.models, labels, folders, strict=True):
        identity = model_identity(model)
        pending = []
        for task in tasks:
            made_from = {**identity, "task": task_content_digest(task), "settings": settings}
            path = folder / task.name / RESULT_FILE
            stale = stale_reason(path, made_from)
            if stale is not None:
                pending.append((task, path, made_from, stale))
        if not pending:
            continue
        network = load_causal_lm(model)
        for task, path, made_from, stale in pending:
            print(f"scoring {label} on {task.name} ({task.kind}, no fine-tuning){stale}")
            result = score_task(network, tokenizers[model], task, config)
            result.update(label=label, model=model, task=task.name, kind=task.kind, source=task.source)
            result.update(made_from=made_from, machine=machine())
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_text(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
            print(describe_language_result(result))
        del network


def load_causal_lm(model: str) -> Any:
    """``model`` as a causal LM, float32, frozen in eval mode on the GPU where there is one.

    Raises:
        MonodistillError: for weights that do not load, or a checkpoint without its LM head (a fine-tuned
            classifier, a bare decoder), whose head would be drawn at random.
    """
    network, info = load_weights(AutoModelForCausalLM, model, kind="model", quiet=True, dtype=torch.float32)
    missing = untrained_head_keys(network, info.get("missing_keys") or [])
    if missing:
        raise MonodistillError(f"model {model} has no trained LM head (missing {missing[:3]}): it cannot be scored")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return network.eval().requires_grad_(False).to(device)


def score_task(network: Any, tokenizer: PreTrainedTokenizerBase, task: LanguageTask, config: EvaluateConfig) -> Any:
    """One model's result on one language-model task."""
    max_length = usable_max_length(config.max_length, network.config)
    autocast = AUTOCAST_DTYPES.get(config.mixed_precision)
    if isinstance(task, TextTask):
        return score_text(network, tokenizer, task, max_length, config.eval_batch_size, autocast)
    if isinstance(task, ChoiceTask):
        return score_choices(network, tokenizer, task, max_length, config.eval_batch_size, autocast)
    print(f"{task.name}: {describe_settings(task)}")
    return generate_samples(network, tokenizer, task)


def describe_language_result(result: dict[str, Any]) -> str:
    """A language-model task result in a line (a line per sample for generation)."""
    where = f"{result['label']} on {result['task']}"
    metrics = result.get("metrics") or {}
    if "bits_per_byte" in metrics:
        return (
            f"{where}: {metrics['bits_per_byte']:.4f} bits per byte (lower is better), perplexity "
            f"{metrics['perplexity']:.2f} per token, {result['tokens']:,} tokens over {result['bytes']:,} bytes"
        )
    if "accuracy" in metrics:
        return (
            f"{where}: accuracy {100 * metrics['accuracy']:.2f} (summed log-probability), "
            f"{100 * metrics['accuracy_per_byte']:.2f} (per byte), chance {100 * result['chance']:.2f}, "
            f"{result['questions']:,} questions"
        )
    lines = [f"{where}: {len(result['samples'])} greedy samples"]
    lines += [f"  {sample['prompt']!r} -> {sample['continuation']!r}" for sample in result["samples"]]
    return "\n".join(lines)


def add_language_results(
    summary: dict[str, Any], folders: list[Path], labels: list[str], tasks: list[LanguageTask]
) -> None:
    """Put each model's language-model results (``language``) and the tasks (``language_tasks``) in ``summary``."""
    if not tasks:
        return
    summary["language_tasks"] = {task.name: {"kind": task.kind, "source": task.source} for task in tasks}
    for label, folder in zip(labels, folders, strict=True):
        entries = {}
        for task in tasks:
            path = folder / task.name / RESULT_FILE
            if path.is_file():
                result = json.loads(path.read_text())
                entries[task.name] = {key: value for key, value in result.items() if key not in SUMMARY_LEFT_OUT}
        summary["models"][label]["language"] = entries
