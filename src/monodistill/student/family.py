"""The student's architecture family: the teacher's own, or another over the teacher's tokenizer (``student.family``).

A student of the teacher's family is the teacher's config at the student's shape (``Family.student_config``).
A student of another family is that family's config built fresh (``Family.fresh_config``: BERT's and ModernBERT's
adapters build one for encoder teachers, Llama's for decoder teachers), with the teacher's vocabulary (full or
trimmed), special-token ids and position limit, and otherwise the family's defaults, which its adapter's
docstring gives.

Presets and explicit fields set the same four numbers in every family: ``intermediate_size`` is BERT's
feed-forward width and ModernBERT's GLU width (its input projection is twice that, so a ModernBERT student of a
preset has about half as many feed-forward weights again as the BERT one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import StudentConfig
from monodistill.errors import MonodistillError
from monodistill.families import family_of, student_families
from monodistill.teacher import max_positions

if TYPE_CHECKING:
    from monodistill.student.shape import StudentShape

SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")


def student_family(config: StudentConfig, teacher_config: Any) -> str:
    """The family the student is built in: ``student.family``, or the teacher's."""
    return config.family or str(teacher_config.model_type)


def fresh_config(family: str, teacher_config: Any, shape: StudentShape, vocab_size: int) -> Any:
    """A ``family`` config at the student's shape over the teacher's vocabulary, for a teacher of another family."""
    if family not in student_families():
        raise MonodistillError(f"student.family must be one of {student_families()}, got {family!r}")
    # The teacher's ids: remapped with the vocabulary when it is trimmed; None where the teacher has none.
    specials: dict[str, Any] = {name: getattr(teacher_config, name, None) for name in SPECIAL_ID_FIELDS}
    return family_of(family).fresh_config(teacher_config, shape, vocab_size, specials, max_positions(teacher_config))


def check_family_init(config: StudentConfig, teacher_config: Any) -> None:
    """Refuse ``student.init=teacher-layers`` for a student of another family than the teacher's."""
    teacher_family = teacher_config.model_type
    if student_family(config, teacher_config) != teacher_family and config.init == "teacher-layers":
        raise MonodistillError(
            f"student.init=teacher-layers copies the teacher's own layers, but student.family={config.family} is not "
            f"the teacher's {teacher_family}; use student.init=teacher-embeddings or random, or leave student.family"
        )


def check_family_serves(config: StudentConfig, teacher_config: Any, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse, in one line, a ``student.family`` that the teacher's tokenizer or weights cannot serve.

    Every masked family needs a mask token (the teacher's loader already insists) and a padding token:
    fine-tuning and the fill-mask pipeline pad their batches, and both families' embeddings keep the padding
    row at zero. A decoder student pads with EOS where there is no padding token, as its teacher's family does
    (Llama's tokenizer has none). ``teacher-layers`` copies the teacher's own modules, so it is refused across
    families.
    """
    if config.family is None:
        return
    check_family_init(config, teacher_config)
    if tokenizer.pad_token is None and family_of(config.family).objective == "masked":
        raise MonodistillError(
            f"student.family={config.family}: the teacher's tokenizer has no padding token, which the student's "
            "fine-tuning and fill-mask batches need; give the teacher a tokenizer with one"
        )
