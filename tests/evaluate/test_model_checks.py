"""Every evaluated model is checked before anything trains: its files, its own tokenizer, weights that fit its
config; and a max_length beyond its positions is said, once per model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main

from ..conftest import build_tiny_teacher, save_teacher, write_keyword_task

SETTINGS = ["epochs=1", "max_length=16", "max_train_samples=16", "max_eval_samples=8"]


def evaluate(models: list[Path], tmp_path: Path, *settings: str, seeds: int = 1) -> list[str]:
    """``monodistill evaluate`` of ``models`` on the keyword task; returns its argument list."""
    argv = ["evaluate", "--task", str(write_keyword_task(tmp_path)), "--output", str(tmp_path / "out")]
    argv += ["--seeds", str(seeds)]
    for model in models:
        argv += ["--model", str(model)]
    return [*argv, *SETTINGS, *settings]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line error of a refused evaluation, after checking that nothing was fine-tuned."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "fine-tuning" not in captured.out
    assert "Traceback" not in captured.err and "LOAD REPORT" not in captured.err
    (line,) = [line for line in captured.err.splitlines() if line.startswith("monodistill evaluate: error: ")]
    return line


@pytest.fixture
def good(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> Path:
    """A sound model listed first: a later bad one must be refused before this one is fine-tuned."""
    return save_teacher("bert", tiny_tokenizer, tmp_path / "good")


def test_a_model_without_tokenizer_files_is_refused(
    good: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    build_tiny_teacher("bert", len(tiny_tokenizer), 0).save_pretrained(bare)
    error = refused(evaluate([good, bare], tmp_path), capsys)
    assert f"model folder {bare} holds no tokenizer files" in error and "copy the tokenizer" in error


def test_a_trimmed_tokenizer_beside_a_full_model_is_refused(
    good: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed"
    build_tiny_teacher("bert", len(tiny_tokenizer) + 5000, 0).save_pretrained(mixed)
    tiny_tokenizer.save_pretrained(mixed)
    error = refused(evaluate([good, mixed], tmp_path), capsys)
    assert f"{mixed}" in error and f"has {len(tiny_tokenizer)} tokens" in error


def test_a_config_that_disagrees_with_the_weights_is_refused_before_anything_trains(
    good: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = save_teacher("bert", tiny_tokenizer, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    config["vocab_size"] = len(tiny_tokenizer) + 10
    (edited / "config.json").write_text(json.dumps(config))
    error = refused(evaluate([good, edited], tmp_path), capsys)
    assert f"model {edited}: config.json" in error and f"vocab_size={len(tiny_tokenizer) + 10}" in error


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_model_folder_is_refused_before_anything_trains(
    damage: str,
    good: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damaged = save_teacher("bert", tiny_tokenizer, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.unlink()
    error = refused(evaluate([good, damaged], tmp_path), capsys)
    assert f"model folder {damaged} is damaged or incomplete" in error


def test_a_max_length_beyond_the_models_positions_is_said_once_per_model(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(evaluate([good], tmp_path, "max_length=100000", seeds=2)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "max_length=" in line]
    assert lines == [f"model {good}: max_length=100000 is beyond its 64 positions; using 64"]
    (result,) = (tmp_path / "out" / "results").glob("good-*/keyword/seed-43.json")
    assert json.loads(result.read_text())["max_length"] == 64
