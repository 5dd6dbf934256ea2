"""One typed, nested configuration for every stage.

The dataclass defaults below are the only defaults. YAML files hold only the differences, and
``section.field=value`` overrides on the command line beat both. Each section validates itself in
``__post_init__`` and names the offending field in its error.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from monodistill.checkpoint import atomic_write_text
from monodistill.errors import MonodistillError, not_utf8

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
STUDENT_INITS = ("random", "teacher-embeddings", "teacher-layers")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TeacherConfig:
    """The frozen multilingual masked-LM teacher."""

    name_or_path: str = "bert-base-multilingual-cased"
    """Hub id or local folder of an ``AutoModelForMaskedLM`` checkpoint."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; ignored for local folders."""
    dtype: str = "auto"
    """Teacher weights dtype: auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16 or float16."""

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path), "teacher.name_or_path must not be empty")
        _require(self.dtype in TEACHER_DTYPES, f"teacher.dtype must be one of {TEACHER_DTYPES}, got {self.dtype!r}")


@dataclass
class VocabConfig:
    """Trimming the vocabulary to the target language (optional)."""

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
        _require(self.max_size is None or self.max_size > 0, "vocab.max_size must be positive")
        _require(
            self.coverage is None or 0.0 < self.coverage <= 1.0,
            f"vocab.coverage must be in (0, 1], got {self.coverage}",
        )
        _require(self.min_count >= 1, f"vocab.min_count must be >= 1, got {self.min_count}")

    @property
    def active(self) -> bool:
        """Whether distillation uses a trimmed vocabulary."""
        return self.enabled or self.path is not None


@dataclass
class StudentConfig:
    """The student's shape and initialisation. Preset values are overridden by explicit fields."""

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
            _require(value is None or value > 0, f"student.{name} must be positive, got {value}")
        _require(self.init in STUDENT_INITS, f"student.init must be one of {STUDENT_INITS}, got {self.init!r}")


@dataclass
class DataConfig:
    """The target-language distillation corpus, tokenised, packed and masked."""

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
    """Use this fraction of the documents, chosen deterministically from the seed (paper: 0.5)."""
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
        _require(0.0 < self.data_fraction <= 1.0, f"data.data_fraction must be in (0, 1], got {self.data_fraction}")
        _require(self.max_seq_length >= 8, f"data.max_seq_length must be >= 8, got {self.max_seq_length}")
        _require(
            0.0 < self.validation_fraction < 0.5,
            f"data.validation_fraction must be in (0, 0.5), got {self.validation_fraction}",
        )
        _require(self.max_validation_blocks >= 1, "data.max_validation_blocks must be >= 1")
        _require(
            0.0 < self.mlm_probability < 1.0,
            f"data.mlm_probability must be in (0, 1), got {self.mlm_probability}",
        )
        _require(self.num_proc >= 1, f"data.num_proc must be >= 1, got {self.num_proc}")
        _require(
            self.max_documents is None or self.max_documents > 0,
            f"data.max_documents must be positive, got {self.max_documents}",
        )
        _require(
            not self.streaming or self.max_documents is not None,
            "data.streaming needs data.max_documents: a streamed corpus must be bounded to be packed",
        )


@dataclass
class LossConfig:
    """L = alpha_kl * T^2 * KL(teacher_T || student_T) + alpha_mlm * CE + alpha_cosine * (1 - cos)."""

    alpha_kl: float = 0.5
    """Weight of the distillation KL term (prototype script: 0.5; DistilBERT: 5.0)."""
    alpha_mlm: float = 0.5
    """Weight of the masked-LM cross-entropy on the true tokens (prototype: 0.5; DistilBERT: 2.0)."""
    temperature: float = 4.0
    """Softmax temperature T for the KL term."""
    alpha_cosine: float = 0.0
    """Weight of the hidden-state cosine term (needs equal hidden sizes; DistilBERT: 1.0)."""

    def __post_init__(self) -> None:
        for name in ("alpha_kl", "alpha_mlm", "alpha_cosine", "temperature"):
            value = getattr(self, name)
            _require(math.isfinite(value), f"loss.{name} must be a finite number, got {value}")
        _require(self.temperature > 0, f"loss.temperature must be > 0, got {self.temperature}")
        _require(
            min(self.alpha_kl, self.alpha_mlm, self.alpha_cosine) >= 0,
            "loss.alpha_kl, loss.alpha_mlm and loss.alpha_cosine must be >= 0",
        )
        _require(
            self.alpha_kl > 0 or self.alpha_mlm > 0,
            "loss.alpha_kl and loss.alpha_mlm are both zero: nothing would train the student's predictions",
        )


@dataclass
class TrainConfig:
    """The optimisation loop."""

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

    def __post_init__(self) -> None:
        _require(self.epochs > 0, f"train.epochs must be > 0, got {self.epochs}")
        _require(self.max_steps is None or self.max_steps > 0, f"train.max_steps must be > 0, got {self.max_steps}")
        _require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _require(self.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps must be >= 1")
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"train.learning_rate must be > 0, got {self.learning_rate}",
        )
        _require(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _require(0.0 <= self.warmup_ratio < 1.0, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _require(self.max_grad_norm >= 0, f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}")
        _require(
            self.mixed_precision in MIXED_PRECISIONS,
            f"train.mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}",
        )
        for name in ("log_interval", "save_interval"):
            _require(getattr(self, name) >= 1, f"train.{name} must be >= 1, got {getattr(self, name)}")
        _require(self.eval_interval >= 0, f"train.eval_interval must be >= 0, got {self.eval_interval}")
        _require(self.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")


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
        _require(self.seeds >= 1, f"evaluate.seeds must be >= 1, got {self.seeds}")
        _require(self.learning_rate > 0, f"evaluate.learning_rate must be > 0, got {self.learning_rate}")
        _require(self.epochs > 0, f"evaluate.epochs must be > 0, got {self.epochs}")
        _require(self.batch_size >= 1, f"evaluate.batch_size must be >= 1, got {self.batch_size}")
        _require(self.gradient_accumulation_steps >= 1, "evaluate.gradient_accumulation_steps must be >= 1")
        _require(self.max_length >= 8, f"evaluate.max_length must be >= 8, got {self.max_length}")
        _require(
            self.truncation in ("head", "tail", "head+tail"),
            f"evaluate.truncation must be head, tail or head+tail, got {self.truncation!r}",
        )
        _require(
            self.mixed_precision in MIXED_PRECISIONS,
            f"evaluate.mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}",
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
        _require(bool(names), "students must list at least one student")
        _require(len(set(names)) == len(names), f"students need distinct names, got {names}")


ConfigT = TypeVar("ConfigT")

# What YAML reads as null; an optional text field given one of these on the command line is unset.
YAML_NULLS = ("", "~", "null", "Null", "NULL")


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, never yes/no/on/off.

    YAML 1.1 reads ``no`` as False, which turns a documented value such as ``mixed_precision: no``
    into a boolean. Boolean fields still accept yes/no: OmegaConf converts the text by the schema.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file, whatever the platform's locale, without a leading byte-order mark.

    Args:
        path: The file to read.

    Returns:
        Its text, line endings as stored.

    Raises:
        MonodistillError: ``PATH is not UTF-8 (byte 0x.. at offset N)``, naming the first bad byte.
    """
    data = path.read_bytes()
    # Editors on Windows write a BOM; it is not part of the text (and would stick to the first column name).
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        raise not_utf8(path, data[offset], offset) from None


def load_config(
    schema: type[ConfigT],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    updates: dict[str, Any] | None = None,
) -> ConfigT:
    """Build a validated config: dataclass defaults < YAML file < ``updates`` < dotted overrides.

    Args:
        schema: The config dataclass, e.g. ``DistillConfig``.
        path: Optional YAML file holding differences from the defaults.
        overrides: ``section.field=value`` strings. A text field takes the value as typed (``no`` stays
            ``"no"``; surrounding quotes are removed); other fields read it as a YAML scalar.
        updates: Nested dict applied after the file (the CLI's explicit flags); ``None`` values are skipped.

    Returns:
        An instance of ``schema``.

    Raises:
        MonodistillError: naming where the bad setting came from (the file or the override), the field
            and the problem; an unknown field comes with the nearest known one.
    """
    merged = OmegaConf.structured(schema)
    file_data: dict[str, Any] = {}
    if path is not None:
        file_data = _read_yaml(Path(path))
        _check_keys(schema, file_data, f"invalid config in {path}")
        merged = _merge(merged, file_data, f"invalid config in {path}")
    flags = _drop_none(updates or {})
    if flags:
        merged = _merge(merged, flags, "invalid config")
    for item in overrides or []:
        merged = _merge(merged, _override_layer(schema, item), f"override {item!r}")
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise MonodistillError(f"invalid config: {_omegaconf_message(error)}") from None
    except ValueError as error:  # a section's __post_init__, naming the field
        where = _setter(str(error), path, file_data, flags, overrides or [])
        raise MonodistillError(f"{where}: {error}") from None
    return config  # type: ignore[return-value]


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts, for YAML and JSON."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML, atomically: a crash never leaves a half-written one."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def lists_students(path: str | Path | None) -> bool:
    """Whether a config file describes several students (a ``students`` list, as ``run`` takes)."""
    return path is not None and "students" in _read_yaml(Path(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MonodistillError(f"config file {path} does not exist")
    try:
        data = yaml.load(read_text(path), Loader=_Yaml12Loader)
    except yaml.YAMLError as error:
        raise MonodistillError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MonodistillError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _merge(merged: Any, layer: Any, where: str) -> Any:
    try:
        return OmegaConf.merge(merged, layer)
    except OmegaConfBaseException as error:
        raise MonodistillError(f"{where}: {_omegaconf_message(error)}") from None


def _override_layer(schema: type, item: str) -> Any:
    """``section.field=value`` as a config layer; a text field keeps the value as typed."""
    if "=" not in item or item.startswith("="):
        raise MonodistillError(f"override {item!r} is not of the form section.field=value")
    key, text = item.split("=", 1)
    parts = key.split(".")
    declared = _field_type(schema, parts, f"override {item!r}")
    if declared is None or _without_none(declared) is not str:
        return OmegaConf.from_dotlist([item])  # numbers, booleans, lists: parsed as YAML scalars
    layer: Any = _text_value(text, optional=declared is not str)
    for part in reversed(parts):
        layer = {part: layer}
    return layer


def _text_value(text: str, optional: bool) -> str | None:
    if optional and text in YAML_NULLS:
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            unquoted = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(unquoted, str):
            return unquoted
    return text


def _field_type(schema: type, parts: list[str], where: str) -> Any:
    """The declared type of the field at ``parts``, or None past what the schema declares.

    Raises:
        MonodistillError: for a field the schema does not have, naming the nearest one.
    """
    current: Any = schema
    for depth, part in enumerate(parts):
        current = _without_none(current)
        if dataclasses.is_dataclass(current) and isinstance(current, type):
            hints = typing.get_type_hints(current)
            if part not in hints:
                prefix = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, list(hints), n=1)
                hint = f"did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else f"fields: {list(hints)}"
                raise MonodistillError(f"{where}: {prefix or 'the config'} has no field {part!r} ({hint})")
            current = hints[part]
        elif typing.get_origin(current) is list and part.isdigit():
            current = typing.get_args(current)[0]
        else:
            return None
    return current


def _check_keys(schema: type, data: dict[str, Any], where: str, prefix: tuple[str, ...] = ()) -> None:
    for key, value in data.items():
        parts = [*prefix, str(key)]
        declared = _without_none(_field_type(schema, parts, where))
        if isinstance(value, dict):
            _check_keys(schema, value, where, tuple(parts))
        elif isinstance(value, list) and typing.get_origin(declared) is list:
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _check_keys(schema, item, where, (*parts, str(index)))


def _without_none(declared: Any) -> Any:
    """``X`` for ``X | None``; anything else unchanged."""
    arguments = [argument for argument in typing.get_args(declared) if argument is not type(None)]
    if isinstance(declared, types.UnionType) and len(arguments) == 1:
        return arguments[0]
    return declared


def _setter(
    message: str, path: str | Path | None, file_data: dict[str, Any], flags: dict[str, Any], overrides: list[str]
) -> str:
    """Where the value that a validation message names was set: the last override, the flags, then the file."""

    def named(key: str) -> bool:
        # A bare evaluate override (`epochs=0`) is named in the message with its section (`evaluate.epochs`).
        return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", message) is not None

    for item in reversed(overrides):
        if named(item.split("=", 1)[0]):
            return f"override {item!r}"
    set_by_flags = any(named(key) for key in _dotted_keys(flags))
    if path is not None and not set_by_flags and any(named(key) for key in _dotted_keys(file_data)):
        return f"invalid config in {path}"
    return "invalid config"


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.extend(_dotted_keys(value, f"{dotted}.") if isinstance(value, dict) else [dotted])
    return keys


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                cleaned[key] = value
        elif value is not None:
            cleaned[key] = value
    return cleaned


def _omegaconf_message(error: OmegaConfBaseException) -> str:
    # OmegaConf appends object/reference types on extra lines; the first line plus the key is enough.
    message = str(error).splitlines()[0]
    key = getattr(error, "full_key", None)
    return f"{key}: {message}" if key else message
