"""``monodistill evaluate``: every model on every task and seed, under identical settings, in one run.

Layout of the output folder::

    OUT/config.yaml                               resolved EvaluateConfig
    OUT/environment.json                          package versions, git SHA, command line, devices
    OUT/results/<model>-<id>/<task>/seed-<n>.json one fine-tuning run: metrics, timing, sizes, and
                                                  what it was made from (model, weights, task, settings)
    OUT/results/<model>-<id>/<task>/model/        with evaluate.save_models: the first seed's fine-tuned
                                                  classifier and tokenizer (``monodistill export`` takes it)
    OUT/results/<model>-<id>/<task>/seed-<n>-model/  for the model evaluate.distil_from names: each seed's
                                                  fine-tuned classifier, which the other models learn from
    OUT/results/<model>-<id>/<task>/result.json   a language-model task's one result (no fine-tuning, no seed:
                                                  bits per byte, multiple choice, generation samples)
    OUT/summary.json                              mean/std per model and task, cost and ratios
    OUT/summary.md                                the same as tables

Results are filed under the model's label, the one every output gives it (``labels.py``: ``teacher``,
``teacher-trimmed``, a student's run name, a folder's name), plus a hash of where it is (two models both
named ``student`` never share results). A stored result is reused only when it was made from the same
weights (a local folder's digest, a Hub id's commit), task data, seed and fine-tuning settings;
otherwise it is recomputed, saying why. So an interrupted evaluation resumes, and a changed setting,
retrained model or updated Hub repository is never scored from old runs.
Speed ratios are against the first model (the teacher). Each result records the machine and its load
beside its timings (``machine.py``): fine-tuning runs are timed one after another, so their ratio moves with
the load between them; once every model is fine-tuned, inference is timed again with each model in turns
with the first on one batch (``timing.py``), and the summary's inference ratios are those.
With ``evaluate.distil_from``, the model it names is fine-tuned first, and the others learn from its
fine-tuned classifiers (``task_teacher.py``, ``distil.py``). Which stored results are reused, and why
another is recomputed, is ``results.py``. Causal LMs are also scored as they are, with no fine-tuning, on
the language-model tasks (``kind: language-modeling``, ``multiple-choice``, ``generation``: ``lm_tasks.py``,
run by ``lm_harness.py``), after the fine-tuning runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.config import EvaluateConfig, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.distil import resolve_source
from monodistill.evaluate.finetune import StepProgress, finetune
from monodistill.evaluate.lm_harness import (
    add_language_results,
    cap_language_task,
    check_task_kinds,
    score_language_tasks,
)
from monodistill.evaluate.lm_tasks import LanguageTask, language_task_kind, load_language_task
from monodistill.evaluate.results import (
    adopt_results,
    describe_result,
    finetune_settings,
    model_identity,
    near_majority_line,
    result_folder,
    stale_reason,
    task_digest,
)
from monodistill.evaluate.selection import describe_selection, development_task, select_learning_rate
from monodistill.evaluate.splits import usable_max_length
from monodistill.evaluate.summary import summarise
from monodistill.evaluate.tables import format_summary
from monodistill.evaluate.task_teacher import TaskTeacher
from monodistill.evaluate.tasks import Task, load_task
from monodistill.evaluate.timing import measure_inference
from monodistill.labels import evaluation_labels
from monodistill.progress import Countdown
from monodistill.teacher import is_local_reference, load_model_config, load_tokenizer
from monodistill.weights import check_weight_shapes

SAVED_MODEL_DIR = "model"
"""Where ``evaluate.save_models`` keeps a fine-tuned classifier, beside its task's seed results."""
MAX_TEST_OVERLAP = 0.5
"""Real splits share a few percent of their inputs (3% on Hatespeech Filipino); a copied split shares most."""


def run_evaluation(config: EvaluateConfig, show_summary: bool = True) -> Path:
    """Validate every model and task first, then fine-tune and score; returns the output folder.

    The summary's tables end the output unless ``show_summary`` is false (``run`` ends with its own table of
    headline scores, and the report holds the rest).
    """
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR")
    output = Path(config.output_dir)
    runfolder.check_output_path(output)
    labels = evaluation_labels(config.models, output)  # the labels every output gives them (``labels.py``)
    source = resolve_source(config, labels)
    tokenizers, tasks, language_tasks = check_evaluation(config)
    overlaps = {task.name: check_overlap(task) for task in tasks}
    with runfolder.claim(output):
        ckpt.write_environment(output)
        folders = [result_folder(output, label, model) for model, label in zip(config.models, labels, strict=True)]
        for folder in folders:
            adopt_results(folder)
        evaluation = Evaluation(config, labels, folders, tokenizers, tasks, overlaps, source)
        evaluation.fine_tune_all()
        score_language_tasks(config, labels, folders, tokenizers, language_tasks)
        table = evaluation.write_summary(output, language_tasks)
    if show_summary:
        print(table)
    else:
        print(f"evaluation summary: {output / 'summary.md'}")
    return output


@dataclass
class Job:
    """One fine-tuning run of an evaluation: a model on a task with a seed, and what it is made from."""

    model: str
    label: str
    task: Task
    seed: int
    where: str
    """Its place in the evaluation, for the console: ``model 1/2, task 1/3, seed 2/5``."""
    result: Path
    """Where its result is stored."""
    made_from: dict[str, Any]
    """Everything its result depends on: a stored result made from the same is reused."""
    keeper: TaskTeacher | None
    """The task teacher, when this is its run: it keeps the classifier for its students."""
    learns_from: TaskTeacher | None
    """The task teacher this run is distilled from, or None (plain fine-tuning)."""


class Evaluation:
    """Every model's fine-tuning runs on every task and seed, reused where stored, and their summary.

    The teacher of task distillation goes first, so that the others can read its fine-tuned classifiers.
    """

    def __init__(
        self,
        config: EvaluateConfig,
        labels: list[str],
        folders: list[Path],
        tokenizers: dict[str, PreTrainedTokenizerBase],
        tasks: list[Task],
        overlaps: dict[str, float],
        source: int | None,
    ) -> None:
        self.config, self.labels, self.folders = config, labels, folders
        self.tokenizers, self.tasks, self.overlaps, self.source = tokenizers, tasks, overlaps, source
        self.seeds = list(range(config.seed, config.seed + config.seeds))
        self.tokenized: dict[tuple[Any, ...], Any] = {}  # tokenised tasks, shared by models with one tokenizer
        self.teacher = None
        if source is not None:
            model = config.models[source]
            self.teacher = TaskTeacher(
                config, model, labels[source], folders[source], tokenizers[model], self.tokenized
            )
            print(
                f"task distillation: every other model also learns from {self.teacher.label}'s fine-tuned task logits "
                f"(evaluate.distil_alpha={config.distil_alpha}, distil_temperature={config.distil_temperature})"
            )
        # evaluate.learning_rates: each task's dev split, made once so every model and seed chooses on it.
        self.searches = {task.name: development_task(task, config) for task in tasks} if config.learning_rates else {}
        self.order = sorted(range(len(config.models)), key=lambda index: index != source)
        self.jobs = len(self.order) * len(tasks) * len(self.seeds)
        self.countdown = Countdown(self.jobs)  # the evaluation's time left

    def fine_tune_all(self) -> None:
        """Every model, the task teacher first, on every task and seed."""
        for position, index in enumerate(self.order, 1):
            self.fine_tune_model(position, index)

    def fine_tune_model(self, position: int, index: int) -> None:
        """One model (the ``position``-th run, ``config.models[index]``) on every task and seed."""
        model, label, folder = self.config.models[index], self.labels[index], self.folders[index]
        keeper = self.teacher if index == self.source else None  # keeps its classifiers for the others
        learns_from = self.teacher if index != self.source else None  # None: plain fine-tuning
        identity = model_identity(model)
        for task_number, task in enumerate(self.tasks, 1):
            settings = finetune_settings(self.config, distilled=learns_from is not None)
            for seed_number, seed in enumerate(self.seeds, 1):
                where = f"model {position}/{len(self.order)}, task {task_number}/{len(self.tasks)}, "
                where += f"seed {seed_number}/{len(self.seeds)}"
                made_from = {**identity, "task": task_digest(task), "settings": settings}
                made_from["distilled_from"] = learns_from.made_from(task, seed) if learns_from else None
                path = folder / task.name / f"seed-{seed}.json"
                self.fine_tune_seed(Job(model, label, task, seed, where, path, made_from, keeper, learns_from))

    def fine_tune_seed(self, job: Job) -> None:
        """One run: its stored result reused when it still holds, else fine-tuned, stored and said."""
        keep = self.kept_models(job)
        stale = self.reason_to_fine_tune(job, keep)
        if stale is None:
            self.countdown.skip()  # reused: not part of the time a run takes
            return
        note = f", distilled from {job.learns_from.label}" if job.learns_from else ""
        print(f"fine-tuning {job.label} on {job.task.name} (seed {job.seed}){note}{stale}")
        self.countdown.start()
        result = self.fine_tune(job, keep)
        self.countdown.finish()
        self.save_result(job, result)

    def kept_models(self, job: Job) -> dict[Path, str]:
        """Where a run keeps its fine-tuned model, each with the setting that keeps it there."""
        keep = {}
        if self.config.save_models and job.seed == self.config.seed:
            keep[job.result.parent / SAVED_MODEL_DIR] = "evaluate.save_models"
        if job.keeper:
            keep[job.keeper.classifier(job.task, job.seed)] = "evaluate.distil_from"
        return keep

    def reason_to_fine_tune(self, job: Job, keep: dict[Path, str]) -> str | None:
        """None when the stored result holds (and so do the models it keeps); else why the run is made."""
        stale = stale_reason(job.result, job.made_from)
        missing = [setting for place, setting in keep.items() if not (place / "config.json").is_file()]
        if stale is None and missing:
            stale = f": keeping the fine-tuned model ({', '.join(missing)})"
        if stale is None and job.keeper:
            stale = job.keeper.check_classifier(job.task, job.seed, job.result)
        return stale

    def fine_tune(self, job: Job, keep: dict[Path, str]) -> dict[str, Any]:
        """The run itself, at the learning rate ``evaluate.learning_rates`` chooses, if it is set."""
        model, task, seed, tokenizer = job.model, job.task, job.seed, self.tokenizers[job.model]
        logits = job.learns_from.logits(task, seed) if job.learns_from else None
        run_config, selection = self.config, None
        described = f"{job.label} on {task.name} ({job.where})"
        if self.searches:
            selection = select_learning_rate(
                model, tokenizer, task, self.searches[task.name], self.config, seed, self.tokenized, described
            )
            print(f"{job.label} on {task.name} (seed {seed}): {describe_selection(selection)}")
            run_config = replace(self.config, learning_rate=selection["learning_rate"])
        bar = StepProgress(described, self.countdown)
        result = finetune(
            model, tokenizer, task, run_config, seed, self.tokenized, save_to=list(keep), teacher=logits, progress=bar
        )
        result["learning_rate_selection"] = selection
        return result

    def save_result(self, job: Job, result: dict[str, Any]) -> None:
        """Store a run's result with what it was made from, and say it in one line."""
        task, seed = job.task, job.seed
        distillation = result.pop("distillation", None)
        result.update(model=job.model, label=job.label, task=task.name, seed=seed, metric=task.metric)
        result.update(test_overlap=self.overlaps[task.name], made_from=job.made_from, task_source=task.source)
        result["distilled_from"] = job.learns_from.record(task, seed, distillation) if job.learns_from else None
        if job.keeper:
            result["distil_classifier"] = job.keeper.kept_classifier(task, seed)
        job.result.parent.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(job.result, json.dumps(result, indent=2) + "\n")
        left = f"; {self.countdown.left()} left" if self.countdown.done < self.countdown.jobs else ""
        print(f"{describe_result(result)} ({job.where}{left})")
        if result["near_majority"]:
            print(f"warning: {near_majority_line(result)}", file=sys.stderr)

    def write_summary(self, output: Path, language_tasks: list[LanguageTask]) -> str:
        """Time inference, then write the config, ``summary.json`` and ``summary.md``; returns the tables.

        ``language_tasks``' results (scored with no fine-tuning) go under each model's ``language``.
        """
        timing = None
        if self.tasks:  # fine-tuned models to time
            # Fine-tuning runs were timed one after another; inference is timed again with the models in turns.
            print(
                f"timing inference: each model in turns with {self.labels[0]}, on one batch of test examples per task"
            )
            timing = measure_inference(self.config, self.labels, self.tokenizers, self.tasks, self.tokenized)
        summary = summarise(self.folders, self.config.models, self.labels, self.tasks, self.seeds, timing)
        add_language_results(summary, self.folders, self.labels, language_tasks)
        summary["fine_tuning_runs"] = {"made": self.countdown.done, "reused": self.jobs - self.countdown.jobs}
        # Written with the summary, so the folder's config is the one its results were made with.
        save_config(self.config, output / "config.yaml")
        ckpt.atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
        table = format_summary(summary)
        ckpt.atomic_write_text(output / "summary.md", table)
        return table


def check_evaluation(
    config: EvaluateConfig, say: bool = True
) -> tuple[dict[str, PreTrainedTokenizerBase], list[Task], list[LanguageTask]]:
    """Refuse, before anything trains, models and tasks that cannot be evaluated (a task kind a model cannot
    serve among them: ``lm_harness.check_task_kinds``); their tokenizers, the tasks fine-tuned on, and the
    language-model tasks scored with no fine-tuning.

    ``run`` calls it with the teacher alone before it distils (``say=False``: the evaluation says what
    it will cut later, once), so a bad task file or setting costs seconds, not a distillation.
    """
    if not config.models:
        raise MonodistillError("no model to evaluate: pass --model PATH_OR_HUB_ID (the teacher first)")
    if not config.tasks:
        raise MonodistillError("no task: pass --task NAME_OR_YAML")
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise MonodistillError("evaluate.mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on this machine")
    tokenizers = {model: check_model(model, config.max_length, say) for model in config.models}
    tasks, language_tasks = [], []
    for reference in config.tasks:
        if language_task_kind(reference):
            task = load_language_task(Path(reference))
            language_tasks.append(cap_language_task(task, config.max_eval_samples, config.seed))
        else:
            tasks.append(load_task(reference))
    names = [task.name for task in [*tasks, *language_tasks]]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise MonodistillError(f"evaluate.tasks names task {twice[0]!r} twice: each task's results are filed by name")
    for model, tokenizer in tokenizers.items():
        check_task_kinds(model, tokenizer, tasks, language_tasks)
    return tokenizers, tasks, language_tasks


def check_model(model: str, max_length: int, say: bool = True) -> PreTrainedTokenizerBase:
    """Refuse, before anything trains, a model that cannot be evaluated as it is; returns its tokenizer.

    A local folder's files must be intact (``checkpoint.check_model_folder``), its tokenizer its own
    (``teacher.load_tokenizer``) and its weights of the shapes config.json builds: the stored shapes
    from the file headers against the model built on the meta device
    (``weights.check_weight_shapes``). A ``max_length`` beyond the model's
    positions is cut to them, and said here, once per model.
    """
    model_config = load_model_config(model, kind="model")
    if is_local_reference(model):
        ckpt.check_model_folder(Path(model), what="model")
    tokenizer = load_tokenizer(model, kind="model", model_config=model_config)
    check_weight_shapes(model, model_config, kind="model")
    used = usable_max_length(max_length, model_config)
    if used < max_length and say:
        print(f"model {model}: max_length={max_length} is beyond its {used} positions; using {used}")
    return tokenizer


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
