"""Write the teacher with only the kept vocabulary rows: the "Load What You Need" baseline.

Abdaoui et al. (2020) showed that a multilingual model restricted to one language's tokens keeps its
accuracy on that language. Exporting it gives the evaluation a baseline that separates the gain of
trimming from the gain of distillation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig
from monodistill.teacher import load_teacher, mlm_head


def trim_model_vocabulary(model: Any, kept_ids: Sequence[int]) -> None:
    """Restrict a ``*ForMaskedLM`` model's input embeddings and LM head to ``kept_ids``, in place."""
    from monodistill.vocab import remap_special_ids

    rows = torch.tensor(list(kept_ids), dtype=torch.long)
    old_embeddings = model.get_input_embeddings()
    embeddings = nn.Embedding(len(rows), old_embeddings.embedding_dim, dtype=old_embeddings.weight.dtype)
    embeddings.weight.data = old_embeddings.weight.data[rows].clone()
    head = mlm_head(model)
    bias = nn.Parameter(head.bias.data[rows].clone()) if head.bias is not None else None
    untied_weight = head.weight.data[rows].clone()
    model.set_input_embeddings(embeddings)
    family = model.config.model_type
    if family == "deberta-v2" and not getattr(model, "legacy", True):
        model.lm_predictions.lm_head.bias = bias  # the projection is the word embeddings themselves
    else:
        decoder = nn.Linear(untied_weight.shape[1], len(rows), dtype=untied_weight.dtype)
        decoder.weight.data = untied_weight
        decoder.bias = bias  # type: ignore[assignment]
        if family == "distilbert":
            model.vocab_projector = decoder
        elif family in ("xlm-roberta", "roberta"):
            model.lm_head.decoder = decoder
            model.lm_head.bias = bias
        else:
            model.cls.predictions.decoder = decoder
            model.cls.predictions.bias = bias
    model.config.vocab_size = len(rows)
    remap_special_ids(model.config, kept_ids)
    if getattr(model.config, "tie_word_embeddings", True):
        model.tie_weights()


def export_trimmed_teacher(
    config: DistillConfig, kept_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase, output_dir: Path
) -> Path:
    """Load the teacher, keep only ``kept_ids``, and save it with the trimmed tokenizer."""
    model, _ = load_teacher(config.teacher)
    trim_model_vocabulary(model, kept_ids)
    with ckpt.atomic_dir(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return output_dir
