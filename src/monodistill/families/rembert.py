"""RemBERT (Chung et al. 2021; Google's, 110 languages): BERT's layers with decoupled input and output embeddings.

Its word embeddings are narrow (``input_embedding_size``, 256) and mapped into the stream by
``encoder.embedding_hidden_mapping_in``; its masked-LM head maps the stream into a wide, untied output embedding
(``output_embedding_size``, 1664) before the decoder. A student keeps both sizes as the teacher has them, so
``teacher-embeddings`` copies the input embeddings unchanged and ``teacher-layers`` copies the head whole; a
narrower student reduces the mapping into the stream and the head's first map (the head's LayerNorm and decoder
live in the output embedding's coordinates, which narrowing leaves alone).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.families.base import Family, MaskedLMHead, sliced_linear


class RemBertFamily(Family):
    model_types = ("rembert",)

    def stream_input(self, model: PreTrainedModel) -> nn.Linear | None:
        return getattr(model, model.base_model_prefix).encoder.embedding_hidden_mapping_in

    def mlm_head(self, model: Any) -> MaskedLMHead:
        head = model.cls.predictions

        def rembert_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.LayerNorm(head.activation(head.dense(hidden)))

        return MaskedLMHead(rembert_transform, head.decoder.weight, head.decoder.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        head = model.cls.predictions
        head.decoder = sliced_linear(head.decoder, rows)  # its own bias, untied from the input embeddings


FAMILY = RemBertFamily()
