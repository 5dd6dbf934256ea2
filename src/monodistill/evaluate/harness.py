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
fine-tuned classifiers (``TaskTeacher``, ``distil.py``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.config import EvaluateConfig, config_to_dict, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.distil import TeacherLogits, resolve_source
from monodistill.evaluate.finetune import StepProgress, finetune, teacher_logits
from monodistill.evaluate.metrics import main_metric
from monodistill.evaluate.selection import describe_selection, development_task, select_learning_rate
from monodistill.evaluate.splits import usable_max_length
from monodistill.evaluate.summary import WEIGHT_SUFFIXES, summarise
from monodistill.evaluate.tables import format_summary
from monodistill.evaluate.tasks import Task, load_task
from monodistill.evaluate.timing import measure_inference
from monodistill.labels import evaluation_labels
from monodistill.progress import Countdown
from monodistill.teacher import is_local_reference, load_model_config, load_tokenizer
from monodistill.weights import check_weight_shapes

SAVED_MODEL_DIR = "model"
"""Where ``evaluate.save_models`` keeps a fine-tuned classifier, beside its task's seed results."""
CLASSIFIER_DIR = "seed-{seed}-model"
"""Where the model that ``evaluate.distil_from`` names keeps each seed's fine-tuned classifier for its students."""
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
    tokenizers, tasks = check_evaluation(config)
    overlaps = {task.name: check_overlap(task) for task in tasks}
    seeds = list(range(config.seed, config.seed + config.seeds))
    with runfolder.claim(output):
        ckpt.write_environment(output)
        folders = [result_folder(output, label, model) for model, label in zip(config.models, labels, strict=True)]
        for folder in folders:
            adopt_results(folder)
        tokenized: dict[tuple[Any, ...], Any] = {}  # tokenised tasks, shared by models with one tokenizer
        teacher = None
        if source is not None:
            model = config.models[source]
            teacher = TaskTeacher(config, model, labels[source], folders[source], tokenizers[model], tokenized)
            print(
                f"task distillation: every other model also learns from {teacher.label}'s fine-tuned task logits "
                f"(evaluate.distil_alpha={config.distil_alpha}, distil_temperature={config.distil_temperature})"
            )
        # evaluate.learning_rates: each task's dev split, made once so every model and seed chooses on it.
        searches = {task.name: development_task(task, config) for task in tasks} if config.learning_rates else {}
        # The teacher of task distillation goes first: the others read its fine-tuned classifiers.
        order = sorted(range(len(config.models)), key=lambda index: index != source)
        countdown = Countdown(len(order) * len(tasks) * len(seeds))  # the evaluation's time left
        for position, index in enumerate(order, 1):
            model, label, folder = config.models[index], labels[index], folders[index]
            keeper = teacher if index == source else None  # keeps its classifiers for the others
            learns_from = teacher if index != source else None  # None: plain fine-tuning
            identity = model_identity(model)
            for task_number, task in enumerate(tasks, 1):
                settings = finetune_settings(config, distilled=learns_from is not None)
                for seed_number, seed in enumerate(seeds, 1):
                    where = f"model {position}/{len(order)}, task {task_number}/{len(tasks)}, "
                    where += f"seed {seed_number}/{len(seeds)}"
                    made_from = {**identity, "task": task_digest(task), "settings": settings}
                    made_from["distilled_from"] = learns_from.made_from(task, seed) if learns_from else None
                    path = folder / task.name / f"seed-{seed}.json"
                    keep = {}  # folder -> the setting that keeps a fine-tuned model there
                    if config.save_models and seed == config.seed:
                        keep[folder / task.name / SAVED_MODEL_DIR] = "evaluate.save_models"
                    if keeper:
                        keep[keeper.classifier(task, seed)] = "evaluate.distil_from"
                    stale = _stale_reason(path, made_from)
                    missing = [setting for place, setting in keep.items() if not (place / "config.json").is_file()]
                    if stale is None and missing:
                        stale = f": keeping the fine-tuned model ({', '.join(missing)})"
                    if stale is None and keeper:
                        stale = keeper.check_classifier(task, seed, path)
                    if stale is None:
                        countdown.skip()  # reused: not part of the time a run takes
                        continue
                    note = f", distilled from {learns_from.label}" if learns_from else ""
                    print(f"fine-tuning {label} on {task.name} (seed {seed}){note}{stale}")
                    countdown.start()
                    logits = learns_from.logits(task, seed) if learns_from else None
                    run_config, selection = config, None
                    if searches:
                        selection = select_learning_rate(
                            model, tokenizers[model], task, searches[task.name], config, seed, tokenized,
                            f"{label} on {task.name} ({where})",
                        )  # fmt: skip
                        print(f"{label} on {task.name} (seed {seed}): {describe_selection(selection)}")
                        run_config = replace(config, learning_rate=selection["learning_rate"])
                    bar = StepProgress(f"{label} on {task.name} ({where})", countdown)
                    result = finetune(
                        model, tokenizers[model], task, run_config, seed, tokenized,
                        save_to=list(keep), teacher=logits, progress=bar,
                    )  # fmt: skip
                    result["learning_rate_selection"] = selection
                    countdown.finish()
                    distillation = result.pop("distillation", None)
                    result.update(model=model, label=label, task=task.name, seed=seed, metric=task.metric)
                    result.update(test_overlap=overlaps[task.name], made_from=made_from, task_source=task.source)
                    result["distilled_from"] = learns_from.record(task, seed, distillation) if learns_from else None
                    if keeper:
                        result["distil_classifier"] = keeper.kept_classifier(task, seed)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    ckpt.atomic_write_text(path, json.dumps(result, indent=2) + "\n")
                    left = f"; {countdown.left()} left" if countdown.done < countdown.jobs else ""
                    print(f"{describe_result(result)} ({where}{left})")
                    if result["near_majority"]:
                        print(f"warning: {near_majority_line(result)}", file=sys.stderr)
        # Fine-tuning runs were timed one after another; inference is timed again with the models in turns.
        print(f"timing inference: each model in turns with {labels[0]}, on one batch of test examples per task")
        timing = measure_inference(config, labels, tokenizers, tasks, tokenized)
        summary = summarise(folders, config.models, labels, tasks, seeds, timing)
        jobs = len(order) * len(tasks) * len(seeds)
        summary["fine_tuning_runs"] = {"made": countdown.done, "reused": jobs - countdown.jobs}
        # Written with the summary, so the folder's config is the one its results were made with.
        save_config(config, output / "config.yaml")
        ckpt.atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
        table = format_summary(summary)
        ckpt.atomic_write_text(output / "summary.md", table)
    if show_summary:
        print(table)
    else:
        print(f"evaluation summary: {output / 'summary.md'}")
    return output


class TaskTeacher:
    """The model that every other one is distilled from on each task (``evaluate.distil_from``).

    It is fine-tuned plainly, and keeps each seed's classifier beside that seed's result
    (``seed-<n>-model/``, with the digest of its weights in the result), so that an interrupted
    evaluation resumes with it. A distilled result records that digest in ``made_from``: it is reused
    only while the classifier it learned from is the one on disk.
    """

    def __init__(
        self,
        config: EvaluateConfig,
        model: str,
        label: str,
        folder: Path,
        tokenizer: PreTrainedTokenizerBase,
        tokenized: dict[tuple[Any, ...], Any],
    ) -> None:
        self.config, self.model, self.label, self.folder = config, model, label, folder
        self.tokenizer, self.tokenized = tokenizer, tokenized
        self.identity = model_identity(model)
        self.digests: dict[tuple[str, int], str] = {}  # (task, seed) -> the kept classifier's weights digest
        self.cache: dict[tuple[str, int], TeacherLogits] = {}  # (task, seed) -> its logits, for every student

    def classifier(self, task: Task, seed: int) -> Path:
        """Where the classifier fine-tuned on ``task`` with ``seed`` is kept."""
        return self.folder / task.name / CLASSIFIER_DIR.format(seed=seed)

    def check_classifier(self, task: Task, seed: int, result: Path) -> str | None:
        """None when the stored ``result``'s kept classifier is the one on disk; else why it is recomputed."""
        recorded = (json.loads(result.read_text()).get("distil_classifier") or {}).get("weights")
        digest = model_identity(str(self.classifier(task, seed)))["weights"]
        if recorded != digest:
            return f": its kept classifier ({self.classifier(task, seed).name}) is not the one it recorded; recomputing"
        self.digests[(task.name, seed)] = digest
        return None

    def kept_classifier(self, task: Task, seed: int) -> dict[str, str]:
        """The record of a classifier just fine-tuned and kept, for its result."""
        digest = model_identity(str(self.classifier(task, seed)))["weights"]
        self.digests[(task.name, seed)] = digest
        self.cache.pop((task.name, seed), None)
        return {"folder": self.classifier(task, seed).name, "weights": digest}

    def made_from(self, task: Task, seed: int) -> dict[str, Any]:
        """What a distilled result was made from: this model's weights, the seed and the fine-tuned classifier."""
        return {**self.identity, "seed": seed, "classifier": self.digests[(task.name, seed)]}

    def logits(self, task: Task, seed: int) -> TeacherLogits:
        """The kept classifier's logits on the training split: one pass per task and seed, shared by every student."""
        key = (task.name, seed)
        if key not in self.cache:
            print(f"{self.label}: logits of its fine-tuned classifier on {task.name} (seed {seed}), for distillation")
            classifier = self.classifier(task, seed)
            self.cache[key] = teacher_logits(classifier, self.tokenizer, task, self.config, self.tokenized)
        return self.cache[key]

    def record(self, task: Task, seed: int, distillation: dict[str, Any] | None) -> dict[str, Any]:
        """A distilled result's ``distilled_from``: the teacher as the evaluation names it, and how it was used."""
        classifier = self.digests[(task.name, seed)]
        return {
            "label": self.label,
            "model": self.model,
            "seed": seed,
            "classifier": classifier,
            **(distillation or {}),
        }


def describe_result(result: dict[str, Any]) -> str:
    """A fine-tuning run's one line: its task's headline score (and macro-F1 beside accuracy), training loss
    and time."""
    key = main_metric(result["metric"])
    shown = [key] + (["macro_f1"] if key != "macro_f1" and "macro_f1" in result["metrics"] else [])
    scores = ", ".join(f"{name}={result['metrics'][name]:.4f}" for name in shown)
    return (
        f"{result['label']} on {result['task']} (seed {result['seed']}): {scores}, "
        f"train_loss={result['train_loss']:.3f}, fine-tuned in {result['finetune_seconds']:.1f} s"
    )


def near_majority_line(result: dict[str, Any]) -> str:
    """Why a fine-tuned model counts as ending at the majority class, in one line (``metrics.near_majority``)."""
    return (
        f"{result['label']} on {result['task']} (seed {result['seed']}) ends at the majority class: "
        f"{result['near_majority']}; its accuracy says no more than the label distribution (learning rate "
        f"{result['learning_rate']:g}; evaluate.learning_rates chooses one on held-out data)"
    )


def check_evaluation(config: EvaluateConfig, say: bool = True) -> tuple[dict[str, PreTrainedTokenizerBase], list[Task]]:
    """Refuse, before anything trains, models and tasks that cannot be evaluated; their tokenizers and tasks.

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
    return tokenizers, [load_task(reference) for reference in config.tasks]


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


def result_folder(output: Path, label: str, model: str) -> Path:
    """Where a model's results live: its label (a ``/`` in it as ``__``) plus a hash of where it is."""
    where = str(Path(model).resolve()) if is_local_reference(model) else model
    return output / "results" / f"{label.replace('/', '__')}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def adopt_results(folder: Path) -> None:
    """Rename the results of the same model filed under an earlier label (the same hash) to ``folder``, so they
    are reused: labels were the folder's name, or PARENT__NAME beside a namesake, before they were unified."""
    digest = folder.name.rpartition("-")[2]
    earlier = [path for path in folder.parent.glob(f"*-{digest}") if path.is_dir() and path != folder]
    if not folder.exists() and len(earlier) == 1:
        earlier[0].rename(folder)
        print(f"results of {earlier[0].name} are now filed under its label: {folder.name}")


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
    if task.dev is not None:  # absent from tasks without one, so their stored results stay valid
        content.append(task.dev.to_dict())
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


LOSS_SCALING = "mean over accumulation (2026-12)"
"""How the fine-tuning loss is scaled; part of every result's settings, so that older results are recomputed."""


def finetune_settings(config: EvaluateConfig, distilled: bool = False) -> dict[str, Any]:
    """Every setting that changes a fine-tuning run's result or cost (models, tasks and paths aside).

    The distillation weights count only for a ``distilled`` run: a plain one (the teacher's too) stays
    valid when they change. Which model it learns from is in ``made_from["distilled_from"]``, as that
    model's identity rather than how ``distil_from`` spells it.
    """
    settings = config_to_dict(config)
    # save_models changes what is kept, not the result: stored results stay valid when it is switched.
    ignored = ["models", "tasks", "seeds", "output_dir", "save_models", "distil_from"]
    for name in ignored + ([] if distilled else ["distil_alpha", "distil_temperature"]):
        settings.pop(name, None)
    if not config.learning_rates:  # no search: results made before it existed stay valid
        settings.pop("learning_rates", None)
        settings.pop("dev_fraction", None)
    # Results fine-tuned before the loss was averaged over accumulated micro-batches are not reused.
    settings["loss_scaling"] = LOSS_SCALING
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
        fields = [
            key
            for key in dict.fromkeys([*made_from["settings"], *stored["settings"]])
            if stored["settings"].get(key) != made_from["settings"].get(key)
        ]
        changed = [key for key in changed if key != "settings"] + [f"evaluate.{key}" for key in fields]
    if "distilled_from" in changed:
        changed[changed.index("distilled_from")] = "task distillation (distilled_from: teacher or its classifier)"
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
