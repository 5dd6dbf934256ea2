"""The distillation config: one dataclass per section, each field documented, each section validated.

Every section knows its canonical name (``section``), the one users write in run configs and
overrides: ``train`` for ``TrainConfig``, ``student`` even for an entry of ``ExperimentConfig``'s
``students`` list. The loss section is in ``loss``; evaluation and ``run`` are in ``experiment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from monodistill.config.base import MIXED_PRECISIONS, OBJECTIVES, STUDENT_INITS, TEACHER_DTYPES
from monodistill.config.base import require as _require
from monodistill.config.cache import CacheConfig
from monodistill.config.loss import LossConfig
from monodistill.families import student_families


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
    use_kernels: bool = False
    """Let transformers swap teacher layers for Hub kernels (the ``kernels`` package; needs the Hub, GPU)."""

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

    def check_given_path(self) -> None:
        """Refuse trimming settings beside ``path``: a vocabulary built already is used as it is, so they would be
        ignored. Checked where a user gives settings (``distill``, each student of a sweep), not on every load: a
        student's recorded config holds the settings of the vocabulary ``run`` built for it beside its folder.
        """
        ignored = {"vocab.max_size": self.max_size, "vocab.coverage": self.coverage}
        ignored["vocab.min_count"] = self.min_count if self.min_count != 1 else None
        for name, value in ignored.items():
            _require(
                self.path is None or value is None,
                f"{name}={value} beside vocab.path={self.path}: a vocabulary in vocab.path is used as it was built, "
                f"so {name} would be ignored; drop one of them (build a new vocabulary with `monodistill vocab`)",
                name,
                "vocab.path",
            )


@dataclass
class StudentConfig:
    """The student's shape and initialisation. Preset values are overridden by explicit fields."""

    section: ClassVar[str] = "student"

    preset: str = "dbert-tiny"
    """dbert-base (6L/768H/3072I/12 heads), dbert-tiny (4L/312H/1200I/12 heads) or custom."""
    family: str | None = None
    """Architecture: bert or modernbert for an encoder teacher, llama for a decoder (``families.student_families()``,
    over the teacher's tokenizer, full or trimmed); default the teacher's own.
    A ModernBERT student of a ModernBERT teacher repeats its global/local attention layout and window, of any other
    teacher mmBERT's (global every third layer, local window 128); teacher-layers needs the teacher's family."""
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
    trainable_layers: int | None = None
    """Train only the top N transformer layers and the MLM head's transform (embeddings, and the decoder tied
    to them, stay as initialised); default every weight. ``adapt.train_layers`` sets it for adaptation."""
    overrides: list[str] = field(default_factory=list)
    """For ``monodistill run``: dotted overrides of the shared settings for this student only."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_heads", "trainable_layers"):
            value = getattr(self, name)
            _require(value is None or value > 0, f"student.{name} must be positive, got {value}", f"student.{name}")
        _require(
            self.init in STUDENT_INITS,
            f"student.init must be one of {STUDENT_INITS}, got {self.init!r}",
            "student.init",
        )
        _require(
            self.family is None or self.family in student_families(),
            f"student.family must be one of {student_families()}, got {self.family!r}",
            "student.family",
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
    chat_column: str | None = None
    """Column holding a conversation per document (a list of role/content messages, e.g. ``messages``): a chat
    corpus, rendered with the teacher's chat template, the loss taken on the assistant's tokens only (causal
    objective); unset: plain text."""
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
    static_masks: bool = False
    """Mask each block once per epoch (its masks a function of the block and the epoch, whatever the seed and batch)
    instead of anew at every step: what a teacher cache is built on (and implied by ``teacher_cache``); set it to
    distil live on the masks a cache holds."""
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


SHORT_RUN_STEPS = 1000
"""A run of at most this many optimizer steps keeps one checkpoint unless told otherwise (``keep_checkpoints``):
redoing it costs minutes, where a second checkpoint costs disk (the 60-step quickstart's two: 380 MB). A longer
run keeps two: the previous one to resume from should the newest be damaged."""


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
    keep_checkpoints: int | None = None
    """Checkpoints kept for --resume (each ~3x the student); unset: 1 for runs of <= SHORT_RUN_STEPS steps, else 2."""
    share_teacher: bool = True
    """`run`: distil compatible students together, one teacher forward per batch for all of them."""
    collective_timeout_minutes: float = 10.0
    """Under several processes: how long a rank waits for the others in a collective before the job fails."""
    logit_chunk: int | None = None
    """Scored positions whose vocabulary logits are computed at once (both models); more are computed chunk by
    chunk, the student's recomputed in the backward pass, so memory grows with this, not with the batch. Unset: as
    many as keep one model's logits within 2^26 values (256 MiB in float32): 561 positions at mBERT's 119,547
    tokens, 2,097 at clm-mini's 32,000, 441 at Qwen2.5's 151,936."""

    def __post_init__(self) -> None:
        _require(
            self.logit_chunk is None or self.logit_chunk >= 1,
            f"train.logit_chunk must be >= 1, got {self.logit_chunk}",
            "train.logit_chunk",
        )
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
            self.keep_checkpoints is None or self.keep_checkpoints >= 1,
            f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
            "train.keep_checkpoints",
        )
        _require(
            math.isfinite(self.collective_timeout_minutes) and self.collective_timeout_minutes > 0,
            f"train.collective_timeout_minutes must be > 0, got {self.collective_timeout_minutes}",
            "train.collective_timeout_minutes",
        )

    def checkpoints_kept(self, total_steps: int) -> int:
        """``keep_checkpoints``, or when unset its default for a run of ``total_steps`` optimizer steps."""
        if self.keep_checkpoints is not None:
            return self.keep_checkpoints
        return 1 if total_steps <= SHORT_RUN_STEPS else 2


@dataclass
class AdaptConfig:
    """Teacher adaptation: continued masked-LM training of the teacher on the target-language corpus before
    distilling from it (Gurgurov et al., 2025). ``monodistill adapt`` runs it alone; ``enabled`` makes it
    the first stage of ``distill`` and ``run``, resumable and done once."""

    section: ClassVar[str] = "adapt"

    enabled: bool = False
    """Adapt the teacher first and distil from the adapted teacher."""
    max_steps: int | None = None
    """Optimizer steps of adaptation; default ``epochs``."""
    epochs: float = 1.0
    """Passes over the corpus when max_steps is not set."""
    learning_rate: float = 5e-5
    """Peak AdamW learning rate (continued pretraining: far below a from-scratch student's)."""
    warmup_ratio: float = 0.06
    """Fraction of steps with linear warmup before linear decay."""
    batch_size: int | None = None
    """Blocks per device per micro-batch; default train.batch_size."""
    train_layers: int | None = None
    """Train only the top N transformer layers and the MLM head (the embeddings and lower layers stay); default all."""

    def __post_init__(self) -> None:
        _require(
            self.max_steps is None or self.max_steps > 0,
            f"adapt.max_steps must be > 0, got {self.max_steps}",
            "adapt.max_steps",
        )
        _require(self.epochs > 0, f"adapt.epochs must be > 0, got {self.epochs}", "adapt.epochs")
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"adapt.learning_rate must be > 0, got {self.learning_rate}",
            "adapt.learning_rate",
        )
        _require(
            0.0 <= self.warmup_ratio < 1.0,
            f"adapt.warmup_ratio must be in [0, 1), got {self.warmup_ratio}",
            "adapt.warmup_ratio",
        )
        for name in ("batch_size", "train_layers"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"adapt.{name} must be >= 1, got {value}", f"adapt.{name}")


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
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    """Optional teacher adaptation before distilling."""
    output_dir: str | None = None
    """Run folder: resolved config, metrics, checkpoints and the final student."""
    objective: str = "auto"
    """masked (an encoder teacher's masked LM) or causal (a decoder's next token); auto: the teacher's own. A
    teacher of the other kind is refused."""
    teacher_cache: str | None = None
    """Distil from a cache of the teacher's outputs instead of running it at every step: a folder ``cache-teacher``
    wrote (refused when built with other settings), or a folder to keep caches in, one per setting, built when
    missing (``auto``: under data.cache_dir). The teacher is loaded only to build the students (and the cache)."""
    cache: CacheConfig = field(default_factory=CacheConfig)
    """How the teacher cache summarises the teacher's outputs."""

    def __post_init__(self) -> None:
        _require(
            self.objective in OBJECTIVES,
            f"objective must be one of {OBJECTIVES}, got {self.objective!r}",
            "objective",
        )
