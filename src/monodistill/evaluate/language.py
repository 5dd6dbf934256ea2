"""Held-out bits per byte and perplexity of a causal language model, whatever its vocabulary.

What is counted, exactly:

- Each document (a line of the text file, without its line break) is encoded as the model's tokenizer
  encodes a text. Its tokens are read from a start token: the tokenizer's own leading special tokens (BOS)
  where it adds them, else its EOS token, which ends each document before it in the packed blocks a student
  is distilled on (and GPT-2, Qwen and Llama-3-style pretraining); special tokens the tokenizer appends
  after the text are left out. Every token of the text is scored, predicted from the start token and the
  text's tokens before it: none is left unscored, so every byte of the text is counted.
- Negative log-likelihood (nats) of each scored token, summed over the documents; ``bits_per_byte`` is that
  sum / ln 2 / the UTF-8 bytes of the documents; ``perplexity`` is exp(sum / scored tokens), per token of
  the model's own tokenizer (so only models of one tokenizer compare on it; bits per byte compares any).
- A document longer than ``max_length`` tokens is read in sliding windows (as transformers' perplexity guide
  reads one): the first window scores its tokens, each next one moves ``stride`` tokens on and scores only
  those, with up to ``max_length - stride`` tokens before them as context; each token is scored once.

``log_likelihoods`` (also used by ``choice.py``) runs batches of right-padded rows under
``torch.inference_mode()``, as many rows as keep the float32 logits within ``LOGIT_BUDGET`` elements.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError
from monodistill.evaluate.lm_tasks import TextTask
from monodistill.progress import progress_bar

LOGIT_BUDGET = 1 << 25
"""Logit elements (batch x length x vocabulary) a batch may hold: 128 MB in float32, whatever the vocabulary."""

Row = tuple[list[int], int]
"""Token ids read, and how many of the last of them are scored."""


def document_start(tokenizer: PreTrainedTokenizerBase, encoded: list[int], text_ids: list[int]) -> list[int]:
    """The tokens a document is read from: those the tokenizer puts before the text (``encoded`` is the text
    encoded with special tokens, ``text_ids`` without), else its EOS token.

    Raises:
        MonodistillError: for a tokenizer that adds nothing before a text and has no EOS token.
    """
    for start in range(len(encoded) - len(text_ids) + 1):
        if encoded[start : start + len(text_ids)] == text_ids:
            if start:
                return encoded[:start]
            break
    if tokenizer.eos_token_id is None:
        raise MonodistillError(
            f"tokenizer {tokenizer.name_or_path} adds no token before a text and has no EOS token: the first token "
            "of a document has nothing to be predicted from"
        )
    return [int(tokenizer.eos_token_id)]


def document_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[tuple[list[int], int]]:
    """Each text as the model reads it (``document_start``, then the text's tokens), and its start's length."""
    encoded = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]  # no length warning
    plain = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    documents = []
    for full, text_ids in zip(encoded, plain, strict=True):
        start = document_start(tokenizer, full, text_ids)
        documents.append(([*start, *text_ids], len(start)))
    return documents


def windows(length: int, first_target: int, max_length: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """Sliding windows over a sequence of ``length`` tokens whose targets start at ``first_target``:
    ``(start, scored_from, end)``, tokens ``[start, end)`` read and ``[scored_from, end)`` scored.

    The first window reads up to ``max_length`` tokens; each next one ends ``stride`` tokens later and reads
    the ``max_length`` tokens before its end. ``1 <= stride < max_length``, so every scored token has a token
    before it in its window, and each is scored once.
    """
    end = min(length, max_length)
    if end > first_target:
        yield 0, first_target, end
    while end < length:
        later = min(length, end + stride)
        yield max(0, later - max_length), max(end, first_target), later
        end = later


def log_likelihoods(model: Any, rows: Sequence[Row], batch_size: int, desc: str, autocast: Any = None) -> list[float]:
    """Each row's summed log-probability (nats) of its last scored tokens, each given the tokens before it.

    Rows are batched longest first (a batch pads to its first row), ``batch_size`` at most and fewer where
    the logits would pass ``LOGIT_BUDGET`` elements. ``autocast`` is a dtype for ``torch.autocast``, or None.
    """
    device = next(model.parameters()).device
    vocabulary = int(model.config.vocab_size)
    order = sorted(range(len(rows)), key=lambda index: -len(rows[index][0]))
    sums = [0.0] * len(rows)
    position = 0
    enabled = autocast is not None
    with progress_bar(len(rows), desc, "seq", leave=False) as bar, torch.inference_mode():
        context = torch.autocast(device.type, dtype=autocast) if enabled else nullcontext()
        with context:
            while position < len(order):
                longest = len(rows[order[position]][0])
                count = max(1, min(batch_size, LOGIT_BUDGET // (longest * vocabulary)))
                batch = order[position : position + count]
                for index, value in zip(batch, _batch_sums(model, [rows[i] for i in batch], device), strict=True):
                    sums[index] = value
                position += count
                bar.update(len(batch))
    return sums


def _batch_sums(model: Any, rows: list[Row], device: torch.device) -> list[float]:
    """``log_likelihoods`` of one batch: rows right-padded, so every real token keeps positions 0, 1, ..."""
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    targets = torch.full((len(rows), length), -100, dtype=torch.long)
    for row, (ids, scored) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        targets[row, len(ids) - scored : len(ids)] = torch.tensor(ids[len(ids) - scored :])
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits  # (B, T, V)
    labels = targets[:, 1:].to(device)  # (B, T-1): the token each position predicts
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return picked.masked_fill(labels == -100, 0.0).double().sum(-1).tolist()


def score_text(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    task: TextTask,
    max_length: int,
    batch_size: int,
    autocast: Any = None,
) -> dict[str, Any]:
    """Bits per byte and perplexity of ``model`` on ``task``'s documents (see the module's docstring), with what
    was counted: documents, scored tokens, bytes, windows, and how each document starts."""
    stride = task.stride or max(1, max_length // 2)
    if not 1 <= stride < max_length:
        raise MonodistillError(
            f"task {task.name}: stride {stride} must be below the window of {max_length} tokens (evaluate.max_length "
            "cut to the model's positions)"
        )
    documents = document_ids(tokenizer, task.documents)
    rows: list[Row] = []
    for ids, start in documents:
        rows += [(ids[begin:end], end - scored) for begin, scored, end in windows(len(ids), start, max_length, stride)]
    started = time.perf_counter()
    nats = -sum(log_likelihoods(model, rows, batch_size, f"scoring {task.name}", autocast))
    seconds = time.perf_counter() - started
    tokens = sum(len(ids) - start for ids, start in documents)
    size = sum(len(text.encode("utf-8")) for text in task.documents)
    starts = {tokenizer.convert_ids_to_tokens(ids[0]) for ids, _ in documents}
    return {
        "metrics": {
            "bits_per_byte": nats / math.log(2) / size,
            "perplexity": math.exp(nats / tokens),
            "nats_per_token": nats / tokens,
        },
        "nats": nats,
        "documents": len(documents),
        "tokens": tokens,
        "bytes": size,
        "bytes_per_token": size / tokens,
        "windows": len(rows),
        "max_length": max_length,
        "stride": stride,
        "document_start": sorted(str(token) for token in starts),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
    }
