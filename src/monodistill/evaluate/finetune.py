"""Fine-tune one model on one task with transformers' Trainer, and measure its cost.

A run loads the model with a new task head (``loading.py``), reads the task's splits through the model's
own tokenizer (``splits.py``), trains, predicts the test split, and scores it (``scoring.py``); the share
of truncated examples and of words scored with the fill label is reported. With a task teacher's logits
(``teacher_logits``), it learns from them as well (``distil.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import EvaluateConfig
from monodistill.evaluate.distil import (
    TEACHER_INDEX,
    DistillingTrainer,
    DistilTargets,
    TeacherCollator,
    TeacherLogits,
    align_targets,
    model_columns,
    predict_teacher,
)
from monodistill.evaluate.loading import load_for_task
from monodistill.evaluate.machine import LoadProbe, machine
from monodistill.evaluate.scoring import check_order, coverage_report, print_coverage, quality_record
from monodistill.evaluate.splits import data_collator, prepare_splits, usable_max_length, without_bookkeeping
from monodistill.evaluate.tasks import Task
from monodistill.progress import Countdown, Progress, progress_bar
from monodistill.teacher import load_weights, parameter_counts


class StepProgress(TrainerCallback):
    """A fine-tuning run's bar over its optimizer steps, with the time left for the whole evaluation.

    It stands in for the Trainer's own bar and printed logs (dicts of numbers as strings).
    """

    def __init__(self, desc: str = "fine-tuning", countdown: Countdown | None = None) -> None:
        self.desc, self.countdown = desc, countdown
        self.bar: Progress | None = None
        self.loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar = progress_bar(state.max_steps, self.desc, "step", leave=False)

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is None:
            return
        shown = [f"loss={self.loss:.3f}"] if self.loss is not None else []
        if self.countdown is not None:
            left = self.countdown.left(state.global_step / max(state.max_steps, 1))
            shown.append(f"evaluation {left} left")
        self.bar.set_postfix_str(", ".join(shown), refresh=False)
        self.bar.update(1)

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def finetune(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    config: EvaluateConfig,
    seed: int,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None = None,
    save_to: Sequence[Path] = (),
    teacher: TeacherLogits | None = None,
    progress: StepProgress | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model_path`` on ``task`` with ``seed``; returns metrics, timings and sizes.

    Each folder of ``save_to`` receives the fine-tuned model and its tokenizer (``save_pretrained``).

    ``tokenized`` caches tokenised tasks across calls: models that share a tokenizer (students of one
    teacher, every seed) tokenise each task once.

    ``teacher``, a fine-tuned model's logits on this task's training split (``teacher_logits``, same
    seed), adds task-stage distillation (``distil.py``): the KL to them, weighted by evaluate.distil_alpha.
    ``progress`` is the run's bar (default: one named "fine-tuning").
    """
    model = _load_classifier(model_path, task, seed, tokenizer.pad_token_id)
    max_length = usable_max_length(config.max_length, model.config)
    data, rows = prepare_splits(task, tokenizer, config, max_length, tokenized)
    gold = rows["test"]
    report = coverage_report(task, data, gold)
    print_coverage(task.name, report)
    word_ids = list(data["test"]["word_ids"]) if task.is_token_task else None
    targets = _distillation_targets(teacher, task, data["train"]) if teacher is not None else None
    data = {name: without_bookkeeping(split) for name, split in data.items()}
    collator = data_collator(task, tokenizer)
    if targets is not None:
        # The teacher's logits travel as a row index the collator resolves; the Trainer would drop a column
        # its model does not take, so the model's inputs are picked here instead (model_columns).
        data["train"] = data["train"].add_column(TEACHER_INDEX, list(range(len(data["train"]))))
        data = {name: model_columns(split, model, keep=("labels", TEACHER_INDEX)) for name, split in data.items()}
        collator = TeacherCollator(collator, targets)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _build_trainer(model, tokenizer, data["train"], collator, config, seed, scratch, targets)
        trainer.add_callback(progress or StepProgress())
        # The load each timing ran under goes beside it: a busy machine's times say little of the model.
        with LoadProbe() as training_load:
            training = trainer.train()
        with LoadProbe() as inference_load:
            prediction = trainer.predict(data["test"])
    for folder in save_to:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    assert prediction.label_ids is not None and prediction.metrics is not None
    check_order(np.asarray(prediction.label_ids), data["test"]["labels"])
    result = {
        **quality_record(task, prediction.predictions, gold, word_ids),
        "train_samples": len(data["train"]),
        "test_samples": len(data["test"]),
        "learning_rate": config.learning_rate,
        **_cost_record(training, prediction, training_load, inference_load),
        "parameters": parameter_counts(model),
        "max_length": max_length,
        "truncation": config.truncation,
        **report,
        "mixed_precision": config.mixed_precision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    if teacher is not None and targets is not None:
        result["distillation"] = _distillation_record(config, teacher, targets)
    return result


def _load_classifier(model_path: str, task: Task, seed: int, pad_token_id: int | None = None) -> Any:
    """``model_path`` with a new head for ``task``, its initialisation drawn under ``seed``, in float32
    (``pad_token_id``: the tokenizer's, for a config that names none: ``load_for_task``)."""
    label_maps = {
        "id2label": dict(enumerate(task.labels)),
        "label2id": {label: index for index, label in enumerate(task.labels)},
    }
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    torch.manual_seed(seed)  # the new classification head's initialisation
    # Float32 master weights whatever dtype the checkpoint was stored in; evaluate.mixed_precision
    # only sets the autocast of the fine-tuning and inference passes.
    return load_for_task(
        model_class, model_path, pad_token_id, num_labels=len(task.labels), dtype=torch.float32, **label_maps
    )


def _distillation_targets(teacher: TeacherLogits, task: Task, train: datasets.Dataset) -> DistilTargets:
    """The teacher's logits laid on the (tokenised, capped) training split's inputs."""
    if len(teacher.logits) != len(train):
        raise RuntimeError(f"{len(teacher.logits)} teacher logits for {len(train)} training examples")
    return align_targets(teacher, list(train["word_ids"]) if task.is_token_task else None)


def _build_trainer(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    collator: Any,
    config: EvaluateConfig,
    seed: int,
    scratch: str,
    targets: DistilTargets | None,
) -> Trainer:
    """The Trainer of one run, plain or distilling (``targets``), logging to no tracker and saving nothing."""
    arguments = TrainingArguments(
        output_dir=scratch,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        seed=seed,
        bf16=config.mixed_precision == "bf16",
        fp16=config.mixed_precision == "fp16",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_steps=50,
        disable_tqdm=True,  # StepProgress draws the bar
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=targets is None,
    )
    common: dict[str, Any] = {"model": model, "args": arguments, "train_dataset": train}
    common.update(data_collator=collator, processing_class=tokenizer)
    if targets is None:
        trainer = Trainer(**common)
    else:
        trainer = DistillingTrainer(**common, alpha=config.distil_alpha, temperature=config.distil_temperature)
    # transformers 5's BERT/XLM-R heads take **kwargs but ignore num_items_in_batch, so the Trainer would
    # take their loss as already scaled and sum it over accumulated micro-batches (4x the loss and the
    # gradient at the paper's 8 x 4): have it divide by the accumulation steps, as for any other model.
    trainer.model_accepts_loss_kwargs = False
    trainer.remove_callback(PrinterCallback)  # it prints every log as a dict of strings
    return trainer


def _cost_record(training: Any, prediction: Any, training_load: LoadProbe, inference_load: LoadProbe) -> dict[str, Any]:
    """A run's training loss, its fine-tuning and inference times, and the machine and load they ran on."""
    return {
        "train_loss": float(training.training_loss),
        "finetune_seconds": float(training.metrics["train_runtime"]),
        "train_samples_per_second": float(training.metrics["train_samples_per_second"]),
        "inference_seconds": float(prediction.metrics["test_runtime"]),
        "inference_samples_per_second": float(prediction.metrics["test_samples_per_second"]),
        "machine": machine(),
        "load": {"finetune": training_load.record(), "inference": inference_load.record()},
    }


def teacher_logits(
    classifier: Path,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    config: EvaluateConfig,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None = None,
) -> TeacherLogits:
    """A fine-tuned classifier's logits over ``task``'s (capped) training split, read through its own tokenizer.

    The teacher of task-stage distillation (``distil.py``): frozen where it is loaded, it runs once per
    task and seed, and ``finetune(teacher=...)`` lays its logits on each student's inputs.
    """
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    loaded, _ = load_weights(model_class, str(classifier), kind="fine-tuned model", quiet=True, dtype=torch.float32)
    model: Any = loaded.eval().requires_grad_(False)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    max_length = usable_max_length(config.max_length, model.config)
    data, rows = prepare_splits(task, tokenizer, config, max_length, tokenized)
    train = data["train"]
    word_ids = list(train["word_ids"]) if task.is_token_task else None
    num_words = [len(tags) for tags in rows["train"]["tags"]] if task.is_token_task else None
    split = model_columns(without_bookkeeping(train), model)
    return predict_teacher(model, split, data_collator(task, tokenizer), config, word_ids, num_words)


def load_task_model(model_path: str, task: Task, device: torch.device, pad_token_id: int | None = None) -> Any:
    """``model_path`` with a new head for ``task``, frozen in eval mode on ``device``: for timing its forward pass."""
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    model = load_for_task(model_class, model_path, pad_token_id, num_labels=len(task.labels), dtype=torch.float32)
    return model.eval().requires_grad_(False).to(device)


def inference_batch(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    config: EvaluateConfig,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """The first evaluate.eval_batch_size examples of ``task``'s (capped) test split as ``model``'s inputs,
    read through ``tokenizer``: the same examples for every model, each as its own tokenizer splits them."""
    data, _ = prepare_splits(task, tokenizer, config, usable_max_length(config.max_length, model.config), tokenized)
    test = data["test"]
    split = model_columns(without_bookkeeping(test.select(range(min(config.eval_batch_size, len(test))))), model)
    batch = data_collator(task, tokenizer)([split[index] for index in range(len(split))])
    return {name: value.to(device) for name, value in batch.items() if name != "labels"}


def _distillation_record(config: EvaluateConfig, teacher: TeacherLogits, targets: DistilTargets) -> dict[str, Any]:
    record: dict[str, Any] = {"alpha": config.distil_alpha, "temperature": config.distil_temperature}
    record["teacher_pass_seconds"] = teacher.seconds
    if targets.mask is not None:
        record["words_without_teacher"] = targets.words_without_teacher
    return record
