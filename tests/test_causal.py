"""Distilling a causal student from a decoder teacher: the objective, its batches, chunked logits, refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from monodistill.cli import main

from .conftest import decoder_tokenizer, save_decoder, save_teacher
from .test_distill import args, weights

STUDENT = ("student.num_layers=2", "student.hidden_size=16", "student.intermediate_size=32", "student.num_heads=2")
SHORT = ("data.max_seq_length=16", "train.batch_size=4", "train.eval_interval=2", "data.max_validation_blocks=4")


@pytest.fixture(scope="module")
def llama_teacher(
    tmp_path_factory: pytest.TempPathFactory, decoder_tokenizers: dict[str, PreTrainedTokenizerFast]
) -> Path:
    folder = tmp_path_factory.mktemp("decoder") / "llama"
    return save_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers), folder)


def distil(teacher: Path, corpus: Path, run: Path, cache: Path, steps: int, *extra: str) -> list[dict[str, float]]:
    assert main(args(teacher, corpus, run, cache, steps, *STUDENT, *SHORT, *extra)) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.smoke
def test_a_causal_student_distils_from_a_decoder_teacher_and_generates(
    llama_teacher: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    metrics = distil(llama_teacher, corpus_file, tmp_path / "run", cache_dir, 4)
    train = [record for record in metrics if record["split"] == "train"]
    assert {"kl", "mlm", "loss"} <= set(train[-1])
    validation = [record for record in metrics if record["split"] == "validation"]
    assert validation and all(0 < record["kl_to_teacher"] < 20 for record in validation)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student")
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 16
    assert student.config.num_key_value_heads == 1  # the teacher's 4 query heads per 2 key-value heads, halved
    generated = student.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 7)


def test_logits_a_chunk_at_a_time_train_the_student_the_whole_batch_trains(
    llama_teacher: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """4 blocks of 16 tokens score 60 next tokens a step: at train.logit_chunk=7 each step's logits are computed in
    9 chunks, the student's recomputed in the backward pass; the student equals the one of whole batches (float
    rounding: the sums add in another order)."""
    distil(llama_teacher, corpus_file, tmp_path / "whole", cache_dir, 3)
    distil(llama_teacher, corpus_file, tmp_path / "chunked", cache_dir, 3, "train.logit_chunk=7")
    whole, chunked = weights(tmp_path / "whole"), weights(tmp_path / "chunked")
    for key in whole:
        assert torch.allclose(whole[key], chunked[key], rtol=1e-4, atol=1e-6), key


def test_the_from_scratch_control_never_runs_the_teacher_for_its_loss(
    llama_teacher: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """loss.alpha_kl=0: the same student trained on the same tokens by its own next-token loss alone (Goldfish's
    recipe): no KL part, and the teacher's logits are read only by validation."""
    metrics = distil(
        llama_teacher, corpus_file, tmp_path / "control", cache_dir, 2, "loss.alpha_kl=0", "loss.alpha_mlm=1"
    )
    train = [record for record in metrics if record["split"] == "train"]
    assert "kl" not in train[-1] and train[-1]["loss"] == pytest.approx(train[-1]["mlm"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("objective=masked",), "objective: masked, but teacher .* is a causal language model"),
        (("data.whole_word_mask=true",), "data.whole_word_mask masks whole words for the masked objective"),
        (("student.family=bert",), "student.family=bert is a masked language model"),
    ],
)
def test_settings_of_the_other_objective_are_refused_in_one_line(
    overrides: tuple[str, ...],
    message: str,
    llama_teacher: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(args(llama_teacher, corpus_file, tmp_path / "run", cache_dir, 2, *STUDENT, *SHORT, *overrides)) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and re.search(message, error[0]), error
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_causal_objective_with_a_masked_teacher_is_refused(
    tiny_tokenizer: PreTrainedTokenizerFast,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "bert")
    assert main(args(teacher, corpus_file, tmp_path / "run", cache_dir, 2, *STUDENT, *SHORT, "objective=causal")) != 0
    assert "a causal language model (a decoder) as teacher" in capsys.readouterr().err


def test_a_decoder_tokenizer_without_eos_is_refused_before_packing(
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast],
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tokenizer = decoder_tokenizer("llama", decoder_tokenizers)
    teacher = save_decoder("llama", tokenizer, tmp_path / "teacher")
    settings = json.loads((teacher / "tokenizer_config.json").read_text())
    settings["eos_token"] = None
    (teacher / "tokenizer_config.json").write_text(json.dumps(settings))
    assert main(args(teacher, corpus_file, tmp_path / "run", cache_dir, 2, *STUDENT, *SHORT)) != 0
    assert "no EOS token to end each document with" in capsys.readouterr().err


@pytest.mark.parametrize("logit_loss", ["reverse_kl", "jsd"])
def test_the_fields_other_divergences_distil_a_causal_student(
    logit_loss: str, llama_teacher: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """MiniLLM's reverse KL and GKD's JSD as the logit term, logged under their names, at every next token."""
    metrics = distil(llama_teacher, corpus_file, tmp_path / "run", cache_dir, 2, f"loss.logit_loss={logit_loss}")
    train = [record for record in metrics if record["split"] == "train"]
    assert train[-1][logit_loss] > 0 and "kl" not in train[-1]
