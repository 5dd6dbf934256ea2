"""Packing into full blocks, the held-out split, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from monodistill.config import DataConfig
from monodistill.data import blocks as blocks_module
from monodistill.data.blocks import build_blocks
from monodistill.errors import MonodistillError


def test_blocks_are_full_framed_and_split(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path
) -> None:
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, validation_fraction=0.1, cache_dir=str(cache_dir))
    blocks = build_blocks(config, tiny_tokenizer, seed=0)
    train = blocks.train[:]["input_ids"]
    assert train.shape[1] == 32 and len(blocks.validation) >= 1
    assert (train[:, 0] == tiny_tokenizer.cls_token_id).all()
    assert (train[:, -1] == tiny_tokenizer.sep_token_id).all()
    assert not (train == tiny_tokenizer.pad_token_id).any()  # no padding waste
    # Every corpus token lands in some block (up to the dropped remainder of each packing batch).
    corpus_tokens = sum(
        len(ids) + 1
        for ids in tiny_tokenizer(corpus_file.read_text().splitlines(), add_special_tokens=False)["input_ids"]
    )
    packed = (len(blocks.train) + len(blocks.validation)) * 30
    assert corpus_tokens - 30 <= packed <= corpus_tokens
    validation_rows = {tuple(row.tolist()) for row in blocks.validation[:]["input_ids"]}
    assert not validation_rows & {tuple(row.tolist()) for row in train}


def test_cache_is_reused(
    corpus_file: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir))
    first = build_blocks(config, tiny_tokenizer, seed=0)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the corpus was read again despite the cache")

    monkeypatch.setattr(blocks_module, "load_corpus", fail)
    second = build_blocks(config, tiny_tokenizer, seed=0)
    assert second.cache_path == first.cache_path
    assert torch.equal(second.train[:]["input_ids"], first.train[:]["input_ids"])
    with pytest.raises(AssertionError, match="read again"):  # a different setting is a different key
        build_blocks(
            DataConfig(corpus=str(corpus_file), max_seq_length=16, cache_dir=str(cache_dir)),
            tiny_tokenizer,
            0,
        )


def test_whole_word_starts_follow_wordpiece_continuations(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path
) -> None:
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, whole_word_mask=True, cache_dir=str(cache_dir))
    blocks = build_blocks(config, tiny_tokenizer, seed=0)
    ids, starts = blocks.train[:]["input_ids"], blocks.train[:]["word_starts"].bool()
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids[0, 1:-1].tolist())
    for token, start in zip(tokens, starts[0, 1:-1].tolist(), strict=True):
        assert start == (not token.startswith("##"))


def test_a_corpus_smaller_than_two_blocks_is_refused(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path
) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("kaunting teksto lamang\n")
    with pytest.raises(MonodistillError, match="fewer than two blocks"):
        build_blocks(DataConfig(corpus=str(path), max_seq_length=64, cache_dir=str(cache_dir)), tiny_tokenizer, 0)
