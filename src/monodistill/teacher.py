"""Load the frozen multilingual masked-LM teacher, its tokenizer and its LM head.

The LM head is split into a transform (hidden -> embedding space) and an output projection, so the
distiller can apply it to masked positions only, and to a subset of vocabulary rows when the
vocabulary is trimmed. ``mlm_head`` knows the head layout of each supported family.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError

SUPPORTED_FAMILIES = ("bert", "xlm-roberta", "roberta", "deberta-v2", "distilbert")


def is_local_reference(name_or_path: str) -> bool:
    """Whether a model/corpus reference is meant as a local path rather than a Hub id."""
    if os.path.exists(name_or_path):
        return True
    # A Hub id is "name" or "owner/name"; anything path-like (./x, ../x, /x, a/b/c, ~) is local.
    return name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1


def hub_error(kind: str, name: str, error: Exception) -> MonodistillError:
    """A clear error for a reference that is neither a local path nor a reachable Hub repository."""
    if is_local_reference(name):
        return MonodistillError(f"{kind} path {name} does not exist")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = "Hub access is disabled (HF_HUB_OFFLINE is set)" if offline else first_line
    return MonodistillError(
        f"could not load {kind} {name!r} from the Hugging Face Hub: {reason}. "
        f"If this machine is offline, download it where there is a network "
        f"(`hf download {name} --local-dir DIR`, or `--repo-type dataset` for data), copy DIR here "
        f"and pass that folder instead."
    )


def load_model_config(name_or_path: str, revision: str | None = None, kind: str = "teacher") -> Any:
    """Load a model's config, turning missing paths and unreachable Hub ids into clear errors."""
    try:
        return AutoConfig.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as error:
        if os.path.isdir(name_or_path):
            raise MonodistillError(f"{kind} folder {name_or_path} holds no usable config.json: {error}") from None
        raise hub_error(kind, name_or_path, error) from None


def load_tokenizer(name_or_path: str, revision: str | None = None, kind: str = "teacher") -> PreTrainedTokenizerBase:
    """Load a fast tokenizer, with a clear error when there is none."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError, TypeError) as error:
        if os.path.isdir(name_or_path):
            raise MonodistillError(f"{kind} folder {name_or_path} holds no usable tokenizer: {error}") from None
        raise hub_error(f"{kind} tokenizer", name_or_path, error) from None
    if kind == "teacher" and tokenizer.mask_token is None:
        raise MonodistillError(f"the tokenizer of {kind} {name_or_path} has no mask token: it is not for masked LM")
    return tokenizer


def resolve_dtype(name: str) -> torch.dtype:
    """The teacher dtype for a config value; ``auto`` picks half precision only where it is fast."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_teacher(config: TeacherConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the teacher frozen and in eval mode, with its tokenizer.

    Raises:
        MonodistillError: for a missing path, an unreachable Hub id, a checkpoint that is not a
            masked LM (including a bare encoder whose MLM head would be randomly initialised), or a
            tokenizer that does not fit the model.
    """
    model_config = load_model_config(config.name_or_path, config.revision)
    if model_config.model_type not in SUPPORTED_FAMILIES:
        raise MonodistillError(
            f"teacher {config.name_or_path} is a {model_config.model_type!r} model; "
            f"monodistill distils masked-LM families {SUPPORTED_FAMILIES}"
        )
    architectures = getattr(model_config, "architectures", None) or []
    if architectures and not any("MaskedLM" in name or name.endswith("ForPreTraining") for name in architectures):
        raise MonodistillError(
            f"teacher {config.name_or_path} is not a masked language model (architectures: {architectures}); "
            "use a checkpoint saved from a *ForMaskedLM class"
        )
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            config.name_or_path,
            revision=config.revision,
            dtype=resolve_dtype(config.dtype),
            output_loading_info=True,
        )
    except (OSError, ValueError) as error:
        raise MonodistillError(f"could not load teacher weights from {config.name_or_path}: {error}") from None
    # A checkpoint without MLM head weights loads "fine" with a random head: silently wrong targets.
    missing_head = [key for key in info["missing_keys"] if _is_head_key(key)]
    if missing_head:
        raise MonodistillError(
            f"teacher {config.name_or_path} has no trained masked-LM head (missing {missing_head[:3]}): "
            "it is not a masked language model checkpoint"
        )
    model.eval().requires_grad_(False)
    tokenizer = load_tokenizer(config.name_or_path, config.revision)
    if len(tokenizer) > model.config.vocab_size:
        raise MonodistillError(
            f"the tokenizer of {config.name_or_path} has {len(tokenizer)} tokens but the model only "
            f"{model.config.vocab_size} embeddings: tokenizer and model do not match"
        )
    return model, tokenizer


def _is_head_key(key: str) -> bool:
    return key.startswith(("cls.", "lm_head.", "lm_predictions.", "vocab_")) and "decoder.weight" not in key


@dataclass
class MaskedLMHead:
    """A masked-LM head split into its transform and its output projection.

    ``logits(hidden)`` equals the model's own head on those positions; passing ``rows`` restricts
    the projection to a subset of the vocabulary without building the full logits.
    """

    transform: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor | None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden states at the positions to score -> (N, V) logits."""
        return F.linear(self.transform(hidden), self.weight, self.bias)

    def restricted(self, rows: torch.Tensor) -> MaskedLMHead:
        """A copy projecting only onto ``rows`` (vocabulary ids), sliced once, not per step."""
        bias = self.bias[rows].contiguous() if self.bias is not None else None
        return MaskedLMHead(self.transform, self.weight[rows].contiguous(), bias)


def mlm_head(masked_lm: PreTrainedModel) -> MaskedLMHead:
    """Split a ``*ForMaskedLM`` model's head; the parameters stay shared (and trainable) with the model."""
    model: Any = masked_lm  # head modules differ per family; attributes are looked up per layout
    family = model.config.model_type
    if family in ("bert",) or (family == "deberta-v2" and getattr(model, "legacy", True)):
        predictions = model.cls.predictions
        return MaskedLMHead(predictions.transform, predictions.decoder.weight, predictions.bias)
    if family in ("xlm-roberta", "roberta"):
        head = model.lm_head

        def roberta_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.layer_norm(F.gelu(head.dense(hidden)))

        return MaskedLMHead(roberta_transform, head.decoder.weight, head.bias)
    if family == "deberta-v2":
        head = model.lm_predictions.lm_head

        def deberta_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.LayerNorm(head.transform_act_fn(head.dense(hidden)))

        return MaskedLMHead(deberta_transform, model.deberta.embeddings.word_embeddings.weight, head.bias)
    if family == "distilbert":

        def distilbert_transform(hidden: torch.Tensor) -> torch.Tensor:
            return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))

        return MaskedLMHead(distilbert_transform, model.vocab_projector.weight, model.vocab_projector.bias)
    raise MonodistillError(f"no masked-LM head layout known for model type {family!r}")


def encoder(model: PreTrainedModel) -> nn.Module:
    """The model without its LM head (returns hidden states)."""
    return getattr(model, model.base_model_prefix)


def max_positions(model_config: Any) -> int:
    """The longest input the model's position embeddings allow."""
    positions = int(getattr(model_config, "max_position_embeddings", 512))
    if model_config.model_type in ("xlm-roberta", "roberta"):
        # RoBERTa-style position ids start after the padding index.
        positions -= int(model_config.pad_token_id) + 1
    return positions


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, embedding and non-embedding parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    embedding_count = sum(parameter.numel() for parameter in embeddings.parameters())
    return {"total": total, "embedding": embedding_count, "non_embedding": total - embedding_count}
