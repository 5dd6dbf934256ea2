"""DeBERTa-v2/v3 (mDeBERTa-v3): BERT's layers with ``*_proj`` projections and disentangled relative attention, and
two head layouts chosen by the config's ``legacy`` flag, which transformers renames neither of: True is
``cls.predictions.*`` (transformers' DebertaV2ForMaskedLM), False is ``lm_predictions.lm_head.*`` (microsoft's
original checkpoints, e.g. mdeberta-v3-base, whose configs leave the flag at True). A checkpoint stored in the other
layout than its flag says is loaded again with the flag flipped, so both come with their trained head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monodistill.families.base import Family, MaskedLMHead, trim_prediction_head

HEAD_PREFIX = {True: "cls.predictions.", False: "lm_predictions.lm_head."}
"""The head's state-dict prefix under each value of ``legacy``."""


def _legacy(model: Any) -> bool:
    return bool(getattr(model, "legacy", True))


class DebertaV2Family(Family):
    model_types = ("deberta-v2",)
    projection_names = ("query_proj", "key_proj", "value_proj")
    softmax_attention = False  # relative-position terms join the query-key scores
    layer_roles = None
    narrow_refusal = "its relative-position projections"
    head_prefixes = ("cls.", "lm_predictions.")
    quiet_first_load = True  # the first try may report the whole head missing only because of the flag

    def mlm_head(self, model: Any) -> MaskedLMHead:
        if _legacy(model):
            return super().mlm_head(model)
        head = model.lm_predictions.lm_head

        def deberta_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.LayerNorm(head.transform_act_fn(head.dense(hidden)))

        # The projection is the word embeddings themselves; only the bias lives in the head.
        return MaskedLMHead(deberta_transform, model.deberta.embeddings.word_embeddings.weight, head.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        if _legacy(model):
            trim_prediction_head(model.cls.predictions, rows)
            return
        head = model.lm_predictions.lm_head
        head.bias = nn.Parameter(head.bias.detach()[rows].clone())

    def reload_overrides(self, model: Any, unexpected_keys: list[str], untrained: list[str]) -> dict[str, Any]:
        legacy = bool(model.config.legacy)
        stored_other = any(key.startswith(HEAD_PREFIX[not legacy]) for key in unexpected_keys)
        return {"legacy": not legacy} if stored_other and untrained else {}

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        config = super().student_config(teacher_config, shape, vocab_size, keep_embedding)
        config.pooler_hidden_size = shape.hidden_size
        return config


FAMILY = DebertaV2Family()
