"""Write a trimmed vocabulary out: the teacher's tokenizer and masked LM restricted to kept ids.

Both rewrites keep everything but the vocabulary: the tokenizer keeps its normalizer,
pre-tokenizer, decoder and special tokens (ids remapped, including those baked into the
post-processor); the model keeps every weight except the rows of dropped tokens. Kept ids must be
strictly increasing, so student id ``i`` is teacher id ``kept_ids[i]`` and the relative order of
tokens (model vocabulary first, added-only tokens last) is the teacher's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.teacher import load_teacher, mlm_head

ID_MAP_FILE = "id_map.json"
TRIMMABLE_MODELS = ("WordPiece", "Unigram")
# Config fields holding token ids; remapped so that the exported teacher's config stays truthful.
CONFIG_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def backend_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    """The ``tokenizers`` object behind a fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise MonodistillError(f"tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend")
    return backend


def tokenizer_json(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The fast tokenizer's full serialisation, once checked to be a kind that can be trimmed.

    Raises:
        MonodistillError: for a slow tokenizer or a model kind other than WordPiece and Unigram.
    """
    backend = backend_tokenizer(tokenizer)
    # Older tokenizer.json files omit model.type; the live model's class always names it.
    kind = type(backend.model).__name__
    if kind not in TRIMMABLE_MODELS:
        raise MonodistillError(
            f"tokenizer kind {kind} cannot be trimmed: only {' and '.join(TRIMMABLE_MODELS)} "
            "vocabularies (BERT, XLM-R, mDeBERTa families) can be subset without changing segmentation"
        )
    data: dict[str, Any] = json.loads(backend.to_str())
    data["model"]["type"] = kind
    return data


def id_to_token(data: dict[str, Any]) -> dict[int, str]:
    """Every id of a serialised tokenizer (model vocabulary and added tokens) -> its string."""
    vocab = data["model"]["vocab"]
    if data["model"]["type"] == "WordPiece":
        tokens = {index: token for token, index in vocab.items()}
    else:
        tokens = {index: piece for index, (piece, _score) in enumerate(vocab)}
    tokens.update({added["id"]: added["content"] for added in data["added_tokens"]})
    return tokens


def required_ids(tokenizer: PreTrainedTokenizerBase, data: dict[str, Any]) -> set[int]:
    """Ids a trimmed tokenizer cannot work without, whatever the corpus holds.

    Special tokens (named, added as special, or inserted by the post-processor), the unknown token,
    and for Unigram the byte-fallback pieces and the lowest-scoring piece: the model's UNK penalty
    is that score minus 10, so keeping it keeps segmentations around unknown characters unchanged.
    """
    ids = set(tokenizer.all_special_ids)
    ids |= {added["id"] for added in data["added_tokens"] if added.get("special")}
    ids |= _post_processor_ids(data.get("post_processor"))
    model = data["model"]
    if model["type"] == "WordPiece":
        ids.add(model["vocab"][model["unk_token"]])
    else:
        if model.get("unk_id") is not None:
            ids.add(model["unk_id"])
        scores = [score for _piece, score in model["vocab"]]
        ids.add(min(range(len(scores)), key=scores.__getitem__))
        if model.get("byte_fallback"):
            ids |= {index for index, (piece, _) in enumerate(model["vocab"]) if _is_byte_piece(piece)}
    return ids


def _is_byte_piece(piece: str) -> bool:
    return len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def build_trimmed_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: list[int]) -> PreTrainedTokenizerFast:
    """The teacher's tokenizer restricted to ``kept_ids``: student id ``i`` is teacher id ``kept_ids[i]``.

    The model section is rewritten (WordPiece: the token -> id map; Unigram: the piece list with its
    scores and ``unk_id``); added tokens and the post-processor's special-token ids are remapped; the
    normalizer, pre-tokenizer and decoder are kept verbatim, so text is split exactly as before.

    Args:
        tokenizer: The teacher's fast tokenizer (WordPiece or Unigram).
        kept_ids: Strictly increasing teacher ids to keep; must include the special tokens.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``len(kept_ids)`` tokens and the teacher's special tokens.

    Raises:
        MonodistillError: for a tokenizer kind that cannot be trimmed, ids out of range or not
            increasing, or a dropped token the tokenizer needs (unknown token, post-processor tokens).
    """
    data = tokenizer_json(tokenizer)
    tokens = id_to_token(data)
    _check_kept_ids(kept_ids, len(tokens))
    new_id = {old: new for new, old in enumerate(kept_ids)}
    model = data["model"]
    if model["type"] == "WordPiece":
        if model["vocab"].get(model["unk_token"]) not in new_id:
            raise MonodistillError(f"the kept ids drop the unknown token {model['unk_token']!r}")
        # Model-vocabulary ids precede added-only ids and kept ids are increasing, so the new model
        # vocabulary is a prefix of the new ids and added-only tokens keep following it.
        model["vocab"] = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
    else:
        if model.get("unk_id") is not None:
            if model["unk_id"] not in new_id:
                raise MonodistillError("the kept ids drop the unknown piece of the Unigram model")
            model["unk_id"] = new_id[model["unk_id"]]
        model["vocab"] = [model["vocab"][old] for old in kept_ids if old < len(model["vocab"])]
    data["added_tokens"] = [
        {**added, "id": new_id[added["id"]]} for added in data["added_tokens"] if added["id"] in new_id
    ]
    data["post_processor"] = _remap_post_processor(data.get("post_processor"), new_id)
    if data.get("padding") is not None:
        data["padding"]["pad_id"] = _remap(data["padding"]["pad_id"], new_id, "padding")
    backend = Tokenizer.from_str(json.dumps(data))
    _check_round_trip(backend, tokens, kept_ids)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **_wrapper_kwargs(tokenizer))


def _check_kept_ids(kept_ids: list[int], vocab_size: int) -> None:
    if not kept_ids:
        raise MonodistillError("no token ids to keep")
    if any(later <= earlier for earlier, later in itertools.pairwise(kept_ids)):
        raise MonodistillError("kept ids must be strictly increasing (sorted teacher ids, no duplicates)")
    if kept_ids[0] < 0 or kept_ids[-1] >= vocab_size:
        raise MonodistillError(f"kept ids must lie in [0, {vocab_size}), got {kept_ids[0]}..{kept_ids[-1]}")


def _remap(old: int, new_id: dict[int, int], where: str) -> int:
    if old not in new_id:
        raise MonodistillError(f"the kept ids drop token id {old}, which the tokenizer's {where} inserts")
    return new_id[old]


def _post_processor_ids(node: dict[str, Any] | None) -> set[int]:
    if node is None:
        return set()
    if node["type"] == "TemplateProcessing":
        return {index for spec in node["special_tokens"].values() for index in spec["ids"]}
    if node["type"] in ("RobertaProcessing", "BertProcessing"):
        return {node["sep"][1], node["cls"][1]}
    if node["type"] == "Sequence":
        return set().union(*(_post_processor_ids(child) for child in node["processors"]))
    return set()  # ByteLevel and friends insert no tokens


def _remap_post_processor(node: dict[str, Any] | None, new_id: dict[int, int]) -> dict[str, Any] | None:
    if node is None:
        return None
    if node["type"] == "TemplateProcessing":
        for spec in node["special_tokens"].values():
            spec["ids"] = [_remap(index, new_id, "post-processor") for index in spec["ids"]]
    elif node["type"] in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            token, index = node[key]
            node[key] = [token, _remap(index, new_id, "post-processor")]
    elif node["type"] == "Sequence":
        node["processors"] = [_remap_post_processor(child, new_id) for child in node["processors"]]
    return node


def _check_round_trip(backend: Tokenizer, tokens: dict[int, str], kept_ids: list[int]) -> None:
    # Added tokens get their ids when the JSON is loaded; a wrong order would silently shift them.
    if backend.get_vocab_size(with_added_tokens=True) != len(kept_ids):
        raise MonodistillError(
            f"the trimmed tokenizer has {backend.get_vocab_size(with_added_tokens=True)} tokens, "
            f"expected {len(kept_ids)}"
        )
    for new, old in enumerate(kept_ids):
        if backend.id_to_token(new) != tokens[old]:
            raise MonodistillError(
                f"the trimmed tokenizer maps id {new} to {backend.id_to_token(new)!r}, expected {tokens[old]!r}"
            )


def _wrapper_kwargs(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What the transformers wrapper adds to the backend: named special tokens, limits, input names."""
    kwargs: dict[str, Any] = {str(name): str(token) for name, token in tokenizer.special_tokens_map.items() if token}
    extra = [str(token) for token in getattr(tokenizer, "extra_special_tokens", None) or []]
    if extra:
        kwargs["extra_special_tokens"] = extra
    kwargs["model_max_length"] = tokenizer.model_max_length
    kwargs["padding_side"] = tokenizer.padding_side
    kwargs["truncation_side"] = tokenizer.truncation_side
    kwargs["model_input_names"] = list(tokenizer.model_input_names)
    return kwargs


def trim_teacher(model: PreTrainedModel, kept_ids: list[int]) -> PreTrainedModel:
    """Restrict a masked LM to ``kept_ids``, in place: input embeddings, output projection and bias.

    On inputs mapped through the id map, the trimmed model's logits equal the full model's logits
    at the kept columns: every other weight is untouched, and each layout's head (BERT and legacy
    DeBERTa-v2 ``cls.predictions``, RoBERTa/XLM-R ``lm_head``, DeBERTa-v2 ``lm_predictions`` whose
    projection is the word embeddings, DistilBERT ``vocab_projector``) is sliced to the same rows.

    Raises:
        MonodistillError: for an unknown head layout, or a RoBERTa-style model whose padding id would
            move (its position ids are counted from the padding id).
    """
    mlm_head(model)  # raises for a layout we do not know
    config: Any = model.config
    rows = torch.tensor(kept_ids, dtype=torch.long)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    if config.model_type in ("roberta", "xlm-roberta") and new_id.get(config.pad_token_id) != config.pad_token_id:
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
    elif family in ("roberta", "xlm-roberta"):
        _trim_linear_head(model.lm_head, rows)
    elif family == "deberta-v2":
        # The projection is the word embeddings themselves; only the bias lives in the head.
        head = model.lm_predictions.lm_head
        head.bias = nn.Parameter(head.bias.detach()[rows].clone())
    elif family == "distilbert":
        model.vocab_projector = _sliced_linear(model.vocab_projector, rows)


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


def load_trimmed_vocab(
    path: str | Path, teacher_tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedTokenizerFast, list[int]]:
    """Load a folder written by ``run_vocab`` and check it against the teacher's tokenizer.

    Args:
        path: The trimmed-vocabulary folder (``tokenizer.json``, ``id_map.json``).
        teacher_tokenizer: The tokenizer of the teacher that will be distilled.

    Returns:
        The student tokenizer and the id map (student id -> teacher id).

    Raises:
        MonodistillError: for a missing or malformed folder, an id map that does not fit the
            tokenizer or the teacher, a student token that is not the teacher's token at its mapped
            id (a vocabulary built from another teacher), or text normalised or pre-tokenised
            differently from the teacher.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MonodistillError(f"trimmed vocabulary folder {folder} does not exist; build it with `monodistill vocab`")
    id_map, built_from = _read_id_map(folder / ID_MAP_FILE)
    try:
        student = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as error:
        raise MonodistillError(f"{folder} holds no usable tokenizer: {error}") from None
    if not isinstance(student, PreTrainedTokenizerFast):
        raise MonodistillError(f"the tokenizer in {folder} is not a fast tokenizer")
    if len(id_map) != len(student):
        raise MonodistillError(
            f"{folder}: the id map has {len(id_map)} entries but the tokenizer {len(student)} tokens"
        )
    if min(id_map) < 0 or max(id_map) >= len(teacher_tokenizer) or len(set(id_map)) != len(id_map):
        raise MonodistillError(
            f"{folder}: the id map must hold distinct teacher ids in [0, {len(teacher_tokenizer)}), "
            f"got {min(id_map)}..{max(id_map)} with {len(id_map) - len(set(id_map))} repeated"
        )
    student_tokens = student.convert_ids_to_tokens(list(range(len(student))))
    teacher_tokens = teacher_tokenizer.convert_ids_to_tokens(id_map)
    for student_id, (mine, theirs) in enumerate(zip(student_tokens, teacher_tokens, strict=True)):
        if mine != theirs:
            raise MonodistillError(
                f"student vocabulary in {folder} is not a subset of the teacher's: token {mine!r} (student id "
                f"{student_id}) maps to teacher id {id_map[student_id]}, which is {theirs!r}; it was built from "
                f"teacher {built_from!r}, not this one"
            )
    _check_same_splitting(backend_tokenizer(student), backend_tokenizer(teacher_tokenizer), folder)
    return student, id_map


def _read_id_map(path: Path) -> tuple[list[int], str | None]:
    if not path.is_file():
        raise MonodistillError(f"{path.parent} holds no {ID_MAP_FILE}: build it with `monodistill vocab`")
    try:
        data = json.loads(path.read_text())
        id_map = data["id_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MonodistillError(f"{path} is not an id map written by `monodistill vocab`: {error!r}") from None
    if not isinstance(id_map, list) or not id_map or not all(isinstance(i, int) for i in id_map):
        raise MonodistillError(f"{path}: id_map must be a non-empty list of integer teacher ids")
    return id_map, data.get("teacher")


def _check_same_splitting(student: Tokenizer, teacher: Tokenizer, folder: Path) -> None:
    # Same tokens are not enough: a different normaliser or pre-tokeniser would split text differently.
    mine, theirs = json.loads(student.to_str()), json.loads(teacher.to_str())
    for part in ("normalizer", "pre_tokenizer"):
        if mine.get(part) != theirs.get(part):
            raise MonodistillError(
                f"the tokenizer in {folder} has a different {part} from the teacher's, so it would split text "
                "differently: it was not trimmed from this teacher's tokenizer"
            )
