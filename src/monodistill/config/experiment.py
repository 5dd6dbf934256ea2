"""The configs of the stages after distillation: evaluation, and the whole experiment (``monodistill run``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from monodistill.config.base import MIXED_PRECISIONS
from monodistill.config.base import require as _require
from monodistill.config.cache import CacheConfig
from monodistill.config.loss import LossConfig
from monodistill.config.schema import (
    AdaptConfig,
    DataConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VocabConfig,
)


@dataclass
class EvaluateConfig:
    """Fine-tuning and evaluation of teachers and students on target-language tasks."""

    section: ClassVar[str] = "evaluate"

    models: list[str] = field(default_factory=list)
    """Hub ids or local folders; the first is the baseline that speedups are measured against."""
    tasks: list[str] = field(default_factory=list)
    """Built-in task names (hatespeech-filipino, newsph-nli, tlunified-ner, wikiann:LANG) or task YAML files."""
    seeds: int = 1
    """Fine-tuning runs per model and task, with seeds seed, seed+1, ..."""
    seed: int = 42
    """First fine-tuning seed."""
    learning_rate: float = 2e-5
    """Fine-tuning learning rate (paper: 2e-5)."""
    learning_rates: list[float] = field(default_factory=list)
    """Candidate learning rates, e.g. [1e-4, 3e-4, 1e-3]: when set, each model, task and seed is fine-tuned with
    each on the training split less a dev split, and the best on dev (macro-F1 for classification, else the
    task's metric) is used instead of learning_rate. Empty (default): learning_rate for all, the paper's protocol
    at the cost of one fine-tuning per result; a search costs one more per candidate."""
    dev_fraction: float = 0.1
    """Share of the (capped) training split held out, with the first seed, as the dev split of the learning-rate
    search for a task without one of its own (a task file's validation beside its test)."""
    epochs: float = 3.0
    """Fine-tuning epochs (paper: 3)."""
    batch_size: int = 8
    """Per-device fine-tuning batch (paper: 8, with 4 accumulation steps)."""
    gradient_accumulation_steps: int = 4
    """Accumulation steps (paper: 4, for an effective batch of 32)."""
    max_length: int = 512
    """Tokens per example; longer texts are truncated (paper: 512)."""
    truncation: str = "head"
    """What a long text keeps: head (its start), tail (its end) or head+tail (first quarter, last three quarters)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.0
    """Linear warmup fraction."""
    mixed_precision: str = "no"
    """no, bf16 or fp16 (paper: fp16 on GPU)."""
    eval_batch_size: int = 64
    """Batch for evaluation and the inference-throughput measurement."""
    max_train_samples: int | None = None
    """Cap the training split (for quick runs)."""
    max_eval_samples: int | None = None
    """Cap the evaluation split (for quick runs)."""
    save_models: bool = False
    """Keep each model's fine-tuned classifier (first seed) under results/<model>/<task>/model/, e.g. to export."""
    distil_from: str | None = None
    """Task-stage distillation (TinyBERT, BiStil): the evaluated model (its label, e.g. teacher, or as given)
    whose fine-tuned task logits, same task and seed, every other model also learns from."""
    distil_alpha: float = 0.5
    """Weight of the KL to that model's task logits; the task loss has weight 1 - distil_alpha."""
    distil_temperature: float = 2.0
    """Softmax temperature of that KL (times T^2)."""
    output_dir: str | None = None
    """Where results are written."""

    def __post_init__(self) -> None:
        _require(self.seeds >= 1, f"evaluate.seeds must be >= 1, got {self.seeds}", "evaluate.seeds")
        _require(
            self.learning_rate > 0,
            f"evaluate.learning_rate must be > 0, got {self.learning_rate}",
            "evaluate.learning_rate",
        )
        _require(self.epochs > 0, f"evaluate.epochs must be > 0, got {self.epochs}", "evaluate.epochs")
        _require(
            all(rate > 0 for rate in self.learning_rates),
            f"evaluate.learning_rates must all be > 0, got {self.learning_rates}",
            "evaluate.learning_rates",
        )
        _require(
            0 < self.dev_fraction < 1,
            f"evaluate.dev_fraction must be between 0 and 1, got {self.dev_fraction}",
            "evaluate.dev_fraction",
        )
        _require(
            not (self.learning_rates and self.distil_from),
            "evaluate.learning_rates cannot be combined with evaluate.distil_from yet: the teacher's logits cover "
            "the whole training split, not the search's share of it; set one of them",
            "evaluate.learning_rates",
            "evaluate.distil_from",
        )
        _require(
            self.batch_size >= 1, f"evaluate.batch_size must be >= 1, got {self.batch_size}", "evaluate.batch_size"
        )
        _require(
            self.gradient_accumulation_steps >= 1,
            "evaluate.gradient_accumulation_steps must be >= 1",
            "evaluate.gradient_accumulation_steps",
        )
        _require(
            self.max_length >= 8, f"evaluate.max_length must be >= 8, got {self.max_length}", "evaluate.max_length"
        )
        _require(
            self.truncation in ("head", "tail", "head+tail"),
            f"evaluate.truncation must be head, tail or head+tail, got {self.truncation!r}",
            "evaluate.truncation",
        )
        _require(
            self.mixed_precision in MIXED_PRECISIONS,
            f"evaluate.mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}",
            "evaluate.mixed_precision",
        )
        _require(
            0.0 <= self.distil_alpha <= 1.0,
            f"evaluate.distil_alpha must be in [0, 1], got {self.distil_alpha}",
            "evaluate.distil_alpha",
        )
        _require(
            math.isfinite(self.distil_temperature) and self.distil_temperature > 0,
            f"evaluate.distil_temperature must be > 0, got {self.distil_temperature}",
            "evaluate.distil_temperature",
        )


@dataclass
class ExperimentConfig:
    """``monodistill run``: vocab (optional) -> distil each student -> evaluate teacher and students -> report."""

    name: str = "experiment"
    """Experiment name, used in the report."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The frozen teacher, shared by every student."""
    vocab: VocabConfig = field(default_factory=VocabConfig)
    """Vocabulary trimming shared by every student (a student may override it)."""
    students: list[StudentConfig] = field(default_factory=lambda: [StudentConfig(preset="dbert-tiny")])
    """The students to distil; each may override shared settings with ``overrides``."""
    data: DataConfig = field(default_factory=DataConfig)
    """The distillation corpus."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights and temperature."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Distillation optimisation."""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Fine-tuning settings and tasks; models are filled in (teacher first, then each student)."""
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    """Optional teacher adaptation, done once for every student (and evaluated beside the teacher)."""
    output_dir: str | None = None
    """Experiment folder: students/, evaluate/ and report/."""
    teacher_cache: str | None = None
    """Distil every student from a cache of the teacher's outputs (``distill``'s ``teacher_cache``)."""
    cache: CacheConfig = field(default_factory=CacheConfig)
    """How the teacher cache summarises the teacher's outputs."""

    def __post_init__(self) -> None:
        names = [student.name or student.preset for student in self.students]
        _require(bool(names), "students must list at least one student", "students")
        _require(
            len(set(names)) == len(names),
            f"students need distinct names, got {names}",
            "students",
            "student.name",
            "student.preset",
        )
