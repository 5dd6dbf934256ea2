"""The fine-tuning learning rate, chosen on held-out data (``evaluate.learning_rates``).

One rate does not suit every model and task. Issue 28 reports, on a 7-class topic task of 701 training
examples (SIB-200's format), the stand-in teacher fine-tuned at the paper's batch (8 x 4) and lr 1e-4 for
5 epochs predicting the majority class (accuracy 25.0 = the majority's), and lr 3e-4 at batch 16 for 6
epochs reaching 35.8 (macro-F1 0.279). Small tasks take few optimizer steps, and a rate that suits
10,000 examples may leave the head where it started.

With ``evaluate.learning_rates`` set, each model, task and seed is fine-tuned once per candidate on the
training split less a dev split and scored on that dev split; the rate with the best dev score is the one
its result is fine-tuned with, on the whole training split, and scored on the test split. The score is
``metrics.selection_metric``: macro-F1 for classification (accuracy would reward the majority class),
the task's metric for token tasks. The dev split is the task's own (a task file's ``validation`` beside its
``test``), capped at ``max_eval_samples``; else ``dev_fraction`` of the (capped) training split, drawn with
the first seed, so that every model and seed chooses on the same examples. The test split is never seen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monodistill.config import EvaluateConfig
from monodistill.evaluate.finetune import StepProgress, finetune
from monodistill.evaluate.metrics import METRIC_NAMES, selection_metric
from monodistill.evaluate.splits import subset
from monodistill.evaluate.tasks import Task


def development_task(task: Task, config: EvaluateConfig) -> tuple[Task, str]:
    """``task`` as the learning-rate search sees it: trained on its (capped) training split less the dev split,
    scored on the dev split; and where that dev split comes from, in words.

    Keep the returned task for the whole evaluation: tokenised splits are cached by the task object.
    """
    train = task.train
    if config.max_train_samples:
        train = train.select(subset(len(train), config.max_train_samples, config.seed))
    if task.dev is not None:
        dev = task.dev
        if config.max_eval_samples:
            dev = dev.select(subset(len(dev), config.max_eval_samples, config.seed))
        where = f"the task's dev split ({len(dev)} examples)"
    else:
        held = set(subset(len(train), max(1, round(config.dev_fraction * len(train))), config.seed))
        dev = train.select(sorted(held))
        train = train.select([row for row in range(len(train)) if row not in held])
        where = f"{config.dev_fraction:.0%} of the training split ({len(dev)} examples, seed {config.seed})"
    searched = replace(task, name=f"{task.name}-dev", train=train, test=dev, unseen_labels=[], dev=None)
    return searched, where


def select_learning_rate(
    model: str,
    tokenizer: Any,
    task: Task,
    searched: tuple[Task, str],
    config: EvaluateConfig,
    seed: int,
    tokenized: dict[tuple[Any, ...], Any],
    desc: str,
) -> dict[str, Any]:
    """Fine-tune ``model`` with each of evaluate.learning_rates on ``searched`` (``development_task``) and
    return the record of the choice: the rate, the score it was chosen by, the dev split and every trial.

    Ties go to the earlier rate in the list.
    """
    dev_task, where = searched
    key = selection_metric(task)
    whole = replace(config, max_train_samples=None, max_eval_samples=None)  # development_task capped them
    trials = []
    for rate in config.learning_rates:
        bar = StepProgress(f"{desc}, learning rate {rate:g} on dev")
        result = finetune(model, tokenizer, dev_task, replace(whole, learning_rate=rate), seed, tokenized, progress=bar)
        trials.append(
            {
                "learning_rate": rate,
                "metrics": result["metrics"],
                "near_majority": result["near_majority"],
                "finetune_seconds": result["finetune_seconds"],
            }
        )
    best = max(trials, key=lambda trial: trial["metrics"][key])  # max keeps the first of equals
    return {
        "learning_rate": best["learning_rate"],
        "by": key,
        "dev": where,
        "train_samples": len(dev_task.train),
        "dev_samples": len(dev_task.test),
        "trials": trials,
    }


def describe_selection(selection: dict[str, Any]) -> str:
    """``learning rate 3e-4, chosen on ... by dev macro-F1 (1e-4: 0.120, 3e-4: 0.279)``."""
    name = METRIC_NAMES.get(selection["by"], selection["by"])
    trials = ", ".join(
        f"{trial['learning_rate']:g}: {trial['metrics'][selection['by']]:.3f}" for trial in selection["trials"]
    )
    return f"learning rate {selection['learning_rate']:g}, chosen on {selection['dev']} by dev {name} ({trials})"
