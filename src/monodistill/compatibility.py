"""Whether a teacher can serve a student's settings: checked before anything is built, each refusal one line."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError
from monodistill.families import family_of
from monodistill.losses import check_objective
from monodistill.student import StudentShape
from monodistill.student.family import check_family_serves, fresh_config, student_family
from monodistill.teacher import max_positions


def check_compatible(
    config: DistillConfig,
    teacher: PreTrainedModel,
    shape: StudentShape,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Refuse settings that the teacher (and, for ``student.family``, its ``tokenizer``) cannot serve, before
    anything is built."""
    check_objective_kind(config, teacher)
    limit = max_positions(teacher.config)
    if config.data.max_seq_length > limit:
        raise MonodistillError(
            f"data.max_seq_length={config.data.max_seq_length} is beyond the teacher's {limit} positions"
        )
    if tokenizer is not None:
        check_family_serves(config.student, teacher.config, tokenizer)
    family = student_family(config.student, teacher.config)
    if family != teacher.config.model_type:  # a fresh config: its own position limit (BERT's 512)
        student_limit = max_positions(fresh_config(family, teacher.config, shape, teacher.config.vocab_size))
        if config.data.max_seq_length > student_limit:
            raise MonodistillError(
                f"data.max_seq_length={config.data.max_seq_length} is beyond the {student_limit} positions of a "
                f"student.family={family} student of a {teacher.config.model_type} teacher"
            )
    if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise MonodistillError("train.mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on this machine")
    if config.loss.alpha_cosine > 0 and shape.hidden_size != teacher.config.hidden_size:
        raise MonodistillError(
            f"loss.alpha_cosine needs equal hidden sizes; the student has {shape.hidden_size}, "
            f"the teacher {teacher.config.hidden_size}"
        )
    student = {"layers": shape.num_layers, "hidden": shape.hidden_size, "heads": shape.num_heads}
    sizes = {
        "layers": teacher.config.num_hidden_layers,
        "hidden": teacher.config.hidden_size,
        "heads": teacher.config.num_attention_heads,
    }
    check_objective(config.loss, student, sizes, teacher.config.model_type, family)


def check_objective_kind(config: DistillConfig, teacher: PreTrainedModel) -> None:
    """Refuse, in one line, an ``objective`` the teacher's head does not serve, and settings of the other objective.

    The objective is the teacher's own (``Family.objective``): a masked LM's masked tokens, a decoder's next
    token; ``objective: auto`` takes it, an explicit other one is refused.
    """
    own = family_of(teacher).objective
    kind = {"masked": "a masked language model (an encoder)", "causal": "a causal language model (a decoder)"}
    if config.objective not in ("auto", own):
        raise MonodistillError(
            f"objective: {config.objective}, but teacher {config.teacher.name_or_path} is {kind[own]} "
            f"({teacher.config.model_type}); the {config.objective} objective needs {kind[config.objective]} as teacher"
        )
    if own == "causal" and config.data.whole_word_mask:
        raise MonodistillError(
            "data.whole_word_mask masks whole words for the masked objective; the causal objective of "
            f"{config.teacher.name_or_path} scores every next token and masks nothing: leave it false"
        )
    if config.student.family is not None and family_of(config.student.family).objective != own:
        raise MonodistillError(
            f"student.family={config.student.family} is {kind[family_of(config.student.family).objective]}, the "
            f"teacher {kind[own]}: leave student.family unset for a student of the teacher's own family"
        )
