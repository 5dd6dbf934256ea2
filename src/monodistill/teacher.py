"""Load the frozen multilingual teacher (a masked LM, or a causal LM), its tokenizer and its LM head.

The LM head is split into a transform (hidden -> embedding space) and an output projection, so the
distiller can apply it to the positions it scores only (masked ones, or every next token), and to a
subset of vocabulary rows when the vocabulary is trimmed. Each family's adapter (``monodistill.families``)
knows its head's layout, and whether the family is masked or causal (``Family.objective``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import FULL_TOKENIZER_FILE, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.families import REGISTRY, Family, MaskedLMHead, family_of, supported_families
from monodistill.weights import shape_mismatch_error

EMBEDDING_PADDING_ROWS = 1024
"""Embedding rows a model may hold beyond its tokenizer: ``vocab_size`` rounded up for fast matmuls
(DeBERTa-v3: 128,001 tokens in 128,100 rows; mDeBERTa-v3: 250,102 in 251,000; ModernBERT: 50,280 in
50,368). A tokenizer smaller by more is another model's, or a trimmed one."""
MLM_HEAD_TRAINED = "mlm_head_trained"
"""A saved student's config.json field, false when its loss never trained its masked-LM head (no logit or MLM
term): the head is saved (every student loads alike) but its predictions mean nothing."""
TRIMMED_VOCAB_MARKER = "id_map.json"
"""The file of a trimmed vocabulary folder (``vocab.folder.ID_MAP_FILE``): its tokenizer indexes a sliced model."""
HUB_FILES = ("config.json", "tokenizer_config.json")
"""Files one of which a Hub model repository in the local cache holds."""
LOAD_REPORT_LOGGER = "transformers.modeling_utils"
"""Where transformers logs its table of missing, unexpected and mismatched weights, as one record."""


def is_local_reference(name_or_path: str) -> bool:
    """Whether a model/corpus reference is meant as a local path rather than a Hub id."""
    if os.path.exists(name_or_path):
        return True
    # A Hub id is "name" or "owner/name"; anything path-like (./x, ../x, /x, a/b/c, ~) is local.
    return name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1


def hub_error(kind: str, name: str, error: Exception | str) -> MonodistillError:
    """A clear error for a reference that is neither a local path nor a reachable Hub repository.

    ``error`` is the library's exception (its first line is the reason) or the reason itself.
    """
    if is_local_reference(name):
        return MonodistillError(f"{kind} path {name} does not exist")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = error if isinstance(error, str) else _first_line(error)
    if offline and not isinstance(error, str):
        reason = "Hub access is disabled (HF_HUB_OFFLINE is set)"
    return MonodistillError(
        f"could not load {kind} {name!r} from the Hugging Face Hub: {reason.rstrip('. ')}. "
        f"If this machine is offline, download it where there is a network "
        f"(`hf download {name} --local-dir DIR`, or `--repo-type dataset` for data), copy DIR here "
        f"and pass that folder instead."
    )


HUB_CHECK_TIMEOUT = 5.0
"""Seconds the one check of the Hub waits for an answer; an unreachable Hub then ends a command at once."""


@functools.cache
def hub_connection_error() -> str | None:
    """Why the Hugging Face Hub cannot be reached, or None when it answers (or Hub access is off).

    One request with a short timeout and no retry, once per process, before the first download:
    otherwise an unreachable Hub costs each file huggingface_hub's backoff (five retries, 23 s, a
    ``Retrying in 8s`` line each) before the error. Any HTTP answer, even an error status, counts as reachable.
    """
    if huggingface_hub.constants.is_offline_mode():
        return None  # nothing goes out: the libraries read their cache, and fail at once without it
    try:
        session = huggingface_hub.utils.get_session()
        session.head(huggingface_hub.constants.ENDPOINT, timeout=HUB_CHECK_TIMEOUT, follow_redirects=False)
    except Exception as error:  # connection refused, unknown host, timeout, proxy: whatever the HTTP client raises
        return _first_line(error)
    return None


def hub_files_only(kind: str, name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """The loading arguments for a model reference: ``local_files_only`` for a Hub id while the Hub cannot be reached.

    Raises:
        MonodistillError: at once, for a Hub id that the Hub cannot serve and the local cache does not hold.
    """
    if is_local_reference(name_or_path):
        return {}
    reason = hub_connection_error()
    if reason is None:
        return {}
    cached = (huggingface_hub.try_to_load_from_cache(name_or_path, name, revision=revision) for name in HUB_FILES)
    if any(isinstance(path, str) for path in cached):
        return {"local_files_only": True}
    raise hub_error(kind, name_or_path, f"it cannot be reached ({reason}), and the local cache does not hold it")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_model_config(name_or_path: str, revision: str | None = None, kind: str = "teacher") -> Any:
    """Load a model's config, turning missing paths and unreachable Hub ids into clear errors."""
    hub = hub_files_only(kind, name_or_path, revision)
    try:
        return AutoConfig.from_pretrained(name_or_path, revision=revision, **hub)
    except (OSError, ValueError) as error:
        if os.path.isdir(name_or_path):
            raise MonodistillError(f"{kind} folder {name_or_path} holds no usable config.json: {error}") from None
        raise hub_error(kind, name_or_path, error) from None


def load_tokenizer(
    name_or_path: str, revision: str | None = None, kind: str = "teacher", model_config: Any | None = None
) -> PreTrainedTokenizerBase:
    """Load the model's own tokenizer and check that it fits the model's embeddings.

    Every loader of a teacher or an evaluated model goes through here. ``model_config`` is read from
    ``name_or_path`` when not given; a local folder without ``config.json`` holds a tokenizer only
    (``monodistill vocab`` may count with one), and is checked for its files alone.

    Raises:
        MonodistillError: for no tokenizer, a local folder without tokenizer files (transformers would
            give it a stand-in of a few tokens), a masked-LM teacher's tokenizer without a mask token, or a
            tokenizer whose size does not fit the embedding (``check_tokenizer_fits``).
    """
    hub = hub_files_only(f"{kind} tokenizer", name_or_path, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, **hub)
    except (OSError, ValueError, TypeError) as error:
        if os.path.isdir(name_or_path):
            raise MonodistillError(f"{kind} folder {name_or_path} holds no usable tokenizer: {error}") from None
        raise hub_error(f"{kind} tokenizer", name_or_path, error) from None
    except Exception as error:  # the tokenizers library's own: a tokenizer.json it cannot parse
        raise MonodistillError(f"the tokenizer of {kind} {name_or_path} is damaged: {_first_line(error)}") from None
    if os.path.isdir(name_or_path):
        check_tokenizer_files(Path(name_or_path), tokenizer, kind)
    tokenizer_only = os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "config.json"))
    if model_config is None and not tokenizer_only:
        model_config = load_model_config(name_or_path, revision, kind)
    # A decoder's tokenizer has no mask token; a tokenizer alone is checked with its model, by load_teacher.
    masked = model_config is not None and family_of(model_config, required=False).objective == "masked"
    if kind == "teacher" and masked and tokenizer.mask_token is None:
        raise MonodistillError(f"the tokenizer of {kind} {name_or_path} has no mask token: it is not for masked LM")
    if model_config is not None:
        check_tokenizer_fits(tokenizer, model_config, name_or_path, kind)
    return tokenizer


def check_tokenizer_files(folder: Path, tokenizer: PreTrainedTokenizerBase, kind: str = "teacher") -> None:
    """Refuse a folder that holds none of the files its tokenizer class reads its vocabulary from.

    transformers builds such a folder's tokenizer from defaults (a BERT tokenizer of 5 tokens), so every
    word would become ``[UNK]``: blocks of nothing, scores of nothing, a corpus wrongly called UNK-dominated.
    """
    names = sorted({FULL_TOKENIZER_FILE, *type(tokenizer).vocab_files_names.values()})
    if not any((folder / name).is_file() for name in names):
        raise MonodistillError(
            f"{kind} folder {folder} holds no tokenizer files ({', '.join(names)}), so transformers would make up "
            f"a {len(tokenizer)}-token one; copy the tokenizer the model was trained with into it"
        )


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, model_config: Any, name_or_path: str, kind: str) -> None:
    """Refuse a tokenizer larger than the model's embedding, or smaller by more than ``EMBEDDING_PADDING_ROWS``.

    A much smaller tokenizer is accepted in a trimmed vocabulary folder (one with ``id_map.json``).
    """
    rows = getattr(model_config, "vocab_size", None)
    if rows is None:
        return
    tokens = len(tokenizer)
    if tokens > rows:
        raise MonodistillError(
            f"the tokenizer of {kind} {name_or_path} has {tokens} tokens but the model only {rows} embeddings: "
            "tokenizer and model do not match; copy the tokenizer the model was trained with into it"
        )
    trimmed_folder = os.path.isdir(name_or_path) and os.path.isfile(os.path.join(name_or_path, TRIMMED_VOCAB_MARKER))
    if rows - tokens > EMBEDDING_PADDING_ROWS and not trimmed_folder:
        raise MonodistillError(
            f"the tokenizer of {kind} {name_or_path} has {tokens} tokens but the model {rows} embedding rows, "
            f"more than the {EMBEDDING_PADDING_ROWS} of padding models round up to: tokenizer and model do not match. "
            "Copy the tokenizer the model was trained with into it; a trimmed tokenizer belongs with its "
            f"{TRIMMED_VOCAB_MARKER} as vocab.path, not as the {kind}"
        )


def resolve_dtype(name: str) -> torch.dtype:
    """The teacher dtype for a config value; ``auto`` picks half precision only where it is fast."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_teacher(config: TeacherConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the teacher frozen and in eval mode, in ``config.dtype``, with its tokenizer.

    A masked family loads as ``*ForMaskedLM``, a causal one as ``*ForCausalLM`` (``Family.model_class``).

    Raises:
        MonodistillError: for a missing path, an unreachable Hub id, a family no adapter serves, a
            checkpoint without its family's LM head (a bare encoder or decoder, whose head would be
            randomly initialised), or a tokenizer that does not fit the model.
    """
    model_config = load_model_config(config.name_or_path, config.revision)
    if model_config.model_type not in REGISTRY:
        raise MonodistillError(
            f"teacher {config.name_or_path} is a {model_config.model_type!r} model; monodistill distils "
            f"masked-LM families {supported_families('masked')} and causal-LM families {supported_families('causal')}"
        )
    family = family_of(model_config)
    # A checkpoint saved from a class without the family's LM head (BertModel, LlamaModel): refused by its label.
    family.check_architectures(config.name_or_path, getattr(model_config, "architectures", None) or [])
    if getattr(model_config, MLM_HEAD_TRAINED, True) is False:
        raise MonodistillError(
            f"teacher {config.name_or_path}'s masked-LM head was never trained (config.json: {MLM_HEAD_TRAINED}: "
            "false; its loss had no logit or MLM term), so its logits mean nothing; distil from its own teacher"
        )
    # Checked against config.json before the weights are read; load_weights holds the weights to config.json.
    tokenizer = load_tokenizer(config.name_or_path, config.revision, model_config=model_config)
    model = load_language_model(config, family)
    model.eval().requires_grad_(False)
    return model, tokenizer


def load_language_model(config: TeacherConfig, family: Family) -> PreTrainedModel:
    """Load the weights with the family's LM head, refusing a checkpoint whose head would be randomly initialised.

    A checkpoint whose head is stored in another layout than its config says (``Family.reload_overrides``:
    DeBERTa-v2's ``legacy`` flag) is loaded again with the config mended, so every layout comes with its head.
    """
    model, info = _from_pretrained(config, family, quiet=family.quiet_first_load)
    untrained = untrained_head_keys(model, info["missing_keys"])
    overrides = family.reload_overrides(model, info["unexpected_keys"], untrained)
    if overrides:
        del model
        model, info = _from_pretrained(config, family, **overrides)
    # A checkpoint without LM head weights (an untied lm_head.weight not stored) loads "fine" with a random head.
    missing_head = untrained_head_keys(model, info["missing_keys"])
    if missing_head:
        raise MonodistillError(
            f"teacher {config.name_or_path} has no trained {family.head_name} (missing {missing_head[:3]}): "
            + family.missing_head_hint
        )
    return model


def _from_pretrained(
    config: TeacherConfig, family: Family, quiet: bool = False, **overrides: Any
) -> tuple[PreTrainedModel, Any]:
    verbosity = transformers_logging.get_verbosity()
    if quiet:
        transformers_logging.set_verbosity_error()
    try:
        return load_weights(
            family.model_class,
            config.name_or_path,
            revision=config.revision,
            dtype=resolve_dtype(config.dtype),
            use_kernels=config.use_kernels,
            **overrides,
        )
    finally:
        transformers_logging.set_verbosity(verbosity)


def load_weights(
    model_class: Any,
    name_or_path: str,
    kind: str = "teacher",
    quiet: bool = False,
    use_kernels: bool = False,
    **kwargs: Any,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """``model_class.from_pretrained`` with its loading info, refusing in one line weights that do not fit config.json.

    transformers raises on a tensor whose shape differs from the one config.json builds (a ``vocab_size``
    edited or copied from another model) only after logging a table, with an error that says to read
    it. Here the first such tensor is named with both shapes. ``quiet`` drops transformers' table.

    Hub kernels are off unless asked for (``use_kernels``, the teacher's ``teacher.use_kernels``):
    transformers 5.25 applies them by default, fetching code from the Hub at load time, which fails
    offline, changes numerics between releases and breaks bit-identical resume. Students and
    fine-tuned models are always loaded without them.

    Raises:
        MonodistillError: for weights that cannot be read or do not fit the config.
    """
    kwargs = {**hub_files_only(kind, name_or_path, kwargs.get("revision")), **kwargs}
    report_logger = logging.getLogger(LOAD_REPORT_LOGGER)
    drop = _drop_load_report if quiet else _drop_mismatch_report  # a mismatch is reported below instead
    report_logger.addFilter(drop)
    try:
        model, info = model_class.from_pretrained(
            name_or_path, output_loading_info=True, ignore_mismatched_sizes=True, use_kernels=use_kernels, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MonodistillError(f"could not load {kind} weights from {name_or_path}: {reason}") from None
    finally:
        report_logger.removeFilter(drop)
    # Mismatched tensors were re-initialised at random: refuse rather than train or score them.
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        raise shape_mismatch_error(kind, name_or_path, mismatched, getattr(model.config, "vocab_size", None))
    return model, info


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def _drop_mismatch_report(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "LOAD REPORT" not in message or "MISMATCH" not in message


def untrained_head_keys(model: PreTrainedModel, missing_keys: Iterable[str]) -> list[str]:
    """The LM head weights a checkpoint did not hold, except a projection tied to the word embeddings."""
    word_embeddings = model.get_input_embeddings().weight
    parameters = dict(model.named_parameters(remove_duplicate=False))
    prefixes = family_of(model).head_prefixes
    tied = [key for key in missing_keys if parameters.get(key) is word_embeddings]
    return sorted(key for key in missing_keys if key.startswith(prefixes) and key not in tied)


def mlm_head(language_model: PreTrainedModel) -> MaskedLMHead:
    """Split a ``*ForMaskedLM`` or ``*ForCausalLM`` model's head (its family's layout: a decoder's transform is the
    identity, with its logit scale or cap); the parameters stay shared (and trainable)."""
    return family_of(language_model).mlm_head(language_model)


def encoder(model: PreTrainedModel) -> nn.Module:
    """The model without its LM head (returns hidden states)."""
    return getattr(model, model.base_model_prefix)


def max_positions(model_config: Any) -> int:
    """The longest input the model's position embeddings allow (any model: a family without an adapter is read
    as BERT's layout is)."""
    return family_of(model_config, required=False).max_positions(model_config)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, embedding and non-embedding parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    embedding_count = sum(parameter.numel() for parameter in embeddings.parameters())
    return {"total": total, "embedding": embedding_count, "non_embedding": total - embedding_count}
