"""``monodistill export`` of a causal student: one ONNX graph with its key-value cache, whose greedy generation
is PyTorch's token for token; a family whose cache does not trace is exported without it, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from monodistill import cli
from monodistill.cli import main
from monodistill.recipe import save_student

from .conftest import build_tiny_decoder, decoder_tokenizer

ort = pytest.importorskip("onnxruntime", reason="export tests need the export extra: pip install '.[export]'")
pytest.importorskip("onnx", reason="export tests need the export extra: pip install '.[export]'")

Tokenizers = dict[str, PreTrainedTokenizerFast]
TOLERANCE = 1e-4
PROMPT = "ang bahay ng mga bata"
NEW_TOKENS = 6


def saved_student(family: str, tokenizers: Tokenizers, folder: Path) -> Path:
    """A tiny decoder of ``family`` saved as distillation saves a student (``save_student``)."""
    tokenizer = decoder_tokenizer(family, tokenizers)
    save_student(folder / family, build_tiny_decoder(family, tokenizer), tokenizer, "card\n")
    return folder / family


def pytorch_greedy(model_dir: Path, ids: list[int]) -> list[int]:
    """Greedy next tokens, each from one forward of the whole sequence (no cache)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokens = list(ids)
    with torch.inference_mode():
        for _ in range(NEW_TOKENS):
            tokens.append(int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(ids) :]


def onnx_greedy_with_cache(path: Path, ids: list[int]) -> list[int]:
    """Greedy next tokens through the graph's cache: the prompt with an empty past, then one token a step."""
    session = ort.InferenceSession(str(path))
    inputs = {item.name: item for item in session.get_inputs()}
    outputs = [item.name for item in session.get_outputs()]
    past = {
        name: np.zeros((1, item.shape[1], 0, item.shape[3]), dtype=np.float32)
        for name, item in inputs.items()
        if name.startswith("past_key_values.")
    }
    step, total, new = np.array([ids], dtype=np.int64), len(ids), []
    for _ in range(NEW_TOKENS):
        feed = {"input_ids": step, "attention_mask": np.ones((1, total), dtype=np.int64), **past}
        feed["position_ids"] = np.arange(total - step.shape[1], total, dtype=np.int64)[None]
        results = dict(zip(outputs, session.run(outputs, {k: v for k, v in feed.items() if k in inputs}), strict=True))
        new.append(int(results["logits"][0, -1].argmax()))
        past = {
            name.replace("present", "past_key_values"): value for name, value in results.items() if "present" in name
        }
        step, total = np.array([[new[-1]]], dtype=np.int64), total + 1
    return new


@pytest.mark.parametrize("family", ["llama", "gpt2", "bloom"])
def test_a_decoder_exports_with_its_cache_and_generates_as_pytorch(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    student = saved_student(family, decoder_tokenizers, tmp_path)
    capsys.readouterr()
    path = cli.export(model=str(student), output=str(tmp_path / "onnx"), quantize="int8")
    record = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert record["kv_cache"] is True and record["max_abs_logit_difference_with_past"] < TOLERANCE
    assert record["max_abs_logit_difference"] < TOLERANCE and "past_key_values.0.key" in record["inputs"]
    printed = capsys.readouterr().out
    assert "key-value cache in the graph: past_key_values.N.key/value in, present.N.key/value out (4 layers)" in printed
    ids = AutoTokenizer.from_pretrained(student)(PROMPT)["input_ids"]
    assert onnx_greedy_with_cache(tmp_path / "onnx" / "model.onnx", ids) == pytorch_greedy(student, ids)
    assert path.name == "model.int8.onnx" and record["int8_max_abs_logit_difference"] < 1.0
    int8_tokens = onnx_greedy_with_cache(path, ids)  # runs with the same inputs and outputs
    assert len(int8_tokens) == NEW_TOKENS
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert (tmp_path / "onnx" / name).is_file()


def test_a_family_whose_cache_does_not_trace_is_exported_without_it_and_says_why(
    decoder_tokenizers: Tokenizers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Gemma-2's cache (sliding-window layers, a logit cap) fails the parity check of a step with a past: the graph
    is the plain one, still checked on the padded sample batch."""
    student = saved_student("gemma2", decoder_tokenizers, tmp_path)
    capsys.readouterr()
    cli.export(model=str(student), output=str(tmp_path / "onnx"))
    record = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert record["kv_cache"] is False and record["kv_cache_refused"].startswith("the graph with a key-value cache")
    assert record["inputs"] == ["input_ids", "attention_mask"] and record["max_abs_logit_difference"] < TOLERANCE
    assert "no key-value cache: the graph with a key-value cache failed (" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    ids = AutoTokenizer.from_pretrained(student)(PROMPT)["input_ids"]
    tokens = list(ids)
    for _ in range(NEW_TOKENS):
        feed = {"input_ids": np.array([tokens]), "attention_mask": np.ones((1, len(tokens)), dtype=np.int64)}
        tokens.append(int(session.run(["logits"], feed)[0][0, -1].argmax()))
    assert tokens[len(ids) :] == pytorch_greedy(student, ids)


def test_a_graph_onnx_runtime_cannot_run_is_refused_in_one_line(
    decoder_tokenizers: Tokenizers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cohere's interleaved rotary positions trace into shapes that ONNX Runtime refuses, with or without a cache."""
    student = saved_student("cohere", decoder_tokenizers, tmp_path)
    capsys.readouterr()
    assert main(["export", str(student), "--output", str(tmp_path / "onnx")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "the ONNX graph of CohereForCausalLM does not run in ONNX Runtime" in errors[0]
    assert not (tmp_path / "onnx").exists()


def test_a_tokenizer_without_padding_exports_and_is_saved_as_it_was(
    decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """Llama's tokenizer has no padding token: the sample batch pads with EOS on a copy; the saved one has none."""
    source = decoder_tokenizer("llama", decoder_tokenizers)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=source.backend_tokenizer, eos_token=source.eos_token, bos_token=source.bos_token
    )
    student = tmp_path / "student"
    save_student(student, build_tiny_decoder("llama", source), tokenizer, "card\n")
    cli.export(model=str(student), output=str(tmp_path / "onnx"))
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["kv_cache"] is True
    assert AutoTokenizer.from_pretrained(tmp_path / "onnx").pad_token is None
