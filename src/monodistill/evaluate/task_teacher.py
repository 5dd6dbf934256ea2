"""The task teacher of an evaluation (``evaluate.distil_from``): the model every other one learns from on each
task, fine-tuned plainly first, keeping each seed's classifier, whose logits its students are distilled to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import EvaluateConfig
from monodistill.evaluate.distil import TeacherLogits
from monodistill.evaluate.finetune import teacher_logits
from monodistill.evaluate.results import model_identity
from monodistill.evaluate.tasks import Task

CLASSIFIER_DIR = "seed-{seed}-model"
"""Where the model that ``evaluate.distil_from`` names keeps each seed's fine-tuned classifier for its students."""


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
