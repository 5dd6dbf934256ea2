"""Trimming BPE vocabularies, both kinds: byte-level (GPT-2, RoBERTa, English ModernBERT) and SentencePiece
BPE with byte fallback (Gemma, Llama, mmBERT), trained here on the shared Tagalog corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import pre_tokenizers
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.vocab import build_trimmed_tokenizer, compare_segmentation, trim_vocabulary
from monodistill.vocab.tokenizer import merge_result, merges, required_ids, tokenizer_json

from .bpe_tokenizers import KINDS, byte_level_bpe, multilingual, sentencepiece_bpe
from .conftest import require_shared


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    lines = require_shared("data", "tl", "corpus.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


@pytest.fixture(scope="module", params=list(KINDS))
def teacher(request: pytest.FixtureRequest, corpus: list[str]) -> PreTrainedTokenizerFast:
    """A multilingual BPE teacher, so that the Tagalog corpus uses part of its vocabulary."""
    return KINDS[request.param](multilingual(corpus))


@pytest.mark.smoke
def test_without_a_limit_every_line_of_the_corpus_segments_exactly(
    teacher: PreTrainedTokenizerFast, corpus: list[str]
) -> None:
    trimmed = trim_vocabulary(teacher, corpus, max_size=None, coverage=None, min_count=1)
    student = build_trimmed_tokenizer(teacher, trimmed.kept_ids)
    assert len(student) == len(trimmed.kept_ids) < len(teacher)
    stats = compare_segmentation(teacher, student, trimmed.kept_ids, corpus)
    assert stats.documents == len(corpus) and stats.identical_documents == 1.0
    # With the special tokens the post-processor adds, at their new ids.
    line = corpus[0]
    assert [trimmed.kept_ids[i] for i in student(line)["input_ids"]] == teacher(line)["input_ids"]


def test_merges_are_kept_only_with_their_inputs_and_result_and_every_kept_token_can_be_built(
    teacher: PreTrainedTokenizerFast, corpus: list[str]
) -> None:
    trimmed = trim_vocabulary(teacher, corpus, max_size=1_500, coverage=None, min_count=1)
    assert len(trimmed.kept_ids) <= 1_500
    student = build_trimmed_tokenizer(teacher, trimmed.kept_ids)
    data = tokenizer_json(student)
    vocab, pairs = data["model"]["vocab"], merges(data["model"])
    built = {merge_result(data["model"], left, right) for left, right in pairs}
    for left, right in pairs:
        assert left in vocab and right in vocab
    # Every kept token longer than one character is made by a kept merge (else it could never appear).
    singles = {token for token in vocab if len(token) == 1}
    teacher_data = tokenizer_json(teacher)
    required = {
        token for token, index in teacher_data["model"]["vocab"].items() if index in required_ids(teacher, teacher_data)
    }
    assert all(token in built or token in singles or token in required for token in vocab)
    # The alphabet (byte-level) or the byte pieces (byte fallback) stay: anything still encodes, without unknowns.
    stats = compare_segmentation(teacher, student, trimmed.kept_ids, [*corpus[:2000], "日本語 ẞ 🙂"])
    assert stats.trimmed_unk_rate == 0.0 and stats.trimmed_tokens > stats.teacher_tokens


def test_the_byte_pieces_and_alphabet_are_required(corpus: list[str]) -> None:
    sentencepiece = sentencepiece_bpe(corpus)
    data = tokenizer_json(sentencepiece)
    byte_pieces = {index for token, index in data["model"]["vocab"].items() if token.startswith("<0x")}
    assert len(byte_pieces) == 256 and byte_pieces <= required_ids(sentencepiece, data)
    byte_level = byte_level_bpe(corpus)
    data = tokenizer_json(byte_level)
    alphabet = {data["model"]["vocab"][char] for char in pre_tokenizers.ByteLevel.alphabet()}
    assert len(alphabet) == 256 and alphabet <= required_ids(byte_level, data)


def test_a_bpe_whose_merges_reference_a_missing_token_is_refused(
    corpus: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = byte_level_bpe(corpus[:500])
    data = json.loads(teacher.backend_tokenizer.to_str())
    left, right = data["model"]["merges"][-1]
    del data["model"]["vocab"][left + right]
    # The tokenizers library cannot parse it (so no such tokenizer reaches the trimming): one line.
    folder = tmp_path / "damaged"
    teacher.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(json.dumps(data))
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus[:50]) + "\n")
    assert main(["vocab", "--teacher", str(folder), "--corpus", str(corpus_file), "--output", str(tmp_path / "v")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"the tokenizer of teacher {folder} is damaged: " in error and "out of vocabulary" in error
