"""What an evaluation summary records beside the scores: the constant-prediction floor of each task, one
parameter count per model (the encoder with its embeddings) and the dtype its weight files are stored in."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, PreTrainedTokenizerFast

from monodistill.evaluate.summary import (
    DECODER_COUNTED,
    ENCODER_COUNTED,
    constant_prediction,
    counted_as,
    encoder_parameter_counts,
    parameter_counts_of,
    summarise,
    weights_dtype,
)
from monodistill.evaluate.tables import format_summary
from monodistill.evaluate.tasks import Task

from ..conftest import decoder_tokenizer, save_decoder
from ..report_fixtures import task_result

NER_LABELS = ["O", "B-PER", "I-PER"]


def test_the_constant_prediction_is_the_most_frequent_test_label_everywhere() -> None:
    rows = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [0, 1, 1, 1]})
    scores = constant_prediction(Task("t", "classification", ["neg", "pos"], "accuracy", rows, rows))
    assert scores["label"] == "pos" and scores["accuracy"] == 0.75

    tags = datasets.Dataset.from_dict({"tokens": [["a", "b", "c"], ["d"]], "tags": [[0, 1, 2], [0]]})
    ner = constant_prediction(Task("ner", "token-classification", NER_LABELS, "entity-f1", tags, tags))
    assert ner["label"] == "O" and ner["entity_f1"] == 0.0 and ner["accuracy"] == 0.5  # "O" finds no entity
    tags = datasets.Dataset.from_dict({"tokens": [["a", "b", "c"], ["d"]], "tags": [[1, 0, 1], [0]]})
    pos = constant_prediction(Task("pos", "token-classification", ["NOUN", "VERB"], "accuracy", tags, tags))
    assert pos["label"] == "VERB" and pos["accuracy"] == 0.5  # a tie goes to the first seen


def test_parameters_are_counted_on_the_encoder_with_its_embeddings(tiny_teacher_dir: Path) -> None:
    encoder = AutoModel.from_pretrained(tiny_teacher_dir)
    expected = sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith("pooler."))
    counts = encoder_parameter_counts(str(tiny_teacher_dir))
    assert counts is not None and counts["total"] == expected
    assert counts["embedding"] == encoder.get_input_embeddings().weight.numel()
    assert counts["non_embedding"] == expected - counts["embedding"]
    masked_lm = sum(p.numel() for p in AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir).parameters())
    assert masked_lm > expected  # its head is left out
    assert encoder_parameter_counts("no/such/model") is None


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_a_decoder_is_counted_with_its_embeddings_and_an_untied_head_aside(
    family: str, decoder_tokenizers: dict[str, PreTrainedTokenizerFast], tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    """Qwen2's head is its embeddings (tied: counted once, as them); Llama's is a matrix of its own, left out."""
    path = save_decoder(family, decoder_tokenizer(family, decoder_tokenizers), tmp_path / family)
    model = AutoModelForCausalLM.from_pretrained(path)
    counts = encoder_parameter_counts(str(path))
    untied = 0 if model.config.tie_word_embeddings else model.lm_head.weight.numel()
    assert counts is not None and counts["total"] == sum(p.numel() for p in model.parameters()) - untied
    assert counts["embedding"] == model.get_input_embeddings().weight.numel()
    assert counted_as(model) == counted_as(model.config) == counted_as(family) == DECODER_COUNTED
    assert DECODER_COUNTED == "the decoder with its embeddings, an untied LM head aside"
    assert counted_as(AutoConfig.from_pretrained(tiny_teacher_dir)) == counted_as("bert") == ENCODER_COUNTED
    # The summary says what it counted, model by model; an evaluation of both kinds says both.
    summary = summarise([tmp_path / "d", tmp_path / "e"], [str(path), str(tiny_teacher_dir)], ["d", "e"], [], [42])
    assert [parameter_counts_of(entry)[1] for entry in summary["models"].values()] == [DECODER_COUNTED, ENCODER_COUNTED]
    assert f"Size (parameters: {DECODER_COUNTED} / {ENCODER_COUNTED};" in format_summary(summary)


def test_the_weights_dtype_is_read_from_the_files(
    tiny_teacher_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    assert weights_dtype(str(tiny_teacher_dir)) == "float32"
    model = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir, dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    assert weights_dtype(str(tmp_path / "bf16")) == "bfloat16"
    assert weights_dtype("someone/hub-model") is None


def test_scores_say_how_many_seeds_they_average() -> None:
    summary = {
        "baseline": "teacher",
        "tasks": ["t"],
        "models": {
            "teacher": {"parameters": {"total": 2, "non_embedding": 1}, "disk_mb": None, "tasks": {"t": {}}},
        },
    }
    summary["models"]["teacher"]["tasks"]["t"] = task_result(0.7, 1.0, seeds=1)
    table = format_summary(summary)
    assert "| teacher | 70.00 (1) |" in table and "±" not in table and "n = 1" in table
    summary["models"]["teacher"]["tasks"]["t"] = task_result(0.7, 1.0, seeds=2)
    assert "| teacher | 70.00 ± 1.00 (1) |" in (table := format_summary(summary)) and "n = 2" in table
