"""Build the student: the teacher's architecture family at a smaller shape, and its initialisation.

Init modes:
- ``random``: a blank student (the paper's choice).
- ``teacher-embeddings``: the paper's "teacher conditioning" ablation. The teacher's word embeddings
  are copied (only the kept rows when the vocabulary is trimmed). When the student's hidden size is
  smaller than the teacher's, the rows are projected onto their top principal components and
  rescaled to the student's initialisation scale: the closest linear fit that keeps the geometry of
  the teacher's token space. A larger student hidden size is an error: there is nothing to project.
- ``teacher-layers``: DistilBERT-style. Embeddings, the MLM head and evenly spaced teacher layers
  (first and last included: 12 -> 6 takes 0, 2, 4, 7, 9, 11) are copied: every student weight comes
  from the teacher. Needs the hidden, intermediate and head sizes of the teacher; a factorised
  embedding size (ELECTRA's) is kept as the teacher has it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from monodistill.config import StudentConfig
from monodistill.errors import MonodistillError


@dataclass(frozen=True)
class StudentShape:
    """The four numbers that set a transformer encoder's size."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int


PRESETS = {
    "dbert-base": StudentShape(num_layers=6, hidden_size=768, intermediate_size=3072, num_heads=12),
    "dbert-tiny": StudentShape(num_layers=4, hidden_size=312, intermediate_size=1200, num_heads=12),
}


def resolve_shape(config: StudentConfig) -> StudentShape:
    """The student's shape: the preset, with any explicitly set field taking precedence."""
    explicit = {
        "num_layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_heads": config.num_heads,
    }
    if config.preset == "custom":
        missing = [name for name, value in explicit.items() if value is None]
        if missing:
            raise MonodistillError(f"student preset 'custom' needs student.{', student.'.join(missing)}")
        base = StudentShape(1, 1, 1, 1)
    elif config.preset in PRESETS:
        base = PRESETS[config.preset]
    else:
        raise MonodistillError(f"unknown student preset {config.preset!r}; choose one of {[*PRESETS, 'custom']}")
    shape = StudentShape(
        **{name: value if value is not None else getattr(base, name) for name, value in explicit.items()}
    )
    if shape.hidden_size % shape.num_heads:
        raise MonodistillError(
            f"student hidden size {shape.hidden_size} is not divisible by its {shape.num_heads} attention heads"
        )
    return shape


def student_model_config(
    teacher_config: Any, shape: StudentShape, vocab_size: int, keep_embedding_size: bool = False
) -> Any:
    """The teacher's config (same family, positions, activation, tokenizer ids) at the student's shape.

    Args:
        teacher_config: The teacher's transformers config.
        shape: The student's shape.
        vocab_size: The student's vocabulary size.
        keep_embedding_size: Keep a factorised embedding size (ELECTRA's ``embedding_size``) as the
            teacher has it, so ``teacher-layers`` can copy the embeddings; otherwise it becomes the
            student's hidden size.
    """
    config = copy.deepcopy(teacher_config)
    # DistilBERT's config maps these three names onto n_layers, dim and n_heads itself.
    config.num_hidden_layers = shape.num_layers
    config.hidden_size = shape.hidden_size
    config.num_attention_heads = shape.num_heads
    setattr(config, intermediate_field(config), shape.intermediate_size)
    config.vocab_size = vocab_size
    config.architectures = None
    config.dtype = torch.float32
    if hasattr(config, "pooler_hidden_size"):
        config.pooler_hidden_size = shape.hidden_size
    if hasattr(config, "embedding_size") and not keep_embedding_size:
        config.embedding_size = shape.hidden_size
    return config


def intermediate_field(model_config: Any) -> str:
    """The config field of the feed-forward size: DistilBERT's ``hidden_dim`` has no alias."""
    return "hidden_dim" if model_config.model_type == "distilbert" else "intermediate_size"


def build_student(
    config: StudentConfig,
    teacher: PreTrainedModel,
    vocab_ids: torch.Tensor | None = None,
    seed: int = 0,
) -> PreTrainedModel:
    """Build and initialise the student.

    Args:
        config: Shape and init mode.
        teacher: The loaded teacher; its family and config are reused.
        vocab_ids: Teacher ids of the student's vocabulary (student id -> teacher id) when trimmed.
        seed: Seeds the random initialisation.

    Returns:
        A float32 ``*ForMaskedLM`` model in train mode.
    """
    shape = resolve_shape(config)
    vocab_size = len(vocab_ids) if vocab_ids is not None else teacher.config.vocab_size
    model_config = student_model_config(
        teacher.config, shape, vocab_size, keep_embedding_size=config.init == "teacher-layers"
    )
    if vocab_ids is not None:
        from monodistill.vocab import remap_special_ids

        remap_special_ids(model_config, vocab_ids.tolist())
    torch.manual_seed(seed)
    student = AutoModelForMaskedLM.from_config(model_config)
    if config.init == "teacher-embeddings":
        copy_teacher_embeddings(student, teacher, vocab_ids)
    elif config.init == "teacher-layers":
        copy_teacher_layers(student, teacher, vocab_ids)
    student.tie_weights()
    return student.float().train()


def copy_teacher_embeddings(student: PreTrainedModel, teacher: PreTrainedModel, vocab_ids: torch.Tensor | None) -> None:
    """Copy the teacher's word embeddings (kept rows only), projecting them when the student is narrower."""
    source = _embedding_weight(teacher).detach().float()  # (V_teacher, H_teacher)
    if vocab_ids is not None:
        source = source[vocab_ids]  # (V_student, H_teacher)
    target = _embedding_weight(student)
    if source.shape[1] < target.shape[1]:
        raise MonodistillError(
            f"student.init=teacher-embeddings: the student hidden size {target.shape[1]} is larger than the "
            f"teacher's {source.shape[1]}; there is no embedding to copy into the extra dimensions"
        )
    if source.shape[1] > target.shape[1]:
        source = project_embeddings(source, target.shape[1], target_std=float(target.detach().std()))
    with torch.no_grad():
        target.copy_(source)


def _embedding_weight(model: PreTrainedModel) -> torch.Tensor:
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, nn.Embedding)
    return embeddings.weight


def project_embeddings(embeddings: torch.Tensor, dim: int, target_std: float) -> torch.Tensor:
    """(V, H) -> (V, dim): centred PCA projection, rescaled to ``target_std``."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    # Randomised PCA: exact enough for the top components, and fast on a 119k x 768 matrix.
    _, _, components = torch.pca_lowrank(centred, q=dim, center=False, niter=4)  # (H, dim)
    projected = centred @ components  # (V, dim)
    return projected * (target_std / projected.std().clamp_min(1e-12))


def teacher_layer_indices(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (12 -> 6: [0, 2, 4, 7, 9, 11])."""
    if student_layers > teacher_layers:
        raise MonodistillError(
            f"student.init=teacher-layers: the student has {student_layers} layers, the teacher only {teacher_layers}"
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [round(index * step) for index in range(student_layers)]


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel, vocab_ids: torch.Tensor | None) -> None:
    """DistilBERT-style init: every weight (embeddings, MLM head, evenly spaced layers) from the teacher."""
    for name in ("hidden_size", "intermediate_size", "num_attention_heads"):
        field = intermediate_field(teacher.config) if name == "intermediate_size" else name
        if getattr(student.config, field) != getattr(teacher.config, field):
            raise MonodistillError(
                f"student.init=teacher-layers needs the teacher's {name} ({getattr(teacher.config, field)}), "
                f"the student has {getattr(student.config, field)}; use teacher-embeddings or random"
            )
    teacher_state = {key: value.detach().float() for key, value in teacher.state_dict().items()}
    student_state = student.state_dict()
    layer_map = dict(
        enumerate(teacher_layer_indices(teacher.config.num_hidden_layers, student.config.num_hidden_layers))
    )
    vocab_size = student.config.vocab_size
    copied: dict[str, torch.Tensor] = {}
    for key, value in student_state.items():
        source_key = _teacher_key(key, layer_map)
        if source_key not in teacher_state:
            continue
        source = teacher_state[source_key]
        if vocab_ids is not None and source.shape[:1] == (teacher.config.vocab_size,) and value.shape[0] == vocab_size:
            source = source[vocab_ids]  # word embeddings, decoder weight and bias: kept rows only
        if source.shape == value.shape:
            copied[key] = source
    # Every weight comes from the teacher: a silently skipped one (a shape that differs) would stay random.
    missing = [key for key in student_state if key not in copied]
    if missing:
        raise MonodistillError(f"student.init=teacher-layers could not map student weights {missing[:3]}")
    student.load_state_dict(copied, strict=False)


def _teacher_key(student_key: str, layer_map: dict[int, int]) -> str:
    parts = student_key.split(".")
    for position, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[position + 1].isdigit():
            parts[position + 1] = str(layer_map[int(parts[position + 1])])
            break
    return ".".join(parts)
