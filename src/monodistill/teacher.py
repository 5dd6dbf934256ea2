"""Load the frozen multilingual masked-LM teacher, its tokenizer and its LM head.

The LM head is split into a transform (hidden -> embedding space) and an output projection, so the
distiller can apply it to masked positions only, and to a subset of vocabulary rows when the
vocabulary is trimmed. ``mlm_head`` knows the head layout of each supported family.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError

SUPPORTED_FAMILIES = ("bert", "xlm-roberta", "roberta", "camembert", "deberta-v2", "distilbert", "electra")
# RoBERTa-style families: ``lm_head`` layout, position ids counted from the padding id.
ROBERTA_FAMILIES = ("xlm-roberta", "roberta", "camembert")
# Where each family keeps its MLM head weights, as state-dict key prefixes.
HEAD_PREFIXES = ("cls.", "lm_head.", "lm_predictions.", "vocab_", "generator_")
# DeBERTa-v2's two head layouts, chosen by the config's ``legacy`` flag (transformers renames neither):
# True is ``cls.predictions.*`` (transformers' DebertaV2ForMaskedLM), False is ``lm_predictions.lm_head.*``
# (microsoft's original checkpoints, e.g. mdeberta-v3-base, whose configs leave the flag at True).
DEBERTA_HEAD_PREFIX = {True: "cls.predictions.", False: "lm_predictions.lm_head."}
ELECTRA_HINT = "use a generator checkpoint (ElectraForMaskedLM, e.g. google/electra-base-generator)"


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
    if model_config.model_type == "electra" and architectures and not any("MaskedLM" in name for name in architectures):
        # ElectraForPreTraining passes the check below, but that is the discriminator: it has no MLM head.
        raise MonodistillError(
            f"teacher {config.name_or_path} is an ELECTRA discriminator (architectures: {architectures}); "
            f"only ELECTRA generators have a masked-LM head: {ELECTRA_HINT}"
        )
    if architectures and not any("MaskedLM" in name or name.endswith("ForPreTraining") for name in architectures):
        raise MonodistillError(
            f"teacher {config.name_or_path} is not a masked language model (architectures: {architectures}); "
            "use a checkpoint saved from a *ForMaskedLM class"
        )
    model = load_masked_lm(config, model_config.model_type)
    model.eval().requires_grad_(False)
    tokenizer = load_tokenizer(config.name_or_path, config.revision)
    if len(tokenizer) > model.config.vocab_size:
        raise MonodistillError(
            f"the tokenizer of {config.name_or_path} has {len(tokenizer)} tokens but the model only "
            f"{model.config.vocab_size} embeddings: tokenizer and model do not match"
        )
    return model, tokenizer


def load_masked_lm(config: TeacherConfig, family: str) -> PreTrainedModel:
    """Load the ``*ForMaskedLM`` weights, refusing a checkpoint whose MLM head would be randomly initialised.

    A DeBERTa-v2 checkpoint whose head is stored in the other layout than its ``legacy`` flag says is
    loaded again with the flag flipped, so both layouts come with their trained head.
    """
    # The first DeBERTa-v2 try may report the whole head missing only because of the flag: keep it quiet.
    model, info = _from_pretrained(config, quiet=family == "deberta-v2")
    if family == "deberta-v2":
        legacy = bool(model.config.legacy)
        stored_other = any(key.startswith(DEBERTA_HEAD_PREFIX[not legacy]) for key in info["unexpected_keys"])
        if stored_other and untrained_head_keys(model, info["missing_keys"]):
            del model
            model, info = _from_pretrained(config, legacy=not legacy)
    # A checkpoint without MLM head weights loads "fine" with a random head: silently wrong targets.
    missing_head = untrained_head_keys(model, info["missing_keys"])
    if missing_head:
        raise MonodistillError(
            f"teacher {config.name_or_path} has no trained masked-LM head (missing {missing_head[:3]}): "
            + (ELECTRA_HINT if family == "electra" else "it is not a masked language model checkpoint")
        )
    return model


def _from_pretrained(config: TeacherConfig, quiet: bool = False, **overrides: Any) -> tuple[PreTrainedModel, Any]:
    verbosity = transformers_logging.get_verbosity()
    if quiet:
        transformers_logging.set_verbosity_error()
    try:
        return AutoModelForMaskedLM.from_pretrained(
            config.name_or_path,
            revision=config.revision,
            dtype=resolve_dtype(config.dtype),
            output_loading_info=True,
            **overrides,
        )
    except (OSError, ValueError) as error:
        raise MonodistillError(f"could not load teacher weights from {config.name_or_path}: {error}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)


def untrained_head_keys(model: PreTrainedModel, missing_keys: Iterable[str]) -> list[str]:
    """The MLM head weights a checkpoint did not hold, except a projection tied to the word embeddings."""
    word_embeddings = model.get_input_embeddings().weight
    parameters = dict(model.named_parameters(remove_duplicate=False))
    return sorted(
        key for key in missing_keys if key.startswith(HEAD_PREFIXES) and parameters.get(key) is not word_embeddings
    )


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
    if family == "bert" or (family == "deberta-v2" and getattr(model, "legacy", True)):
        predictions = model.cls.predictions
        return MaskedLMHead(predictions.transform, predictions.decoder.weight, predictions.bias)
    if family in ROBERTA_FAMILIES:
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
    if family == "electra":
        # The generator's head: dense -> gelu -> LayerNorm into the embedding size, then the tied projection.
        projection = model.generator_lm_head
        return MaskedLMHead(model.generator_predictions, projection.weight, projection.bias)
    raise MonodistillError(f"no masked-LM head layout known for model type {family!r}")


def encoder(model: PreTrainedModel) -> nn.Module:
    """The model without its LM head (returns hidden states)."""
    return getattr(model, model.base_model_prefix)


def max_positions(model_config: Any) -> int:
    """The longest input the model's position embeddings allow."""
    positions = int(getattr(model_config, "max_position_embeddings", 512))
    if model_config.model_type in ROBERTA_FAMILIES:
        # RoBERTa-style position ids start after the padding index.
        positions -= int(model_config.pad_token_id) + 1
    return positions


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, embedding and non-embedding parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    embedding_count = sum(parameter.numel() for parameter in embeddings.parameters())
    return {"total": total, "embedding": embedding_count, "non_embedding": total - embedding_count}
