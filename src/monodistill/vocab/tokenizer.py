"""The teacher's tokenizer restricted to kept ids: WordPiece, Unigram and BPE rewritten, the rest verbatim.

The rewrite keeps everything but the vocabulary: the normalizer, pre-tokenizer, decoder and special
tokens (ids remapped, including those baked into the post-processor). Kept ids must be strictly
increasing, so student id ``i`` is teacher id ``kept_ids[i]`` and the relative order of tokens
(model vocabulary first, added-only tokens last) is the teacher's.

BPE, both kinds: byte-level (GPT-2, RoBERTa, English ModernBERT: every byte is one of 256 alphabet
characters) and SentencePiece-style with byte fallback (Gemma, Llama, mmBERT: unknown characters
become ``<0xNN>`` byte pieces). A BPE segmentation is built by merges, so a kept token needs every
token its merges go through (``merge_closure``), and the rewrite keeps a merge only when both its
inputs and its result are kept. A word of the corpus then segments as before: every token its merge
history passes through is an ancestor of a token it ends in, so kept, and no merge it applies is
dropped. The alphabet (byte-level) and the byte pieces (byte fallback) are always kept, so any text
still encodes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError

TRIMMABLE_MODELS = ("WordPiece", "Unigram", "BPE")


def backend_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    """The ``tokenizers`` object behind a fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise MonodistillError(f"tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend")
    return backend


def tokenizer_json(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The fast tokenizer's full serialisation, once checked to be a kind that can be trimmed.

    Raises:
        MonodistillError: for a slow tokenizer or a model kind other than WordPiece, Unigram and BPE.
    """
    backend = backend_tokenizer(tokenizer)
    # Older tokenizer.json files omit model.type; the live model's class always names it.
    kind = type(backend.model).__name__
    if kind not in TRIMMABLE_MODELS:
        raise MonodistillError(
            f"tokenizer kind {kind} cannot be trimmed: only {', '.join(TRIMMABLE_MODELS)} "
            "vocabularies (BERT, XLM-R, mDeBERTa, RoBERTa, Gemma/mmBERT families) can be subset without "
            "changing segmentation"
        )
    data: dict[str, Any] = json.loads(backend.to_str())
    data["model"]["type"] = kind
    return data


def merges(model: dict[str, Any]) -> list[tuple[str, str]]:
    """A BPE model's merges as pairs, whichever way the file spells them ("a b" or ["a", "b"])."""
    pairs = []
    for merge in model["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        pairs.append((left, right))
    return pairs


def merge_result(model: dict[str, Any], left: str, right: str) -> str:
    """The token a merge makes (a continuation prefix on the right part is dropped, as BPE does)."""
    prefix = model.get("continuing_subword_prefix") or ""
    return left + (right[len(prefix) :] if prefix and right.startswith(prefix) else right)


def merge_parents(data: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Each token a BPE merge makes -> the pairs that make it (empty for other kinds)."""
    model = data["model"]
    parents: dict[str, list[tuple[str, str]]] = {}
    if model["type"] == "BPE":
        for left, right in merges(model):
            parents.setdefault(merge_result(model, left, right), []).append((left, right))
    return parents


def merge_closure(
    data: dict[str, Any], kept_ids: Iterable[int], parents: dict[str, list[tuple[str, str]]] | None = None
) -> set[int]:
    """``kept_ids`` with every token that a merge building one of them goes through (BPE; others unchanged).

    ``parents`` is ``merge_parents(data)``, given when the closure of several sets is wanted.
    """
    model = data["model"]
    if model["type"] != "BPE":
        return set(kept_ids)
    vocab = model["vocab"]
    parents = merge_parents(data) if parents is None else parents
    tokens = id_to_token(data)
    closed = set(kept_ids)
    pending = [tokens[i] for i in closed if i in tokens]
    while pending:
        for pair in parents.get(pending.pop(), []):
            for part in pair:
                if vocab[part] not in closed:
                    closed.add(vocab[part])
                    pending.append(part)
    return closed


def id_to_token(data: dict[str, Any]) -> dict[int, str]:
    """Every id of a serialised tokenizer (model vocabulary and added tokens) -> its string."""
    vocab = data["model"]["vocab"]
    if data["model"]["type"] in ("WordPiece", "BPE"):
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
    For BPE the byte pieces (byte fallback) and, for a byte-level tokenizer, the 256-character
    alphabet: with them any text still encodes.
    """
    ids = set(tokenizer.all_special_ids)
    ids |= {added["id"] for added in data["added_tokens"] if added.get("special")}
    ids |= _post_processor_ids(data.get("post_processor"))
    model = data["model"]
    if model["type"] == "WordPiece":
        ids.add(model["vocab"][model["unk_token"]])
    elif model["type"] == "BPE":
        vocab = model["vocab"]
        if model.get("unk_token") in vocab:
            ids.add(vocab[model["unk_token"]])
        if model.get("byte_fallback"):
            ids |= {index for token, index in vocab.items() if is_byte_piece(token)}
        if _byte_level(data):
            ids |= {vocab[char] for char in pre_tokenizers.ByteLevel.alphabet() if char in vocab}
    else:
        if model.get("unk_id") is not None:
            ids.add(model["unk_id"])
        scores = [score for _piece, score in model["vocab"]]
        ids.add(min(range(len(scores)), key=scores.__getitem__))
        if model.get("byte_fallback"):
            ids |= {index for index, (piece, _) in enumerate(model["vocab"]) if is_byte_piece(piece)}
    return ids


def is_byte_piece(piece: str) -> bool:
    return len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def _byte_level(data: dict[str, Any]) -> bool:
    """Whether text becomes bytes mapped to the ByteLevel alphabet before the model sees it."""

    def has(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(has(value) for value in node.values())
        if isinstance(node, list):
            return any(has(item) for item in node)
        return False

    return has(data.get("pre_tokenizer"))


def build_trimmed_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: list[int]) -> PreTrainedTokenizerFast:
    """The teacher's tokenizer restricted to ``kept_ids``: student id ``i`` is teacher id ``kept_ids[i]``.

    The model section is rewritten (WordPiece: the token -> id map; Unigram: the piece list with its
    scores and ``unk_id``; BPE: the token -> id map and the merges whose inputs and result are kept);
    added tokens and the post-processor's special-token ids are remapped; the normalizer,
    pre-tokenizer and decoder are kept verbatim, so text is split exactly as before.

    Args:
        tokenizer: The teacher's fast tokenizer (WordPiece, Unigram or BPE).
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
    elif model["type"] == "BPE":
        vocab = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
        model["merges"] = [
            [left, right]
            for left, right in merges(model)
            if left in vocab and right in vocab and merge_result(model, left, right) in vocab
        ]
        model["vocab"] = vocab
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
    # A decoder's conversations render as the teacher's do: the template names tokens as text, kept by the trim.
    if getattr(tokenizer, "chat_template", None):
        kwargs["chat_template"] = tokenizer.chat_template
    return kwargs
