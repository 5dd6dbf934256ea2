"""``monodistill inspect``: teachers compared on a corpus, every figure checked against its definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.evaluate.summary import encoder_counts
from monodistill.vocab import trim_vocabulary

from .conftest import save_teacher


@pytest.fixture
def two_teachers(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[Path]:
    monkeypatch.setenv("MONODISTILL_CACHE", str(tmp_path / "cache"))
    return [
        save_teacher("bert", tiny_tokenizer, tmp_path / "bert"),
        save_teacher("xlm-roberta", tiny_tokenizer, tmp_path / "xlmr"),
    ]


def test_inspect_measures_each_teacher_and_recommends_one(
    two_teachers: list[Path], corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inspect"
    argv = ["inspect", "--corpus", str(corpus_file), "--output", str(out), "--sample-blocks", "4"]
    assert main([*argv, "--teacher", str(two_teachers[0]), "--teacher", str(two_teachers[1])]) == 0
    printed = capsys.readouterr().out
    assert f"| | {two_teachers[0]} | {two_teachers[1]} |" in printed
    record = json.loads((out / "inspect.json").read_text())
    first, second = record["teachers"]
    assert printed.count("recommended teacher: ") == 1
    best = max(record["teachers"], key=lambda teacher: teacher["masked_token_accuracy"])
    assert f"recommended teacher: {best['teacher']} (" in printed

    lines = corpus_file.read_text().splitlines()
    tokenizer = AutoTokenizer.from_pretrained(two_teachers[0])
    pieces = sum(len(tokenizer(line, add_special_tokens=False)["input_ids"]) for line in lines)
    assert first["pieces_per_word"] == pytest.approx(pieces / sum(len(line.split()) for line in lines))
    assert first["byte_piece_rate"] is None and 0.0 <= first["unk_rate"] < 0.2
    kept = trim_vocabulary(tokenizer, lines, None, None, 1).kept_ids
    assert first["trimmed_vocabulary"] == len(kept) < first["vocabulary"]
    model = AutoModelForMaskedLM.from_pretrained(two_teachers[0])
    assert first["parameters"]["teacher"]["full"] == encoder_counts(model)["total"]
    embedding_width = model.get_input_embeddings().weight.shape[1]
    removed = (first["vocabulary"] - len(kept)) * embedding_width
    assert first["parameters"]["teacher"]["trimmed"] == first["parameters"]["teacher"]["full"] - removed
    assert first["parameters"]["dbert-tiny"]["full"] > first["parameters"]["dbert-tiny"]["trimmed"]
    # Held-out blocks, masked as validation masks them; the same blocks for both teachers (one tokenizer).
    assert 1 <= first["held_out_blocks"] <= 4 and first["masked_tokens"] == second["masked_tokens"] > 0
    for teacher in (first, second):
        assert 0.0 <= teacher["masked_token_accuracy"] <= 1.0
        # An untrained teacher: about as perplexed as a uniform guess over its vocabulary.
        assert 0.2 * teacher["vocabulary"] < teacher["masked_lm_perplexity"] < 5 * teacher["vocabulary"]
    assert first["masked_lm_perplexity"] != second["masked_lm_perplexity"]


def test_a_teacher_that_predicts_a_special_token_everywhere_scores_zero(
    two_teachers: list[Path], corpus_file: Path, tmp_path: Path
) -> None:
    """Special tokens are never masked, so they are never a target: accuracy exactly 0, perplexity about e^40."""
    model = AutoModelForMaskedLM.from_pretrained(two_teachers[0])
    tokenizer = AutoTokenizer.from_pretrained(two_teachers[0])
    with torch.no_grad():
        model.get_output_embeddings().bias[tokenizer.cls_token_id] = 40.0
    rigged = tmp_path / "rigged"
    model.save_pretrained(rigged)
    tokenizer.save_pretrained(rigged)
    out = tmp_path / "inspect"
    argv = ["inspect", "--teacher", str(rigged), "--corpus", str(corpus_file), "--output", str(out)]
    assert main([*argv, "--sample-blocks", "4"]) == 0
    (result,) = json.loads((out / "inspect.json").read_text())["teachers"]
    assert result["masked_token_accuracy"] == 0.0
    assert math.exp(35) < result["masked_lm_perplexity"] < math.exp(45)


def test_inspect_bad_input_is_one_line(corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--corpus", str(corpus_file)]) == 2
    assert "inspect needs at least one --teacher" in capsys.readouterr().err
    assert main(["inspect", "--teacher", str(tmp_path / "missing")]) == 2
    assert "inspect needs --corpus" in capsys.readouterr().err
    assert main(["inspect", "--teacher", str(tmp_path / "missing"), "--corpus", str(corpus_file)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "does not exist" in error
    argv = ["inspect", "--teacher", str(tmp_path), "--corpus", str(corpus_file), "--sample-blocks", "0"]
    assert main(argv) == 2
    assert "--sample-blocks must be >= 1" in capsys.readouterr().err
