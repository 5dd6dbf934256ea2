"""RoBERTa, XLM-R and CamemBERT: BERT's layers, an ``lm_head`` head, position ids counted from the padding id."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from monodistill.errors import MonodistillError
from monodistill.families.base import Family, MaskedLMHead, trim_prediction_head


class RobertaFamily(Family):
    model_types = ("xlm-roberta", "roberta", "camembert")
    head_prefixes = ("lm_head.",)

    def max_positions(self, model_config: Any) -> int:
        # Position ids start after the padding index.
        return super().max_positions(model_config) - int(model_config.pad_token_id) - 1

    def head_activation(self, model_config: Any) -> str:
        return "gelu"  # the head calls GELU directly, whatever hidden_act says

    def mlm_head(self, model: Any) -> MaskedLMHead:
        head = model.lm_head

        def roberta_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.layer_norm(F.gelu(head.dense(hidden)))

        return MaskedLMHead(roberta_transform, head.decoder.weight, head.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        trim_prediction_head(model.lm_head, rows)

    def check_trim(self, model_config: Any, kept_ids: list[int]) -> None:
        pad = model_config.pad_token_id
        if pad not in kept_ids or kept_ids.index(pad) != pad:
            raise MonodistillError(
                f"{model_config.model_type} counts position ids from its padding id {pad}; "
                "the kept ids must keep every id up to it so that it does not move"
            )


FAMILY = RobertaFamily()
