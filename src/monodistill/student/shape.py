"""The student's shape: presets, explicit fields, and the teacher's config at that shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.config import StudentConfig
from monodistill.errors import MonodistillError
from monodistill.families import family_of
from monodistill.student.family import fresh_config


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
    teacher_config: Any,
    shape: StudentShape,
    vocab_size: int,
    keep_embedding_size: bool = False,
    family: str | None = None,
) -> Any:
    """The teacher's config (same family, positions, activation, tokenizer ids) at the student's shape.

    Args:
        teacher_config: The teacher's transformers config.
        shape: The student's shape.
        vocab_size: The student's vocabulary size.
        keep_embedding_size: Keep a factorised embedding size (ELECTRA's ``embedding_size``) as the
            teacher has it, so ``teacher-layers`` can copy the embeddings; otherwise it becomes the
            student's hidden size.
        family: ``student.family``; another than the teacher's builds that family's config
            (``student.family``'s module docstring).
    """
    if family is not None and family != teacher_config.model_type:
        return fresh_config(family, teacher_config, shape, vocab_size)
    return family_of(teacher_config).student_config(teacher_config, shape, vocab_size, keep_embedding_size)


def intermediate_size(model_config: Any) -> int:
    """The feed-forward width, from the field the family keeps it in (DistilBERT's ``hidden_dim``, GPT-2's
    ``n_inner`` or 4 x hidden when unset, BLOOM's fixed 4 x hidden)."""
    return family_of(model_config).intermediate_size(model_config)


def embedding_weight(model: PreTrainedModel) -> torch.Tensor:
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, nn.Embedding)
    return embeddings.weight
