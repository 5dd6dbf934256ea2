"""ELECTRA generators (``ElectraForMaskedLM``): BERT's layers, a factorised embedding size projected into the
stream (``embeddings_project``), and a ``generator_*`` head. The discriminator has no masked-LM head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.errors import MonodistillError
from monodistill.families.base import Family, MaskedLMHead, sliced_linear

ELECTRA_HINT = "use a generator checkpoint (ElectraForMaskedLM, e.g. google/electra-base-generator)"


class ElectraFamily(Family):
    model_types = ("electra",)
    head_prefixes = ("generator_",)
    missing_head_hint = ELECTRA_HINT

    def stream_input(self, model: PreTrainedModel) -> nn.Linear | None:
        project = getattr(getattr(model, model.base_model_prefix), "embeddings_project", None)
        return project if isinstance(project, nn.Linear) else None

    def mlm_head(self, model: Any) -> MaskedLMHead:
        # The generator's head: dense -> gelu -> LayerNorm into the embedding size, then the tied projection.
        projection = model.generator_lm_head
        return MaskedLMHead(model.generator_predictions, projection.weight, projection.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        model.generator_lm_head = sliced_linear(model.generator_lm_head, rows)

    def check_architectures(self, name: str, architectures: list[str]) -> None:
        if architectures and not any("MaskedLM" in architecture for architecture in architectures):
            # ElectraForPreTraining looks like a pre-training head, but that is the discriminator: no MLM head.
            raise MonodistillError(
                f"teacher {name} is an ELECTRA discriminator (architectures: {architectures}); "
                f"only ELECTRA generators have a masked-LM head: {ELECTRA_HINT}"
            )

    def student_config(self, teacher_config: Any, shape: Any, vocab_size: int, keep_embedding: bool) -> Any:
        config = super().student_config(teacher_config, shape, vocab_size, keep_embedding)
        if not keep_embedding:
            config.embedding_size = shape.hidden_size
        return config


FAMILY = ElectraFamily()
