"""The config schema: one dataclass per section, each field documented, each section validated.

Every section knows its canonical name (``section``), the one users write in run configs and
overrides: ``train`` for ``TrainConfig``, ``student`` even for an entry of ``ExperimentConfig``'s
``students`` list, ``evaluate`` even when ``EvaluateConfig`` is the whole config of ``monodistill
evaluate``. A refused value raises ``ConfigError``, which names the fields it is about by those
canonical names, so loading can tell which layer set the value without reading the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import OmegaConf

from monodistill.checkpoint import atomic_write_text
from monodistill.errors import MonodistillError

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
STUDENT_INITS = ("random", "teacher-embeddings", "teacher-layers")
LOGIT_LOSSES = ("kl", "mse")


class ConfigError(MonodistillError, ValueError):
    """A config value that a section refuses.

    Attributes:
        fields: Canonical dotted names of the fields the check is about, as run configs spell them:
            ``("train.learning_rate",)``, or ``("data.streaming", "data.max_documents")`` for a check
            of both.
    """

    fields: tuple[str, ...]

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


def _require(condition: bool, message: str, *fields: str) -> None:
    if not condition:
        raise ConfigError(message, *fields)


@dataclass
class TeacherConfig:
    """The frozen multilingual masked-LM teacher."""

    section: ClassVar[str] = "teacher"

    name_or_path: str = "bert-base-multilingual-cased"
    """Hub id or local folder of an ``AutoModelForMaskedLM`` checkpoint."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; ignored for local folders."""
    dtype: str = "auto"
    """Teacher weights dtype: auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16 or float16."""

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path), "teacher.name_or_path must not be empty", "teacher.name_or_path")
        _require(
            self.dtype in TEACHER_DTYPES,
            f"teacher.dtype must be one of {TEACHER_DTYPES}, got {self.dtype!r}",
            "teacher.dtype",
        )


@dataclass
class VocabConfig:
    """Trimming the vocabulary to the target language (optional)."""

    section: ClassVar[str] = "vocab"

    enabled: bool = False
    """Build a trimmed vocabulary from the distillation corpus before distilling."""
    path: str | None = None
    """Use a trimmed vocabulary already written by ``monodistill vocab`` (implies enabled)."""
    max_size: int | None = None
    """Keep at most this many tokens (special and single-character tokens included)."""
    coverage: float | None = None
    """Keep the most frequent tokens until they cover this fraction of corpus tokens (0-1]."""
    min_count: int = 1
    """Drop tokens seen fewer times than this (special and single-character tokens are kept)."""
    export_teacher: bool = False
    """Also write the teacher restricted to the kept rows (a "Load What You Need" baseline)."""

    def __post_init__(self) -> None:
        _require(self.max_size is None or self.max_size > 0, "vocab.max_size must be positive", "vocab.max_size")
        _require(
            self.coverage is None or 0.0 < self.coverage <= 1.0,
            f"vocab.coverage must be in (0, 1], got {self.coverage}",
            "vocab.coverage",
        )
        _require(self.min_count >= 1, f"vocab.min_count must be >= 1, got {self.min_count}", "vocab.min_count")

    @property
    def active(self) -> bool:
        """Whether distillation uses a trimmed vocabulary."""
        return self.enabled or self.path is not None


@dataclass
class StudentConfig:
    """The student's shape and initialisation. Preset values are overridden by explicit fields."""

    section: ClassVar[str] = "student"

    preset: str = "dbert-tiny"
    """dbert-base (6L/768H/3072I/12 heads), dbert-tiny (4L/312H/1200I/12 heads) or custom."""
    num_layers: int | None = None
    """Transformer layers; overrides the preset."""
    hidden_size: int | None = None
    """Hidden size; overrides the preset."""
    intermediate_size: int | None = None
    """Feed-forward size; overrides the preset."""
    num_heads: int | None = None
    """Attention heads; must divide the hidden size; overrides the preset."""
    init: str = "random"
    """random (the paper), teacher-embeddings (the paper's "teacher conditioning") or teacher-layers."""
    name: str | None = None
    """Label for this student in reports; defaults to the preset name."""
    overrides: list[str] = field(default_factory=list)
    """For ``monodistill run``: dotted overrides of the shared settings for this student only."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_heads"):
            value = getattr(self, name)
            _require(value is None or value > 0, f"student.{name} must be positive, got {value}", f"student.{name}")
        _require(
            self.init in STUDENT_INITS,
            f"student.init must be one of {STUDENT_INITS}, got {self.init!r}",
            "student.init",
        )


@dataclass
class DataConfig:
    """The target-language distillation corpus, tokenised, packed and masked."""

    section: ClassVar[str] = "data"

    corpus: str | None = None
    """Local file or folder (.txt, .jsonl, .json, .csv, .parquet) or a Hub dataset id."""
    hub_config: str | None = None
    """Hub dataset configuration name, e.g. the language subset."""
    split: str = "train"
    """Hub dataset split to read."""
    revision: str | None = None
    """Hub dataset revision, e.g. refs/convert/parquet for a script-based dataset's Parquet copy."""
    text_column: str = "text"
    """Column holding the text (JSONL, CSV, Parquet and Hub datasets)."""
    language: str | None = None
    """ISO 639 code of the corpus language (e.g. tl); written into the model card's metadata."""
    streaming: bool = False
    """Stream a Hub dataset instead of downloading it whole (for OSCAR-scale corpora)."""
    max_documents: int | None = None
    """Read at most this many documents (required with streaming)."""
    data_fraction: float = 1.0
    """Train on this fraction of the training blocks, chosen from the seed (paper: 0.5); validation uses all."""
    max_seq_length: int = 128
    """Tokens per packed block."""
    validation_fraction: float = 0.01
    """Fraction of blocks held out for validation."""
    max_validation_blocks: int = 500
    """Cap on held-out blocks, so validation stays cheap on large corpora."""
    mlm_probability: float = 0.15
    """Fraction of tokens selected for prediction (80% [MASK], 10% random, 10% kept)."""
    whole_word_mask: bool = False
    """Mask whole words (all their sub-tokens) instead of single sub-tokens."""
    cache_dir: str | None = None
    """Where tokenised corpora are cached; default $MONODISTILL_CACHE or ~/.cache/monodistill."""
    num_proc: int = 1
    """Processes for tokenisation."""
    skip_bad_documents: bool = False
    """Skip (and count) JSON/JSONL documents without the text field instead of refusing the corpus."""

    def __post_init__(self) -> None:
        _require(
            0.0 < self.data_fraction <= 1.0,
            f"data.data_fraction must be in (0, 1], got {self.data_fraction}",
            "data.data_fraction",
        )
        _require(
            self.max_seq_length >= 8,
            f"data.max_seq_length must be >= 8, got {self.max_seq_length}",
            "data.max_seq_length",
        )
        _require(
            0.0 < self.validation_fraction < 0.5,
            f"data.validation_fraction must be in (0, 0.5), got {self.validation_fraction}",
            "data.validation_fraction",
        )
        _require(
            self.max_validation_blocks >= 1, "data.max_validation_blocks must be >= 1", "data.max_validation_blocks"
        )
        _require(
            0.0 < self.mlm_probability < 1.0,
            f"data.mlm_probability must be in (0, 1), got {self.mlm_probability}",
            "data.mlm_probability",
        )
        _require(self.num_proc >= 1, f"data.num_proc must be >= 1, got {self.num_proc}", "data.num_proc")
        _require(
            self.max_documents is None or self.max_documents > 0,
            f"data.max_documents must be positive, got {self.max_documents}",
            "data.max_documents",
        )
        _require(
            not self.streaming or self.max_documents is not None,
            "data.streaming needs data.max_documents: a streamed corpus must be bounded to be packed",
            "data.streaming",
            "data.max_documents",
        )


@dataclass
class LossConfig:
    """L = alpha_kl * logit term + alpha_mlm * CE + alpha_cosine * (1 - cos) + alpha_relation * relations
    + alpha_hidden * hidden MSE + alpha_attention * attention MSE; the defaults are the paper's recipe.

    The logit term is T^2 * KL(teacher_T || student_T) (``logit_loss: kl``, the paper) or the mean squared
    error of the logits (``mse``); both, and the CE, are over the masked positions.
    """

    section: ClassVar[str] = "loss"

    alpha_kl: float = 0.5
    """Weight of the logit term, KL or MSE (prototype script: 0.5; DistilBERT: 5.0; Gurgurov et al.: 0.5 MSE)."""
    alpha_mlm: float = 0.5
    """Weight of the masked-LM cross-entropy on the true tokens (prototype: 0.5; DistilBERT: 2.0)."""
    temperature: float = 4.0
    """Softmax temperature T for the KL term."""
    logit_loss: str = "kl"
    """The logit term: kl (KL at the temperature, the paper) or mse (mean squared error of the logits)."""
    alpha_cosine: float = 0.0
    """Weight of the last hidden states' cosine term (needs equal hidden sizes; DistilBERT: 1.0)."""
    alpha_relation: float = 0.0
    """Weight of MiniLMv2's self-attention relation loss (Q-Q, K-K, V-V; TiME uses it alone)."""
    relation_teacher_layer: int | None = None
    """Teacher layer (1-based) whose relations are taught; default the last (MiniLMv2: upper-middle for large ones)."""
    relation_student_layer: int | None = None
    """Student layer (1-based) that learns them; default its last."""
    relation_heads: int | None = None
    """Heads Q, K and V are split into for the relations; default the teacher's; must divide both widths."""
    alpha_hidden: float = 0.0
    """Weight of the hidden-state MSE of mapped layers, through a learned projection when widths differ."""
    alpha_attention: float = 0.0
    """Weight of the attention-probability MSE of mapped layers (TinyBERT; needs equal head counts)."""
    hidden_layers: str | None = None
    """Student:teacher layers of the hidden and attention terms, e.g. "1:2,2:4"; 0 is the embeddings (hidden
    term only); default TinyBERT's evenly spaced map (embeddings, then student layer i to teacher i * L_t / L_s)."""

    WEIGHTS: ClassVar[tuple[str, ...]] = (
        "alpha_kl",
        "alpha_mlm",
        "alpha_cosine",
        "alpha_relation",
        "alpha_hidden",
        "alpha_attention",
    )

    def __post_init__(self) -> None:
        for name in (*self.WEIGHTS, "temperature"):
            value = getattr(self, name)
            _require(math.isfinite(value), f"loss.{name} must be a finite number, got {value}", f"loss.{name}")
        _require(self.temperature > 0, f"loss.temperature must be > 0, got {self.temperature}", "loss.temperature")
        # The message names every weight; the error is about the negative ones only.
        negative = [f"loss.{name}" for name in self.WEIGHTS if getattr(self, name) < 0]
        weights = ", ".join(f"loss.{name}" for name in self.WEIGHTS)
        values = ", ".join(f"{name}={getattr(self, name.removeprefix('loss.'))}" for name in negative)
        _require(not negative, f"loss weights ({weights}) must be >= 0, got {values}", *negative)
        _require(
            any(getattr(self, name) > 0 for name in self.WEIGHTS),
            "every loss weight (loss.alpha_*) is zero: nothing would train the student",
            *(f"loss.{name}" for name in self.WEIGHTS),
        )
        _require(
            self.logit_loss in LOGIT_LOSSES,
            f"loss.logit_loss must be one of {LOGIT_LOSSES}, got {self.logit_loss!r}",
            "loss.logit_loss",
        )
        for name in ("relation_teacher_layer", "relation_student_layer", "relation_heads"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"loss.{name} must be >= 1, got {value}", f"loss.{name}")
        if self.hidden_layers is not None:
            parse_layer_map(self.hidden_layers)

    def needs_internals(self) -> bool:
        """Whether any term reads the models' internals (relations, hidden states, attention)."""
        return self.alpha_relation > 0 or self.alpha_hidden > 0 or self.alpha_attention > 0 or self.alpha_cosine > 0


def parse_layer_map(text: str) -> list[tuple[int, int]]:
    """``"1:2,2:4"`` -> ``[(1, 2), (2, 4)]`` (student, teacher); refuses anything else, naming loss.hidden_layers."""
    pairs = []
    for item in text.replace(" ", "").split(","):
        student, _, teacher = item.partition(":")
        _require(
            student.isdigit() and teacher.isdigit(),
            f'loss.hidden_layers must be student:teacher layer pairs such as "1:2,2:4", got {text!r}',
            "loss.hidden_layers",
        )
        pairs.append((int(student), int(teacher)))
    students = [student for student, _ in pairs]
    _require(
        len(set(students)) == len(students),
        f"loss.hidden_layers maps a student layer twice: {text!r}",
        "loss.hidden_layers",
    )
    return pairs


@dataclass
class TrainConfig:
    """The optimisation loop."""

    section: ClassVar[str] = "train"

    epochs: float = 3.0
    """Passes over the corpus (paper: 3); ignored when max_steps is set."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    batch_size: int = 32
    """Blocks per device per micro-batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 5e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.05
    """Fraction of steps with linear warmup before linear decay to zero."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    mixed_precision: str = "no"
    """Student autocast: no, bf16 or fp16 (through Accelerate)."""
    compile: bool = False
    """Compile the teacher and student encoders with ``torch.compile`` (worth it on GPUs, for long runs)."""
    seed: int = 42
    """Seeds initialisation, data order, data_fraction and masking."""
    log_interval: int = 10
    """Optimizer steps between metric log lines."""
    eval_interval: int = 200
    """Optimizer steps between validations; 0 validates only at the end."""
    save_interval: int = 200
    """Optimizer steps between checkpoints (CLI: --save-steps)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    share_teacher: bool = True
    """`run`: distil compatible students together, one teacher forward per batch for all of them."""
    collective_timeout_minutes: float = 10.0
    """Under several processes: how long a rank waits for the others in a collective before the job fails."""

    def __post_init__(self) -> None:
        _require(self.epochs > 0, f"train.epochs must be > 0, got {self.epochs}", "train.epochs")
        _require(
            self.max_steps is None or self.max_steps > 0,
            f"train.max_steps must be > 0, got {self.max_steps}",
            "train.max_steps",
        )
        _require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}", "train.batch_size")
        _require(
            self.gradient_accumulation_steps >= 1,
            "train.gradient_accumulation_steps must be >= 1",
            "train.gradient_accumulation_steps",
        )
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"train.learning_rate must be > 0, got {self.learning_rate}",
            "train.learning_rate",
        )
        _require(
            self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}", "train.weight_decay"
        )
        _require(
            0.0 <= self.warmup_ratio < 1.0,
            f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}",
            "train.warmup_ratio",
        )
        _require(
            self.max_grad_norm >= 0,
            f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}",
            "train.max_grad_norm",
        )
        _require(
            self.mixed_precision in MIXED_PRECISIONS,
            f"train.mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}",
            "train.mixed_precision",
        )
        for name in ("log_interval", "save_interval"):
            value = getattr(self, name)
            _require(value >= 1, f"train.{name} must be >= 1, got {value}", f"train.{name}")
        _require(
            self.eval_interval >= 0,
            f"train.eval_interval must be >= 0, got {self.eval_interval}",
            "train.eval_interval",
        )
        _require(
            self.keep_checkpoints >= 1,
            f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
            "train.keep_checkpoints",
        )
        _require(
            math.isfinite(self.collective_timeout_minutes) and self.collective_timeout_minutes > 0,
            f"train.collective_timeout_minutes must be > 0, got {self.collective_timeout_minutes}",
            "train.collective_timeout_minutes",
        )


@dataclass
class DistillConfig:
    """Everything ``monodistill distill`` needs: teacher -> vocab -> student -> data -> loss -> train."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The frozen teacher."""
    vocab: VocabConfig = field(default_factory=VocabConfig)
    """Optional vocabulary trimming."""
    student: StudentConfig = field(default_factory=StudentConfig)
    """The student to build."""
    data: DataConfig = field(default_factory=DataConfig)
    """The distillation corpus."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights and temperature."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    output_dir: str | None = None
    """Run folder: resolved config, metrics, checkpoints and the final student."""


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
    output_dir: str | None = None
    """Experiment folder: students/, evaluate/ and report/."""

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


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts, for YAML and JSON."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML, atomically: a crash never leaves a half-written one."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"section.field": value}``, every value as it is (lists and None included).

    Args:
        data: Nested dicts, e.g. from ``config_to_dict``.
        prefix: Prepended to every key, e.g. ``"config."``.

    Returns:
        One entry per leaf, in the order of ``data``.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
