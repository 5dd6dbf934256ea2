"""``monodistill inspect``: teachers compared on a corpus, every figure checked against its definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerFast

from monodistill import inspection
from monodistill.cli import main
from monodistill.config import DataConfig, TrainConfig
from monodistill.data.batches import BatchStream, MaskedBatch, Masking
from monodistill.data.blocks import build_blocks
from monodistill.distill.teacher_pass import TeacherOutputs, TeacherPass
from monodistill.evaluate.summary import encoder_counts
from monodistill.losses import Needs
from monodistill.vocab import trim_vocabulary

from .conftest import build_tiny_teacher, decoder_tokenizer, save_decoder, save_teacher


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
    assert "| teacher parameters (the encoder with its embeddings, heads aside), full -> trimmed |" in printed
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


def test_inspect_masks_the_held_out_blocks_as_distillations_validation_does(
    tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random replacements come from the embedding's rows (as in distillation), not from the tokenizer's length:
    here the embedding has three times as many rows as the tokenizer has tokens (padded, as many models are)."""
    monkeypatch.setenv("MONODISTILL_CACHE", str(tmp_path / "cache"))
    rows = 3 * len(tiny_tokenizer)
    model = build_tiny_teacher("bert", rows, tiny_tokenizer.pad_token_id)
    model.save_pretrained(tmp_path / "padded")
    tiny_tokenizer.save_pretrained(tmp_path / "padded")
    seen: list[torch.Tensor] = []

    class Recording(TeacherPass):
        def __call__(self, batch: MaskedBatch, needs: Needs) -> TeacherOutputs:
            seen.append(batch.input_ids.clone())
            return super().__call__(batch, needs)

    monkeypatch.setattr(inspection, "TeacherPass", Recording)
    (result,) = inspection.inspect_teachers([str(tmp_path / "padded")], str(corpus_file), sample_blocks=4)

    # What the distillation of this teacher validates on: its blocks, masked over the teacher's vocab_size.
    data = DataConfig(corpus=str(corpus_file), max_seq_length=64, validation_fraction=0.1, max_validation_blocks=4)
    special_ids = torch.tensor(sorted(set(tiny_tokenizer.all_special_ids)))
    masking = Masking(special_ids, tiny_tokenizer.mask_token_id, model.config.vocab_size, data.mlm_probability)
    stream = BatchStream(build_blocks(data, tiny_tokenizer, seed=42), masking, TrainConfig(batch_size=16, seed=42))
    validation = stream.validation()
    assert len(seen) == len(validation) and result.masked_tokens == sum(len(b.targets) for b in validation)
    for inspected, validated in zip(seen, validation, strict=True):
        assert torch.equal(inspected, validated.input_ids)
    assert max(int(batch.max()) for batch in seen) >= len(tiny_tokenizer)  # a replacement past the tokenizer


def test_inspect_refuses_held_out_blocks_with_nothing_to_mask_in_one_line(
    tiny_teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero-width spaces are words to str.split but no piece to the tokenizer: every block is [CLS] [SEP] ..."""
    monkeypatch.setenv("MONODISTILL_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n".join(["\u200b \u200b"] * 2000) + "\n")
    argv = ["inspect", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus), "--output", str(tmp_path / "out")]
    assert main([*argv, "--sample-blocks", "4"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nothing to mask" in error, error
    assert not (tmp_path / "out" / "inspect.json").exists()


@pytest.fixture
def two_decoders(
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[Path]:
    """A Llama with a byte-level BPE and a Gemma-2 with a byte-fallback one: two vocabularies."""
    monkeypatch.setenv("MONODISTILL_CACHE", str(tmp_path / "cache"))
    return [
        save_decoder(family, decoder_tokenizer(family, decoder_tokenizers), tmp_path / family)
        for family in ("llama", "gemma2")
    ]


def next_token_reference(teacher: Path, corpus: Path) -> tuple[float, int, int]:
    """The summed next-token cross-entropy (nats) of the held-out blocks with the whole logits at once, the tokens
    scored, and the UTF-8 bytes their text decodes to, counted as the module docstring says."""
    model = AutoModelForCausalLM.from_pretrained(teacher).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    data = DataConfig(corpus=str(corpus), max_seq_length=64, validation_fraction=0.1, max_validation_blocks=4)
    ids = build_blocks(data, tokenizer, seed=0, objective="causal").validation[:]["input_ids"]  # (B, T)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[:, :-1]  # (B, T - 1, V): every position but the last
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
    decoded = [tokenizer.decode(row[1:], skip_special_tokens=True, clean_up_tokenization_spaces=False) for row in ids]
    return float(loss), ids[:, 1:].numel(), sum(len(text.encode("utf-8")) for text in decoded)


def test_inspect_scores_a_decoder_by_next_token_loss_and_bits_per_byte(
    two_decoders: list[Path], corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inspect"
    argv = ["inspect", "--corpus", str(corpus_file), "--output", str(out), "--sample-blocks", "4"]
    assert main([*argv, "--teacher", str(two_decoders[0]), "--teacher", str(two_decoders[1])]) == 0
    printed = capsys.readouterr().out
    assert "| bits per byte |" in printed and "| next-token loss (nats per token) |" in printed
    assert "masked-token accuracy" not in printed  # no encoder inspected: no masked rows
    assert (
        "| teacher parameters (the decoder with its embeddings, an untied LM head aside), full -> trimmed |" in printed
    )
    assert "the encoder with its embeddings" not in printed
    record = json.loads((out / "inspect.json").read_text())
    for teacher, result in zip(two_decoders, record["teachers"], strict=True):
        assert result["objective"] == "causal" and result["masked_token_accuracy"] is None
        loss, tokens, text_bytes = next_token_reference(teacher, corpus_file)
        assert (result["next_tokens"], result["next_token_bytes"]) == (tokens, text_bytes)
        assert result["next_token_loss"] == pytest.approx(loss / tokens, rel=1e-4)
        assert result["bits_per_byte"] == pytest.approx(loss / math.log(2) / text_bytes, rel=1e-4)
        # An untrained decoder: about as perplexed as a uniform guess over its vocabulary.
        assert 0.5 * result["vocabulary"] < result["next_token_perplexity"] < 2 * result["vocabulary"]
        tokenizer = AutoTokenizer.from_pretrained(teacher)
        kept = trim_vocabulary(tokenizer, corpus_file.read_text().splitlines(), None, None, 1).kept_ids
        assert result["trimmed_vocabulary"] == len(kept) < result["vocabulary"]
        model = AutoModelForCausalLM.from_pretrained(teacher)
        assert result["parameters"]["teacher"]["full"] == encoder_counts(model)["total"]
    best = min(record["teachers"], key=lambda teacher: teacher["bits_per_byte"])
    assert printed.count("recommended teacher: ") == 1 and f"recommended teacher: {best['teacher']} (" in printed
    assert f"{best['bits_per_byte']:.3f} bits per byte on 4 held-out blocks" in printed


def test_a_decoders_logits_a_chunk_at_a_time_score_as_the_whole(
    two_decoders: list[Path], corpus_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (whole,) = inspection.inspect_teachers([str(two_decoders[0])], str(corpus_file), sample_blocks=4)
    monkeypatch.setattr(inspection, "LOGIT_CHUNK", 7)
    (chunked,) = inspection.inspect_teachers([str(two_decoders[0])], str(corpus_file), sample_blocks=4)
    assert chunked.next_token_loss == pytest.approx(whole.next_token_loss, rel=1e-6)


def test_an_encoder_and_a_decoder_are_each_recommended_on_their_own_score(
    two_decoders: list[Path], tiny_teacher_dir: Path, corpus_file: Path
) -> None:
    results = inspection.inspect_teachers([str(tiny_teacher_dir), str(two_decoders[0])], str(corpus_file), 4)
    assert [result.objective for result in results] == ["masked", "causal"]
    lines = inspection.recommendation(results).splitlines()
    assert lines[0].startswith(f"recommended encoder teacher: {tiny_teacher_dir} (masked-token accuracy ")
    assert lines[1].startswith(f"recommended decoder teacher: {two_decoders[0]} (") and "bits per byte" in lines[1]
    table = inspection.format_inspection(results)
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert rows["| bits per byte"].startswith("| bits per byte | - | ")  # the encoder has no bits per byte here
    assert rows["| masked-token accuracy"].endswith(" | - |")  # nor the decoder a masked-token accuracy
    both = "the encoder with its embeddings, heads aside / the decoder with its embeddings, an untied LM head aside"
    assert f"| teacher parameters ({both}), full -> trimmed" in rows
