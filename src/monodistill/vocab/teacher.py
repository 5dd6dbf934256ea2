"""The teacher restricted to kept ids: input embeddings, output projection and bias sliced, and saved.

Every other weight is kept, so on inputs mapped through the id map the trimmed teacher's logits
equal the full teacher's at the kept columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.teacher import ROBERTA_FAMILIES, load_teacher, mlm_head

# Config fields holding token ids; remapped so that the exported teacher's config stays truthful.
CONFIG_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def trim_teacher(model: PreTrainedModel, kept_ids: list[int]) -> PreTrainedModel:
    """Restrict a masked LM to ``kept_ids``, in place: input embeddings, output projection and bias.

    On inputs mapped through the id map, the trimmed model's logits equal the full model's logits
    at the kept columns: every other weight is untouched, and each layout's head (BERT and legacy
    DeBERTa-v2 ``cls.predictions``, RoBERTa/XLM-R ``lm_head``, DeBERTa-v2 ``lm_predictions`` whose
    projection is the word embeddings, DistilBERT ``vocab_projector``, ModernBERT ``decoder``, tied
    or not) is sliced to the same rows.

    Raises:
        MonodistillError: for an unknown head layout, or a RoBERTa-style model whose padding id would
            move (its position ids are counted from the padding id).
    """
    mlm_head(model)  # raises for a layout we do not know
    config: Any = model.config
    rows = torch.tensor(kept_ids, dtype=torch.long)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    if config.model_type in ROBERTA_FAMILIES and new_id.get(config.pad_token_id) != config.pad_token_id:
        raise MonodistillError(
            f"{config.model_type} counts position ids from its padding id {config.pad_token_id}; "
            "the kept ids must keep every id up to it so that it does not move"
        )
    old_input = model.get_input_embeddings()
    assert isinstance(old_input, nn.Embedding)
    new_pad = new_id.get(config.pad_token_id) if config.pad_token_id is not None else None
    new_input = nn.Embedding(len(kept_ids), old_input.embedding_dim, padding_idx=new_pad)
    new_input.to(device=old_input.weight.device, dtype=old_input.weight.dtype)
    with torch.no_grad():
        new_input.weight.copy_(old_input.weight[rows])  # (V_kept, H)
    _trim_head(model, rows)
    model.set_input_embeddings(new_input)
    config.vocab_size = len(kept_ids)
    remap_special_ids(config, kept_ids)
    # Re-share the projection with the embeddings where the config ties them (sliced identically).
    model.tie_weights()
    return model


def _trim_head(masked_lm: PreTrainedModel, rows: torch.Tensor) -> None:
    model: Any = masked_lm  # head modules differ per family, as in monodistill.teacher.mlm_head
    family = model.config.model_type
    if family == "bert" or (family == "deberta-v2" and getattr(model, "legacy", True)):
        _trim_linear_head(model.cls.predictions, rows)
    elif family in ROBERTA_FAMILIES:
        _trim_linear_head(model.lm_head, rows)
    elif family == "deberta-v2":
        # The projection is the word embeddings themselves; only the bias lives in the head.
        head = model.lm_predictions.lm_head
        head.bias = nn.Parameter(head.bias.detach()[rows].clone())
    elif family == "distilbert":
        model.vocab_projector = _sliced_linear(model.vocab_projector, rows)
    elif family == "electra":
        model.generator_lm_head = _sliced_linear(model.generator_lm_head, rows)
    elif family == "modernbert":
        model.decoder = _sliced_linear(model.decoder, rows)  # re-tied below when the config ties it
    else:
        # Left alone, tie_weights() would cut the bias to its first rows: wrong logits, no error.
        raise MonodistillError(f"no trimmed-teacher export for model type {family!r}")


def _trim_linear_head(head: Any, rows: torch.Tensor) -> None:
    """A head with a ``decoder`` Linear and a ``bias`` parameter that the decoder shares."""
    head.decoder = _sliced_linear(head.decoder, rows, bias=head.bias)
    head.bias = head.decoder.bias


def _sliced_linear(linear: nn.Linear, rows: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    bias = linear.bias if bias is None else bias
    sliced = nn.Linear(linear.in_features, len(rows), bias=bias is not None)
    sliced.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        sliced.weight.copy_(linear.weight[rows])  # (V_kept, H)
        if bias is not None:
            sliced.bias.copy_(bias[rows])
    return sliced


def remap_special_ids(model_config: Any, kept_ids: Sequence[int]) -> None:
    """Rewrite a model config's token ids (pad, bos, eos, sep, cls) from teacher to student ids.

    An id whose token was dropped becomes ``None``: a stale teacher id could point past the
    student's embedding matrix.
    """
    new_id = {old: new for new, old in enumerate(kept_ids)}
    for name in CONFIG_TOKEN_FIELDS:
        old = getattr(model_config, name, None)
        if isinstance(old, int):
            setattr(model_config, name, new_id.get(old))


def save_trimmed_teacher(
    teacher: TeacherConfig, kept_ids: list[int], tokenizer: PreTrainedTokenizerBase, folder: Path
) -> None:
    """Load the teacher, keep only ``kept_ids`` and save it with the trimmed tokenizer into ``folder``.

    This is the "Load What You Need" baseline (Abdaoui et al., 2020): the multilingual teacher
    restricted to the target language's tokens, which separates the gain of trimming from the gain
    of distillation in evaluations.
    """
    # Loaded in float32 whatever the distillation's runtime dtype: this model is fine-tuned later.
    model, _ = load_teacher(replace(teacher, dtype="float32"))
    trim_teacher(model, kept_ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def id_map_tensor(id_map: Sequence[int]) -> torch.Tensor:
    """The id map as a (V_student,) LongTensor of teacher ids, for indexing teacher rows."""
    return torch.tensor(list(id_map), dtype=torch.long)
