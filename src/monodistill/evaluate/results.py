"""An evaluation's stored results: where each model's are filed, what each was made from, and whether a
stored one can be reused; and a result's one line on the console.

Results are filed under the model's label plus a hash of where it is (``result_folder``). A stored result
is reused only when it was made from the same weights (a local folder's digest, a Hub id's commit:
``model_identity``), task data (``task_digest``), seed and fine-tuning settings (``finetune_settings``);
otherwise it is recomputed, saying why (``stale_reason``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import huggingface_hub

from monodistill.config import EvaluateConfig, config_to_dict
from monodistill.evaluate.metrics import main_metric
from monodistill.evaluate.summary import WEIGHT_SUFFIXES
from monodistill.evaluate.tasks import Task
from monodistill.teacher import is_local_reference

LOSS_SCALING = "mean over accumulation (2026-12)"
"""How the fine-tuning loss is scaled; part of every result's settings, so that older results are recomputed."""


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


def stale_reason(path: Path, made_from: dict[str, Any]) -> str | None:
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
