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
from monodistill.families import family_of
from monodistill.teacher import load_teacher

# Config fields holding token ids; remapped so that the exported teacher's config stays truthful.
CONFIG_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def trim_teacher(model: PreTrainedModel, kept_ids: list[int]) -> PreTrainedModel:
    """Restrict a masked LM to ``kept_ids``, in place: input embeddings, output projection and bias.

    On inputs mapped through the id map, the trimmed model's logits equal the full model's logits
    at the kept columns: every other weight is untouched, and the head (its family's layout:
    ``Family.trim_head``, tied to the word embeddings or not) is sliced to the same rows.

    Raises:
        MonodistillError: for a family without an adapter, or kept ids the family refuses (a RoBERTa-style
            model's padding id must not move: its position ids are counted from it).
    """
    family = family_of(model)
    config: Any = model.config
    family.check_trim(config, kept_ids)
    rows = torch.tensor(kept_ids, dtype=torch.long)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, nn.Embedding)
    # Left to tie_weights(), an untouched head would be cut to its first rows: wrong logits, no error.
    family.trim_head(model, rows)
    # Sliced in place, so that the module keeps its class and buffers (Gemma's scale their output by sqrt(H)).
    embeddings.weight = nn.Parameter(embeddings.weight.detach()[rows].clone())  # (V_kept, H)
    embeddings.num_embeddings = len(kept_ids)
    embeddings.padding_idx = new_id.get(config.pad_token_id) if config.pad_token_id is not None else None
    config.vocab_size = len(kept_ids)
    remap_special_ids(config, kept_ids)
    if getattr(model, "generation_config", None) is not None:  # a decoder's, saved beside it as the teacher's was
        remap_special_ids(model.generation_config, kept_ids)
    # Re-share the projection with the embeddings where the config ties them (sliced identically).
    model.tie_weights()
    return model


def remap_special_ids(model_config: Any, kept_ids: Sequence[int]) -> None:
    """Rewrite a model config's (or a generation config's) token ids (pad, bos, eos, sep, cls) from teacher to
    student ids.

    An id whose token was dropped becomes ``None``: a stale teacher id could point past the student's
    embedding matrix, or name another token there. A list of ids (Gemma-3's, Qwen2.5's and Llama-3's
    ``eos_token_id: [1, 106]``: generation stops at any of them) keeps the ids whose tokens were kept, in
    its order, and stays a list; one with none kept becomes ``None``.
    """
    new_id = {old: new for new, old in enumerate(kept_ids)}
    for name in CONFIG_TOKEN_FIELDS:
        old = getattr(model_config, name, None)
        if isinstance(old, int):
            setattr(model_config, name, new_id.get(old))
        elif isinstance(old, list):
            kept = [new_id[token] for token in old if token in new_id]
            setattr(model_config, name, kept or None)


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
