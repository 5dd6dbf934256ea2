"""BERT (mBERT, and the layout most encoders copy): ``encoder.layer``, a ``cls.predictions`` head.

BERT is also the family of a student built fresh for another family's teacher (``student.family=bert``):
BERT's defaults, learned absolute positions, at most ``BERT_MAX_POSITIONS`` of them.
"""

from __future__ import annotations

from typing import Any

from transformers import BertConfig

from monodistill.families.base import Family, shape_fields

BERT_MAX_POSITIONS = 512
"""Position embeddings of a BERT student of another family's teacher (BERT's own; ModernBERT teachers allow 8192)."""


class BertFamily(Family):
    model_types = ("bert",)
    builds_fresh = True

    def fresh_config(
        self, teacher_config: Any, shape: Any, vocab_size: int, specials: dict[str, Any], positions: int
    ) -> Any:
        return BertConfig(
            **shape_fields(shape, vocab_size),
            **{**specials, "pad_token_id": specials["pad_token_id"] or 0},
            max_position_embeddings=min(positions, BERT_MAX_POSITIONS),
        )


FAMILY = BertFamily()
