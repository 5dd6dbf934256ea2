"""Bits per byte and perplexity of a causal LM: what is counted (by hand on a tiny decoder), sliding windows,
and a trimmed teacher against the full one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from monodistill.evaluate.language import document_ids, score_text, windows
from monodistill.evaluate.lm_tasks import TextTask
from monodistill.vocab.count import compare_segmentation, trim_vocabulary
from monodistill.vocab.teacher import trim_teacher
from monodistill.vocab.tokenizer import build_trimmed_tokenizer

from ..conftest import build_tiny_decoder, make_lines

Tokenizers = dict[str, PreTrainedTokenizerFast]
DOCUMENTS = ["ka ma ta pa.", "Ñoño sa bata 🙂"]  # the second has characters the tokenizers never saw: bytes


def task(documents: list[str], stride: int | None = None) -> TextTask:
    return TextTask("held-out", Path("held-out.txt"), documents, 1, stride)


def nats_by_hand(model: PreTrainedModel, ids: list[int], scored_from: int) -> float:
    """The summed negative log-likelihood of ``ids[scored_from:]``, each token given every token before it."""
    with torch.inference_mode():
        log_probs = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
    return -sum(log_probs[position - 1, ids[position]].item() for position in range(scored_from, len(ids)))


def test_two_short_documents_by_hand_from_eos_where_the_tokenizer_adds_no_bos(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizers["byte-level"]  # GPT-2 / Qwen style: adds nothing around a text
    model = build_tiny_decoder("llama", tokenizer).eval()
    result = score_text(model, tokenizer, task(DOCUMENTS), max_length=64, batch_size=2)
    # Each document is read from EOS; every token of its text is scored, so every byte of it is counted.
    texts = [tokenizer(text, add_special_tokens=False).input_ids for text in DOCUMENTS]
    nats = sum(nats_by_hand(model, [tokenizer.eos_token_id, *ids], 1) for ids in texts)
    tokens = sum(len(ids) for ids in texts)
    size = len(DOCUMENTS[0].encode()) + len(DOCUMENTS[1].encode())  # 12 + 19 bytes: Ñ, ñ 2 each, 🙂 4
    assert (result["tokens"], result["bytes"], result["documents"], result["windows"]) == (tokens, size, 2, 2)
    assert result["document_start"] == [tokenizer.eos_token]
    assert result["metrics"]["bits_per_byte"] == pytest.approx(nats / math.log(2) / size, rel=1e-6)
    assert result["metrics"]["perplexity"] == pytest.approx(math.exp(nats / tokens), rel=1e-6)


def test_a_tokenizer_that_adds_bos_reads_each_document_from_it(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizers["byte-fallback"]  # Llama-2 / Gemma style: <bos> before a text, no EOS after
    model = build_tiny_decoder("mistral", tokenizer).eval()
    (ids, start), _ = document_ids(tokenizer, DOCUMENTS)
    assert start == 1 and ids == tokenizer(DOCUMENTS[0]).input_ids and ids[0] == tokenizer.bos_token_id
    result = score_text(model, tokenizer, task(DOCUMENTS[:1]), max_length=64, batch_size=1)
    assert result["tokens"] == len(ids) - 1 and result["document_start"] == [tokenizer.bos_token]
    expected = nats_by_hand(model, ids, 1) / math.log(2) / len(DOCUMENTS[0].encode())
    assert result["metrics"]["bits_per_byte"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("length", "max_length", "stride"), [(30, 8, 3), (30, 8, 7), (8, 8, 4), (9, 8, 1), (5, 8, 4)])
def test_windows_score_every_token_once_with_the_context_the_stride_leaves(
    length: int, max_length: int, stride: int
) -> None:
    scored = []
    for start, first, end in windows(length, 1, max_length, stride):
        assert 0 <= start < first < end <= length and end - start <= max_length
        # The first window reads from the start; every later token sees max_length - stride tokens before it.
        assert start == 0 or first - start >= max_length - stride
        scored += range(first, end)
    assert scored == list(range(1, length))


def test_a_long_document_in_windows_scores_each_token_from_its_window(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizers["byte-level"]
    model = build_tiny_decoder("llama", tokenizer).eval()
    text = " ".join(make_lines(2, seed=3))
    ids, _ = document_ids(tokenizer, [text])[0]
    assert 20 < len(ids) <= 64
    nats = 0.0
    for start, first, end in windows(len(ids), 1, 8, 3):  # each window's targets, from its own tokens alone
        nats += nats_by_hand(model, ids[start:end], first - start)
    result = score_text(model, tokenizer, task([text], stride=3), max_length=8, batch_size=4)
    assert result["windows"] == len(list(windows(len(ids), 1, 8, 3)))
    assert result["metrics"]["bits_per_byte"] == pytest.approx(nats / math.log(2) / len(text.encode()), rel=1e-6)
    whole = score_text(model, tokenizer, task([text]), max_length=64, batch_size=4)  # one window: more context
    assert whole["windows"] == 1 and whole["tokens"] == result["tokens"]


def test_a_trimmed_teacher_is_the_full_teacher_renormalised_over_the_kept_tokens(
    decoder_tokenizers: Tokenizers,
) -> None:
    """On text the trimmed vocabulary segments as the full one does, the trimmed teacher gives each token the
    full teacher's probability renormalised over the kept tokens: the same bits per byte when every token is
    kept, and fewer when the tokens it drops held probability (a trimmed softmax spends none on them)."""
    tokenizer = decoder_tokenizers["byte-level"]
    documents = make_lines(6, seed=7)
    full = build_tiny_decoder("qwen2", tokenizer).eval()  # tied embeddings, as Qwen2.5-0.5B
    kept = trim_vocabulary(tokenizer, documents, None, None, 1).kept_ids
    small = build_trimmed_tokenizer(tokenizer, kept)
    segmentation = compare_segmentation(tokenizer, small, kept, documents)
    assert segmentation.identical_documents == 1.0 and len(kept) < len(tokenizer)
    trimmed = trim_teacher(build_tiny_decoder("qwen2", tokenizer).eval(), kept)
    scores = {
        name: score_text(model, vocabulary, task(documents), max_length=64, batch_size=3)
        for name, model, vocabulary in (("full", full, tokenizer), ("trimmed", trimmed, small))
    }
    assert (
        scores["full"]["tokens"] == scores["trimmed"]["tokens"]
        and scores["full"]["bytes"] == scores["trimmed"]["bytes"]
    )
    renormalised = 0.0
    for text in documents:
        ids = [tokenizer.eos_token_id, *tokenizer(text).input_ids]
        with torch.inference_mode():
            logits = full(input_ids=torch.tensor([ids])).logits[0, :, kept].double()  # (T, V_kept)
        log_probs = F.log_softmax(logits, dim=-1)
        renormalised -= sum(
            log_probs[position - 1, kept.index(ids[position])].item() for position in range(1, len(ids))
        )
    size = scores["full"]["bytes"]
    assert scores["trimmed"]["metrics"]["bits_per_byte"] == pytest.approx(renormalised / math.log(2) / size, rel=1e-5)
    assert scores["trimmed"]["metrics"]["bits_per_byte"] < scores["full"]["metrics"]["bits_per_byte"]
    everything = list(range(len(tokenizer)))
    untrimmed = trim_teacher(build_tiny_decoder("qwen2", tokenizer).eval(), everything)
    same = score_text(untrimmed, build_trimmed_tokenizer(tokenizer, everything), task(documents), 64, 3)
    assert same["metrics"]["bits_per_byte"] == pytest.approx(scores["full"]["metrics"]["bits_per_byte"], rel=1e-6)
