"""Packing into full blocks, the held-out split, and the on-disk cache."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from monodistill.config import DataConfig
from monodistill.data import blocks as blocks_module
from monodistill.data.blocks import build_blocks, frame_blocks, pack_token_stream
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
    assert train.dtype == torch.int64  # stored as int32, served as the int64 embeddings expect
    validation_rows = {tuple(row.tolist()) for row in blocks.validation[:]["input_ids"]}
    assert not validation_rows & {tuple(row.tolist()) for row in train}


def test_data_fraction_keeps_a_seeded_share_of_training_blocks_and_the_same_validation(
    corpus_file: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir))
    half = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir), data_fraction=0.5)
    everything = build_blocks(whole, tiny_tokenizer, seed=0)
    monkeypatch.setattr(blocks_module, "load_corpus", lambda *a: pytest.fail("one cache entry serves every fraction"))
    rows = lambda blocks: [tuple(row.tolist()) for row in blocks[:]["input_ids"]]
    halves = {seed: build_blocks(half, tiny_tokenizer, seed=seed) for seed in (0, 1)}
    assert len(halves[0].train) == round(len(everything.train) / 2)
    assert rows(halves[0].train) == rows(build_blocks(half, tiny_tokenizer, seed=0).train)  # deterministic
    assert rows(halves[0].train) != rows(halves[1].train)
    assert set(rows(halves[0].train)) <= set(rows(everything.train))
    # Validation does not depend on the fraction or the seed: every student is scored on the same blocks.
    assert rows(halves[0].validation) == rows(halves[1].validation) == rows(everything.validation)


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


def corpus_stream(corpus_file: Path, tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Every document's tokens followed by [SEP], in corpus order: what the blocks are cut from."""
    lines = corpus_file.read_text().splitlines()
    encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]
    return [token for ids in encoded for token in [*ids, tokenizer.sep_token_id]]


def test_packing_drops_only_the_final_remainder(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 7 documents: remainders at 57 batch edges would be lost if they were not carried over.
    monkeypatch.setattr(blocks_module, "PACK_BATCH_SIZE", 7)
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir))
    blocks = build_blocks(config, tiny_tokenizer, seed=0)
    stream = corpus_stream(corpus_file, tiny_tokenizer)
    bodies = torch.cat([blocks.train[:]["input_ids"], blocks.validation[:]["input_ids"]])[:, 1:-1]
    assert len(bodies) == len(stream) // 30 and len(stream) % 30 > 0  # only the last partial block is lost
    expected = sorted(tuple(stream[start : start + 30]) for start in range(0, len(stream) // 30 * 30, 30))
    assert sorted(tuple(row) for row in bodies.tolist()) == expected


def test_num_proc_does_not_change_the_blocks(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    built = [
        build_blocks(
            DataConfig(
                corpus=str(corpus_file),
                max_seq_length=32,
                whole_word_mask=True,
                num_proc=num_proc,
                cache_dir=str(tmp_path / f"cache-{num_proc}"),
            ),
            tiny_tokenizer,
            seed=0,
        )
        for num_proc in (1, 2)
    ]
    assert built[0].cache_path.name == built[1].cache_path.name  # one key: num_proc is not part of it
    for column in ("input_ids", "word_starts"):
        for split in ("train", "validation"):
            one, two = (getattr(blocks, split)[:][column] for blocks in built)
            assert torch.equal(one, two)


@pytest.mark.parametrize("batch_sizes", [[5, 0, 3, 12, 1], [30], [2, 2, 2]])
def test_pack_token_stream_carries_remainders_across_batches(batch_sizes: list[int]) -> None:
    tokens = np.arange(sum(batch_sizes))
    edges = np.cumsum([0, *batch_sizes])
    batches = [{"input_ids": tokens[a:b], "word_starts": tokens[a:b] % 2} for a, b in itertools.pairwise(edges)]
    packed = list(pack_token_stream(batches, body_length=4))
    ids = np.concatenate([block["input_ids"] for block in packed]) if packed else np.empty((0, 4))
    usable = len(tokens) // 4 * 4
    assert np.array_equal(ids.ravel(), tokens[:usable])
    assert all(np.array_equal(block["word_starts"], block["input_ids"] % 2) for block in packed)


def test_frame_blocks_keeps_dtype() -> None:
    framed = frame_blocks(np.array([[7, 8], [9, 10]], dtype=np.int32), first=1, last=2)
    assert framed.dtype == np.int32
    assert framed.tolist() == [[1, 7, 8, 2], [1, 9, 10, 2]]


def test_the_tokenizer_fingerprint_ignores_padding_and_truncation_state(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    from monodistill.data.blocks import tokenizer_fingerprint

    before = tokenizer_fingerprint(tiny_tokenizer)
    tiny_tokenizer(["ka ma ta", "pa"], padding=True, truncation=True, max_length=4)  # sets backend state
    assert tokenizer_fingerprint(tiny_tokenizer) == before
