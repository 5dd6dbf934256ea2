"""Fine-tune one model on one task with transformers' Trainer, and measure its cost.

Token tasks put each word's label on its first piece (-100 elsewhere) and are scored per word
through the tokenizer's ``word_ids()`` (``encode.py``). Inputs are cut to ``max_length`` (never
beyond the model's positions), keeping the head, tail or both of a long text (``evaluate.truncation``);
the share of truncated examples is reported. Words left with no piece, cut off by truncation or
turned into none by the tokenizer, are scored as predicted with the "O" label (the first label for
tag sets without one), so a model is never rewarded for dropping hard words; both are counted.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import EvaluateConfig
from monodistill.data.blocks import tokenizer_fingerprint
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
from monodistill.evaluate.encode import Encoder, align_labels, word_predictions
from monodistill.evaluate.machine import LoadProbe, machine
from monodistill.evaluate.metrics import (
    classification_metrics,
    majority_class,
    near_majority,
    prediction_spread,
    selection_metric,
    token_metrics,
)
from monodistill.evaluate.tasks import Task
from monodistill.progress import Countdown, Progress, datasets_progress, progress_bar
from monodistill.teacher import load_weights, max_positions, parameter_counts

__all__ = [
    "StepProgress",
    "align_labels",
    "finetune",
    "inference_batch",
    "load_for_task",
    "load_task_model",
    "predicted_labels",
    "prepare_splits",
    "score",
    "score_predictions",
    "subset",
    "teacher_logits",
    "tokenize_task",
    "usable_max_length",
]
BOOKKEEPING = ("truncated", "word_ids", "words_cut", "words_without_pieces")
"""Columns ``tokenize_task`` adds for scoring and reports; the model never sees them."""


def tokenize_task(
    task: Task, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head"
) -> dict[str, datasets.Dataset]:
    """Tokenised train and test splits, with labels aligned for token tasks and the bookkeeping columns.

    Test labels never seen in training (ids past the model's labels) carry -100: no loss, scored from gold.
    """
    encoder = Encoder(tokenizer, max_length, truncation)
    num_labels = len(task.labels)

    def sequences(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = encoder(batch["text"], batch.get("text_pair"))
        rows["labels"] = [label if label < num_labels else -100 for label in batch["label"]]
        return rows

    def words(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = encoder(batch["tokens"], words=True)
        known = [[tag if tag < num_labels else -100 for tag in tags] for tags in batch["tags"]]
        rows["labels"] = [align_labels(ids, tags) for ids, tags in zip(rows["word_ids"], known, strict=True)]
        return rows

    function = words if task.is_token_task else sequences
    with datasets_progress():
        return {
            name: split.map(function, batched=True, remove_columns=split.column_names, desc=f"tokenising {task.name}")
            for name, split in (("train", task.train), ("test", task.test))
        }


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
    label_maps = {
        "id2label": dict(enumerate(task.labels)),
        "label2id": {label: index for index, label in enumerate(task.labels)},
    }
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    torch.manual_seed(seed)  # the new classification head's initialisation
    # Float32 master weights whatever dtype the checkpoint was stored in; evaluate.mixed_precision
    # only sets the autocast of the fine-tuning and inference passes.
    model = load_for_task(model_class, model_path, num_labels=len(task.labels), dtype=torch.float32, **label_maps)
    max_length = usable_max_length(config.max_length, model.config)
    data, rows = prepare_splits(task, tokenizer, config, max_length, tokenized)
    gold = rows["test"]
    report = coverage_report(task, data, gold)
    _print_report(task.name, report)
    word_ids = list(data["test"]["word_ids"]) if task.is_token_task else None
    targets = None
    if teacher is not None:
        if len(teacher.logits) != len(data["train"]):
            raise RuntimeError(f"{len(teacher.logits)} teacher logits for {len(data['train'])} training examples")
        targets = align_targets(teacher, list(data["train"]["word_ids"]) if task.is_token_task else None)
    data = {name: _without_bookkeeping(split) for name, split in data.items()}
    collator = _collator(task, tokenizer)
    if targets is not None:
        # The teacher's logits travel as a row index the collator resolves; the Trainer would drop a column
        # its model does not take, so the model's inputs are picked here instead (model_columns).
        data["train"] = data["train"].add_column(TEACHER_INDEX, list(range(len(data["train"]))))
        data = {name: model_columns(split, model, keep=("labels", TEACHER_INDEX)) for name, split in data.items()}
        collator = TeacherCollator(collator, targets)
    use_cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as scratch:
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
            use_cpu=not use_cuda,
            dataloader_num_workers=0,
            remove_unused_columns=targets is None,
        )
        common: dict[str, Any] = {"model": model, "args": arguments, "train_dataset": data["train"]}
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
    _check_order(np.asarray(prediction.label_ids), data["test"]["labels"])
    predicted = predicted_labels(task, prediction.predictions, gold, word_ids)
    scores = score_predictions(task, predicted, gold)
    # Whether the model ended at the majority class: a near-constant classifier keeps a near-majority accuracy.
    majority = majority_class(task, gold)
    spread = prediction_spread([label for row in predicted for label in row] if task.is_token_task else predicted, task)
    counts = parameter_counts(model)
    result = {
        "metrics": scores,
        "majority_class": majority,  # the floor on the examples scored
        "predictions": spread,
        "near_majority": near_majority(scores, majority, spread, selection_metric(task)),
        "train_samples": len(data["train"]),
        "test_samples": len(data["test"]),
        "learning_rate": config.learning_rate,
        "train_loss": float(training.training_loss),
        "finetune_seconds": float(training.metrics["train_runtime"]),
        "train_samples_per_second": float(training.metrics["train_samples_per_second"]),
        "inference_seconds": float(prediction.metrics["test_runtime"]),
        "inference_samples_per_second": float(prediction.metrics["test_samples_per_second"]),
        "machine": machine(),
        "load": {"finetune": training_load.record(), "inference": inference_load.record()},
        "parameters": counts,
        "max_length": max_length,
        "truncation": config.truncation,
        **report,
        "mixed_precision": config.mixed_precision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    if teacher is not None and targets is not None:
        result["distillation"] = _distillation_record(config, teacher, targets)
    return result


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
    split = model_columns(_without_bookkeeping(train), model)
    return predict_teacher(model, split, _collator(task, tokenizer), config, word_ids, num_words)


def load_task_model(model_path: str, task: Task, device: torch.device) -> Any:
    """``model_path`` with a new head for ``task``, frozen in eval mode on ``device``: for timing its forward pass."""
    model_class = AutoModelForTokenClassification if task.is_token_task else AutoModelForSequenceClassification
    model = load_for_task(model_class, model_path, num_labels=len(task.labels), dtype=torch.float32)
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
    split = model_columns(_without_bookkeeping(test.select(range(min(config.eval_batch_size, len(test))))), model)
    batch = _collator(task, tokenizer)([split[index] for index in range(len(split))])
    return {name: value.to(device) for name, value in batch.items() if name != "labels"}


def prepare_splits(
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    config: EvaluateConfig,
    max_length: int,
    tokenized: dict[tuple[Any, ...], dict[str, datasets.Dataset]] | None = None,
) -> tuple[dict[str, datasets.Dataset], dict[str, datasets.Dataset]]:
    """The tokenised train and test splits (``tokenize_task``, cached in ``tokenized``), capped as
    evaluate.max_train_samples and max_eval_samples say, and the task's rows each one holds."""
    key = (task.name, id(task), tokenizer_fingerprint(tokenizer), max_length, config.truncation)
    cache = tokenized if tokenized is not None else {}
    if key not in cache:
        cache[key] = tokenize_task(task, tokenizer, max_length, config.truncation)
    data = dict(cache[key])  # a copy: the subsets selected below must not change the cached splits
    rows = {"train": task.train, "test": task.test}
    # Capped splits are random subsets drawn with the first seed, so every model and seed sees the same
    # examples (a teacher and its students too), and a file sorted by label does not hand the model one class.
    for name, limit in (("train", config.max_train_samples), ("test", config.max_eval_samples)):
        if limit:
            kept = subset(len(data[name]), limit, config.seed)
            data[name], rows[name] = data[name].select(kept), rows[name].select(kept)
    return data, rows


def _collator(task: Task, tokenizer: PreTrainedTokenizerBase) -> Any:
    return (DataCollatorForTokenClassification if task.is_token_task else DataCollatorWithPadding)(tokenizer)


def _without_bookkeeping(split: datasets.Dataset) -> datasets.Dataset:
    return split.remove_columns([name for name in BOOKKEEPING if name in split.column_names])


def _distillation_record(config: EvaluateConfig, teacher: TeacherLogits, targets: DistilTargets) -> dict[str, Any]:
    record: dict[str, Any] = {"alpha": config.distil_alpha, "temperature": config.distil_temperature}
    record["teacher_pass_seconds"] = teacher.seconds
    if targets.mask is not None:
        record["words_without_teacher"] = targets.words_without_teacher
    return record


def usable_max_length(max_length: int, model_config: Any) -> int:
    """``evaluate.max_length``, or the model's positions when it has fewer (the harness says so per model)."""
    return min(max_length, max_positions(model_config))


HEAD_PREFIXES = {
    "missing": ("classifier.", "pre_classifier.", "pooler."),
    "unexpected": (
        "cls.",
        "lm_head.",
        "lm_predictions.",
        "vocab_transform.",
        "vocab_layer_norm.",
        "vocab_projector.",
        "generator_",
        "decoder.",
        "pooler.",
    ),
}
"""Weights a masked-LM checkpoint is expected to lack (the new task head; a pooler that masked-LM classes do
not build) or hold unused (its masked-LM head), matched after the backbone prefix (``bert.``). ModernBERT's
classifiers reuse its masked-LM ``head.*`` (dense, act, norm) under the classifier, so only ``decoder.*`` goes."""
_ANNOUNCED: set[tuple[str, str]] = set()  # (model, class): the expected-head line is printed once per model


def load_for_task(model_class: Any, model_path: str, **kwargs: Any) -> Any:
    """``model_class.from_pretrained`` without transformers' load table for the expected head swap.

    A masked-LM checkpoint given a task head drops its ``cls.predictions.*`` weights and starts a new
    ``classifier.*``: transformers prints that as a table of UNEXPECTED and MISSING keys on every
    fine-tune. Here it is one line per model; any other missing or unexpected key still warns, and
    weights that do not fit the config are refused (``teacher.load_weights``).
    """
    # The table is one warning record; load_weights drops just it (raising the logger's level would also
    # switch on transformers' tensor-parallel plan check, which warns on every load).
    model, info = load_weights(model_class, model_path, kind="model", quiet=True, **kwargs)
    expected: dict[str, list[str]] = {}
    for kind, prefixes in HEAD_PREFIXES.items():
        keys = sorted(info.get(f"{kind}_keys") or [])
        odd = [key for key in keys if not _is_head_key(key, prefixes, model.base_model_prefix)]
        if odd:
            shown = ", ".join(odd[:8]) + (f" and {len(odd) - 8} more" if len(odd) > 8 else "")
            warnings.warn(f"{model_path}: {kind} weights outside the task and masked-LM heads: {shown}", stacklevel=2)
        base = f"{model.base_model_prefix}."
        expected[kind] = sorted({key.removeprefix(base).split(".")[0] for key in keys if key not in odd})
    if (model_path, model_class.__name__) not in _ANNOUNCED:
        _ANNOUNCED.add((model_path, model_class.__name__))
        new = ", ".join(f"{group}.*" for group in expected["missing"]) or "none"
        dropped = ", ".join(f"{group}.*" for group in expected["unexpected"]) or "none"
        print(f"{model_path}: new task head ({new}), unused masked-LM head ({dropped}), as expected")
    return model


def _is_head_key(key: str, prefixes: tuple[str, ...], base_prefix: str) -> bool:
    return key.removeprefix(f"{base_prefix}.").startswith(prefixes)


def subset(size: int, limit: int, seed: int) -> list[int]:
    """``limit`` of ``range(size)`` chosen at random under ``seed``, in their original order (all when fewer)."""
    if limit >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=limit, replace=False).tolist())


def score(task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None) -> dict[str, float]:
    """Task metrics from the Trainer's predictions against the gold split.

    Token tasks are scored per word over whole sentences, each word read at its first piece through
    ``word_ids`` (one list per sentence, None on special tokens); a word with no piece is predicted as
    "O" (else the first label). Gold labels never seen in training can never be predicted: errors.
    """
    return score_predictions(task, predicted_labels(task, logits, gold, word_ids), gold)


def predicted_labels(
    task: Task, logits: Any, gold: datasets.Dataset, word_ids: list[list[int | None]] | None
) -> list[Any]:
    """The label id predicted for each test example, or for each word of each sentence of a token task (read
    at its first piece; a word with no piece gets "O", else the first label), as ``score`` scores them."""
    predictions = np.asarray(logits).argmax(-1)  # (N,) or (N, T)
    if not task.is_token_task:
        return [int(label) for label in predictions]
    assert word_ids is not None
    fill = task.labels.index("O") if "O" in task.labels else 0
    return [
        word_predictions(sentence, sentence_word_ids, len(tags), fill)
        for sentence, sentence_word_ids, tags in zip(predictions, word_ids, gold["tags"], strict=True)
    ]


def score_predictions(task: Task, predicted: list[Any], gold: datasets.Dataset) -> dict[str, float]:
    """Task metrics of ``predicted_labels`` against the gold split."""
    if not task.is_token_task:
        return classification_metrics(np.asarray(predicted), np.asarray(gold["label"]))
    names = task.label_names
    predicted_tags = [[names[i] for i in sentence] for sentence in predicted]
    return token_metrics(predicted_tags, [[names[i] for i in tags] for tags in gold["tags"]], task.metric)


def coverage_report(task: Task, data: dict[str, datasets.Dataset], gold: datasets.Dataset) -> dict[str, Any]:
    """What the scores cover: shares of truncated examples, test words with no piece left, unseen test labels."""
    report: dict[str, Any] = {
        "truncated_share": {
            name: float(np.mean(split["truncated"])) if len(split) else 0.0 for name, split in data.items()
        }
    }
    if task.is_token_task:
        report["words"] = {
            "scored": sum(len(tags) for tags in gold["tags"]),
            "cut_by_truncation": int(sum(data["test"]["words_cut"])),
            "without_pieces": int(sum(data["test"]["words_without_pieces"])),
        }
        golds = [tag for tags in gold["tags"] for tag in tags]
    else:
        golds = list(gold["label"])
    report["unseen_test_labels"] = sum(label >= len(task.labels) for label in golds)
    return report


def _check_order(label_ids: np.ndarray, expected: list[list[int]] | list[int]) -> None:
    """Predictions are matched to gold by position: make sure the Trainer kept the test split's order."""
    for row, labels in zip(label_ids, expected, strict=True):
        labels_array = np.atleast_1d(np.asarray(labels))
        if not np.array_equal(np.atleast_1d(row)[: len(labels_array)], labels_array):
            raise RuntimeError("predictions are not in test-set order; cannot score them against gold labels")


def _print_report(name: str, report: dict[str, Any]) -> None:
    shares = report["truncated_share"]
    if any(shares.values()):
        print(f"{name}: truncated {shares['train']:.1%} of training and {shares['test']:.1%} of test examples")
    words = report.get("words", {})
    if words.get("cut_by_truncation") or words.get("without_pieces"):
        print(
            f"{name}: {words['cut_by_truncation']} test words cut by truncation and {words['without_pieces']} "
            "turned into no piece by the tokenizer are scored with the fill label"
        )
