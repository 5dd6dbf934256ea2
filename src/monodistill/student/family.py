"""The student's architecture family: the teacher's own, or BERT or ModernBERT over the teacher's tokenizer.

A student of the teacher's family is the teacher's config at the student's shape (``shape.student_model_config``).
A student of another family (``student.family``) is that family's config built fresh, with the teacher's
vocabulary (full or trimmed), special-token ids and position limit, and otherwise the family's defaults:

- ``bert``: BERT's defaults; learned absolute positions, at most ``BERT_MAX_POSITIONS`` of them.
- ``modernbert``: mmBERT's layout: global attention in every third layer from the first
  (``MODERNBERT_GLOBAL_EVERY``), a local window of 128 tokens in the others (``MODERNBERT_LOCAL_ATTENTION``),
  mean pooling for classifiers (which reads no ``[CLS]``). From a ModernBERT teacher the student keeps the
  teacher's config, with the teacher's period of global and local layers repeated over the student's depth
  (``teacher-layers`` takes the type of each copied layer).

Presets and explicit fields set the same four numbers in every family: ``intermediate_size`` is BERT's
feed-forward width and ModernBERT's GLU width (its input projection is twice that, so a ModernBERT student of a
preset has about half as many feed-forward weights again as the BERT one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import BertConfig, ModernBertConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import StudentConfig
from monodistill.config.base import STUDENT_FAMILIES
from monodistill.errors import MonodistillError
from monodistill.teacher import max_positions

if TYPE_CHECKING:
    from monodistill.student.shape import StudentShape

BERT_MAX_POSITIONS = 512
"""Position embeddings of a BERT student of another family's teacher (BERT's own; ModernBERT teachers allow 8192)."""
MODERNBERT_GLOBAL_EVERY = 3
"""A ModernBERT student of another family's teacher: global attention in layers 0, 3, 6, ... (mmBERT's layout)."""
MODERNBERT_LOCAL_ATTENTION = 128
"""Its local attention window, in tokens (mmBERT's)."""
SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")


def student_family(config: StudentConfig, teacher_config: Any) -> str:
    """The family the student is built in: ``student.family``, or the teacher's."""
    return config.family or str(teacher_config.model_type)


def modernbert_layer_types(teacher_config: Any, num_layers: int) -> list[str]:
    """Each student layer's attention (``full_attention`` or ``sliding_attention``).

    From a ModernBERT teacher, the shortest period that repeats its layout (mmBERT: global, local, local),
    over the student's depth; from any other teacher, every ``MODERNBERT_GLOBAL_EVERY``-th layer global.
    """
    teacher_types = getattr(teacher_config, "layer_types", None) if teacher_config.model_type == "modernbert" else None
    if not teacher_types:
        every = MODERNBERT_GLOBAL_EVERY
        return ["full_attention" if index % every == 0 else "sliding_attention" for index in range(num_layers)]
    period = next(
        length
        for length in range(1, len(teacher_types) + 1)
        if all(kind == teacher_types[index % length] for index, kind in enumerate(teacher_types))
    )
    return [teacher_types[index % period] for index in range(num_layers)]


def fresh_config(family: str, teacher_config: Any, shape: StudentShape, vocab_size: int) -> Any:
    """A ``family`` config at the student's shape over the teacher's vocabulary, for a teacher of another family."""
    sizes: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "intermediate_size": shape.intermediate_size,
    }
    # The teacher's ids: remapped with the vocabulary when it is trimmed; None where the teacher has none.
    specials: dict[str, Any] = {name: getattr(teacher_config, name, None) for name in SPECIAL_ID_FIELDS}
    positions = max_positions(teacher_config)
    if family == "bert":
        specials["pad_token_id"] = specials["pad_token_id"] or 0
        return BertConfig(**sizes, **specials, max_position_embeddings=min(positions, BERT_MAX_POSITIONS))
    if family == "modernbert":
        return ModernBertConfig(
            **sizes,
            **specials,
            max_position_embeddings=positions,
            layer_types=modernbert_layer_types(teacher_config, shape.num_layers),
            local_attention=MODERNBERT_LOCAL_ATTENTION,
            classifier_pooling="mean",  # mmBERT's; reads no [CLS], which the teacher's tokenizer may not add
        )
    raise MonodistillError(f"student.family must be one of {STUDENT_FAMILIES}, got {family!r}")


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

    Every family needs a mask token (the teacher's loader already insists) and a padding token: fine-tuning
    and the fill-mask pipeline pad their batches, and both families' embeddings keep the padding row at zero.
    ``teacher-layers`` copies the teacher's own modules, so it is refused across families.
    """
    if config.family is None:
        return
    check_family_init(config, teacher_config)
    if tokenizer.pad_token is None:
        raise MonodistillError(
            f"student.family={config.family}: the teacher's tokenizer has no padding token, which the student's "
            "fine-tuning and fill-mask batches need; give the teacher a tokenizer with one"
        )
