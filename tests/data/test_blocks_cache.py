"""The blocks cache shared by ranks and by runs: built once, never replaced under a reader, self-healing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from monodistill.config import DataConfig
from monodistill.data import blocks as blocks_module
from monodistill.data.blocks import STAGING, blocks_cache_key, build_blocks
from monodistill.errors import MonodistillError

from ..conftest import make_lines

WORKER = Path(__file__).with_name("blocks_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
BUILD_LINE = "building blocks cache"


def worker_env(tmp_path: Path) -> dict[str, str]:
    # One thread per process: two processes share the test machine's cores.
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf"),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }


def saved_tokenizer(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> Path:
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    return tmp_path / "tokenizer"


def reports(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def entries(cache_dir: Path) -> list[Path]:
    return sorted(path for path in (cache_dir / "blocks").iterdir() if path.is_dir())


@pytest.mark.slow
def test_two_ranks_build_once_and_read_the_same_blocks(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, cache_dir: Path
) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    tokenizer_dir = saved_tokenizer(tiny_tokenizer, tmp_path)
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(corpus_file),
        str(tokenizer_dir),
        str(cache_dir),
    ]
    result = subprocess.run(command, env=worker_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    by_rank = {report["rank"]: report for report in reports(result.stdout)}
    assert sorted(by_rank) == [0, 1]
    # One rank (whichever took the entry's lock first) built; the other waited on the lock, not in a
    # collective, then read what was built.
    assert sorted(report["built"] for report in by_rank.values()) == [False, True]
    assert (by_rank[0]["train"], by_rank[0]["validation"]) == (by_rank[1]["train"], by_rank[1]["validation"])
    assert result.stdout.count(BUILD_LINE) == 1
    assert len(entries(cache_dir)) == 1 and STAGING not in entries(cache_dir)[0].name
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_independent_runs_sharing_a_cache_build_once(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, cache_dir: Path
) -> None:
    tokenizer_dir = saved_tokenizer(tiny_tokenizer, tmp_path)
    command = [sys.executable, str(WORKER), str(corpus_file), str(tokenizer_dir), str(cache_dir)]
    runs = [
        subprocess.Popen(command, env=worker_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    first, second = (reports(stdout)[0] for stdout, _ in outputs)
    assert sorted([first["built"], second["built"]]) == [False, True]  # the lock let one build, then the other read
    assert (first["train"], first["validation"]) == (second["train"], second["validation"])
    assert len(entries(cache_dir)) == 1 and STAGING not in entries(cache_dir)[0].name


def truncate_train(entry: Path) -> str:
    arrow = next((entry / "train").glob("*.arrow"))
    with arrow.open("r+b") as file:
        file.truncate(arrow.stat().st_size // 2)
    return "train/data-00000-of-00001.arrow has"


def scramble_train(entry: Path) -> str:
    # Same size: the checksum in the manifest catches it before Arrow would.
    arrow = next((entry / "train").glob("*.arrow"))
    with arrow.open("r+b") as file:
        file.write(bytes(64))
    return f"train/{arrow.name} does not match its checksum"


def flip_one_token(entry: Path) -> str:
    # One byte in the middle of the data, same size: Arrow would read it, and train on a wrong token.
    arrow = next((entry / "train").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrow.write_bytes(bytes(data))
    return f"train/{arrow.name} does not match its checksum"


def delete_validation(entry: Path) -> str:
    for file in (entry / "validation").iterdir():
        file.unlink()
    (entry / "validation").rmdir()
    return "validation/data-00000-of-00001.arrow is missing"


@pytest.mark.parametrize("damage", [truncate_train, scramble_train, flip_one_token, delete_validation])
def test_a_damaged_entry_is_rebuilt_with_one_line(
    damage: object,
    corpus_file: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir))
    first = build_blocks(config, tiny_tokenizer, seed=0)
    expected = first.train[:]["input_ids"], first.validation[:]["input_ids"]
    assert callable(damage)
    reason = damage(first.cache_path)
    capsys.readouterr()
    again = build_blocks(config, tiny_tokenizer, seed=0)
    lines = capsys.readouterr().out.splitlines()
    damaged = [line for line in lines if "is damaged" in line]
    assert len(damaged) == 1 and damaged[0].startswith(f"blocks cache {first.cache_path} is damaged (")
    assert reason in damaged[0] and damaged[0].endswith("); rebuilding")
    assert sum(BUILD_LINE in line for line in lines) == 1
    assert torch.equal(again.train[:]["input_ids"], expected[0])
    assert torch.equal(again.validation[:]["input_ids"], expected[1])
    assert entries(cache_dir) == [first.cache_path]  # the damaged copy is gone, no staging left behind


def test_a_killed_build_leaves_nothing_that_is_read(
    corpus_file: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DataConfig(corpus=str(corpus_file), max_seq_length=32, cache_dir=str(cache_dir))
    save_to_disk = blocks_module.datasets.Dataset.save_to_disk

    def die_on_train(self: object, path: str, *args: object, **kwargs: object) -> None:
        if path.endswith("train"):
            raise KeyboardInterrupt  # as if the run were stopped halfway through writing the entry
        save_to_disk(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(blocks_module.datasets.Dataset, "save_to_disk", die_on_train)
    with pytest.raises(KeyboardInterrupt):
        build_blocks(config, tiny_tokenizer, seed=0)
    assert entries(cache_dir) == []  # the staging folder went with the failed build
    monkeypatch.undo()
    # A run killed outright (SIGKILL) cannot clean up: its staging folder is swept by the next build.
    path = cache_dir / "blocks" / blocks_cache_key(config, tiny_tokenizer)
    (path.with_name(f"{path.name}{STAGING}12345-deadbeef") / "train").mkdir(parents=True)
    blocks = build_blocks(config, tiny_tokenizer, seed=0)
    assert len(blocks.train) > 0 and entries(cache_dir) == [path]


# --- the key holds everything that changes the blocks ---


def test_blocks_built_skipping_bad_documents_are_not_reused_by_a_run_that_refuses_them(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path
) -> None:
    path = tmp_path / "corpus.jsonl"
    documents = [json.dumps({"text": line} if n % 40 else {"body": line}) for n, line in enumerate(make_lines(200))]
    path.write_text("\n".join(documents) + "\n")  # 5 of 200 documents without "text"
    skipping = DataConfig(corpus=str(path), max_seq_length=32, skip_bad_documents=True, cache_dir=str(cache_dir))
    assert len(build_blocks(skipping, tiny_tokenizer, seed=0).train) > 0
    with pytest.raises(MonodistillError, match="5 of 200 documents lack it"):
        build_blocks(replace(skipping, skip_bad_documents=False), tiny_tokenizer, seed=0)


def test_every_data_setting_that_changes_the_blocks_is_in_the_key(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    base = DataConfig(corpus="someone/oscar-tl", max_documents=10)
    changed = {
        "hub_config": "tl",
        "split": "validation",
        "revision": "v2",
        "text_column": "content",
        "chat_column": "messages",
        "streaming": True,
        "max_documents": 11,
        "max_seq_length": 64,
        "validation_fraction": 0.2,
        "max_validation_blocks": 7,
        "whole_word_mask": True,
        "skip_bad_documents": True,
    }
    unchanged = {"data_fraction": 0.5, "mlm_probability": 0.3, "cache_dir": "/elsewhere", "num_proc": 4}
    unchanged |= {"language": "tl", "static_masks": True}
    named = {field.name for field in fields(DataConfig)}
    assert named == {"corpus", *changed, *unchanged}, "a new DataConfig field: say whether it changes the blocks"
    key = blocks_cache_key(base, tiny_tokenizer)
    for name, value in changed.items():
        assert blocks_cache_key(replace(base, **{name: value}), tiny_tokenizer) != key, name
    for name, value in unchanged.items():
        assert blocks_cache_key(replace(base, **{name: value}), tiny_tokenizer) == key, name


def test_a_corpus_rewritten_with_the_same_size_and_time_is_built_again(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, cache_dir: Path
) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_lines(200)) + "\n")
    config = DataConfig(corpus=str(path), max_seq_length=32, cache_dir=str(cache_dir))
    first = build_blocks(config, tiny_tokenizer, seed=0)
    stamp = path.stat()
    text = path.read_text()
    path.write_text(text.replace("ka", "ma"))  # same length, other text
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == stamp.st_size and path.stat().st_mtime_ns == stamp.st_mtime_ns
    again = build_blocks(config, tiny_tokenizer, seed=0)
    assert again.cache_path != first.cache_path
    assert not torch.equal(again.train[:]["input_ids"], first.train[:]["input_ids"])
