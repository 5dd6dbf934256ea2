"""``monodistill export``: ONNX logits match PyTorch; the int8 model runs and keeps the output shape."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
)

from monodistill import checkpoint as ckpt
from monodistill import cli
from monodistill.cli import main
from monodistill.errors import MonodistillError
from monodistill.evaluate.harness import SAVED_MODEL_DIR

from .conftest import save_teacher, write_keyword_task

ort = pytest.importorskip("onnxruntime", reason="export tests need the export extra: pip install '.[export]'")
pytest.importorskip("onnx", reason="export tests need the export extra: pip install '.[export]'")

TOLERANCE = 1e-4
"""fp32 ONNX Runtime against PyTorch, largest absolute logit difference (measured: about 1e-8)."""
WORDS = ["magandang", "umaga", "sa", "inyong", "lahat", "isang", "maikling", "pangungusap", "!", "."]


def _tokenizer(folder: Path) -> BertTokenizerFast:
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def _tiny(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    model = BertForSequenceClassification(config) if kind == "classifier" else BertForMaskedLM(config)
    model.save_pretrained(folder)
    _tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["classifier", "student"])
def test_exported_logits_match_pytorch(tmp_path: Path, kind: str) -> None:
    model_dir = _tiny(kind, tmp_path / kind)
    path = cli.export(model=str(model_dir), output=str(tmp_path / "onnx"))
    assert path == tmp_path / "onnx" / "model.onnx"
    tokenizer = BertTokenizerFast.from_pretrained(model_dir)
    # Other batch size and lengths than the export's sample, with padding: the axes are dynamic.
    texts = ["magandang umaga", "isang maikling pangungusap sa inyong lahat lahat !", "umaga .", "sa"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    model_class = BertForSequenceClassification if kind == "classifier" else BertForMaskedLM
    with torch.inference_mode():
        expected = model_class.from_pretrained(model_dir).eval()(**batch).logits.numpy()
    session = ort.InferenceSession(str(path))
    got = session.run(["logits"], {name: tensor.numpy() for name, tensor in batch.items()})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < TOLERANCE
    record = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert record["max_abs_logit_difference"] < TOLERANCE
    assert (tmp_path / "onnx" / "tokenizer.json").is_file() and (tmp_path / "onnx" / "config.json").is_file()


def test_int8_model_runs(tmp_path: Path) -> None:
    model_dir = _tiny("classifier", tmp_path / "model")
    path = cli.export(model=str(model_dir), output=str(tmp_path / "onnx"), quantize="int8")
    assert path.name == "model.int8.onnx"
    assert path.stat().st_size < (tmp_path / "onnx" / "model.onnx").stat().st_size
    ids = np.array([[2, 5, 6, 3]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    logits = ort.InferenceSession(str(path)).run(["logits"], feed)[0]
    assert logits.shape == (1, 3) and np.isfinite(logits).all()
    assert "int8_max_abs_logit_difference" in json.loads((tmp_path / "onnx" / "export.json").read_text())


def test_export_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="no config.json"):
        cli.export(model=str(tmp_path), output=str(tmp_path / "onnx"))


def test_export_refuses_an_unknown_quantization(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="--quantize"):
        cli.export(model=str(tmp_path), output=str(tmp_path / "onnx"), quantize="int4")


def test_evaluate_keeps_the_fine_tuned_classifier_and_export_takes_it(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    task = write_keyword_task(tmp_path, count=40)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model), "--task", str(task), "--output", str(out), "--seeds", "2"]
    assert main([*argv, "epochs=1", "max_length=16", "save_models=true"]) == 0
    kept = [path.parent for path in (out / "results").glob(f"*/keyword/{SAVED_MODEL_DIR}/config.json")]
    assert len(kept) == 1  # one per model and task: the first seed's
    onnx_path = cli.export(model=str(kept[0]), output=str(tmp_path / "onnx"))
    logits = ort.InferenceSession(str(onnx_path)).run(["logits"], _feed(tiny_tokenizer, ["ang bahay"]))[0]
    assert logits.shape == (1, 2)


def _feed(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in tokenizer(texts, return_tensors="np").items()}


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_export_refuses_a_damaged_model_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    model_dir = _tiny("student", tmp_path / "student")
    weights = model_dir / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.unlink()
    capsys.readouterr()  # saving the model shows progress bars
    assert main(["export", str(model_dir), "--output", str(tmp_path / "onnx")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "damaged or incomplete" in errors[0] and "model.safetensors" in errors[0]
    assert not (tmp_path / "onnx").exists()


def test_export_checks_the_model_manifest_and_leaves_it_behind(tmp_path: Path) -> None:
    model_dir = _tiny("student", tmp_path / "student")
    ckpt.write_manifest(model_dir, ckpt.MODEL_MANIFEST)  # as monodistill saves a student
    cli.export(model=str(model_dir), output=str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx" / ckpt.MODEL_MANIFEST).exists()
    (model_dir / "vocab.txt").write_text("altered\n")
    with pytest.raises(MonodistillError, match="vocab.txt"):
        cli.export(model=str(model_dir), output=str(tmp_path / "other"))


def test_export_into_an_earlier_export_needs_overwrite_and_replaces_it_whole(tmp_path: Path) -> None:
    first = _tiny("classifier", tmp_path / "first")
    second = _tiny("student", tmp_path / "second")
    output = tmp_path / "onnx"
    cli.export(model=str(first), output=str(output), quantize="int8")
    with pytest.raises(MonodistillError, match="--overwrite"):
        cli.export(model=str(second), output=str(output))
    assert json.loads((output / "export.json").read_text())["source"] == str(first.resolve())  # untouched

    cli.export(model=str(second), output=str(output), overwrite=True)
    assert not (output / "model.int8.onnx").exists()  # nothing of the first export survives
    assert json.loads((output / "export.json").read_text())["source"] == str(second.resolve())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first", "onnx", "second"]  # no staging left


def test_export_refuses_an_output_that_holds_something_else(tmp_path: Path) -> None:
    model_dir = _tiny("classifier", tmp_path / "model")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me\n")
    for overwrite in (False, True):
        with pytest.raises(MonodistillError, match="not an export"):
            cli.export(model=str(model_dir), output=str(tmp_path / "notes"), overwrite=overwrite)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me\n"
    (tmp_path / "empty").mkdir()
    assert cli.export(model=str(model_dir), output=str(tmp_path / "empty")).is_file()  # an empty folder is fine


def test_export_refuses_an_output_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = _tiny("classifier", tmp_path / "model")
    (tmp_path / "file").write_text("x")
    capsys.readouterr()  # saving the model shows progress bars
    assert main(["export", str(model_dir), "--output", str(tmp_path / "file")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "exists and is not a folder" in errors[0]


def test_a_failed_export_leaves_the_earlier_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = _tiny("classifier", tmp_path / "model")
    output = tmp_path / "onnx"
    cli.export(model=str(model_dir), output=str(output), quantize="int8")
    before = sorted(path.name for path in output.iterdir())
    monkeypatch.setattr("monodistill.export.TOLERANCE", -1.0)  # every export now fails its check
    with pytest.raises(MonodistillError, match="differ from PyTorch"):
        cli.export(model=str(model_dir), output=str(output), overwrite=True)
    assert sorted(path.name for path in output.iterdir()) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "onnx"]


def test_export_says_what_it_wrote_and_hides_only_the_known_harmless_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = _tiny("student", tmp_path / "student")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        cli.export(model=str(model_dir), output=str(tmp_path / "onnx"), quantize="int8")
    shown = [f"{warning.category.__name__}: {warning.message}" for warning in raised]
    assert not [line for line in shown if "TracerWarning" in line or "aten::index" in line], shown
    captured = capsys.readouterr()
    assert "pre-processing before quantization" not in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"wrote {tmp_path / 'onnx' / 'model.onnx'} (") and " MB, " in lines[0]
    assert lines[1].startswith("parity check passed: ") and "(tolerance 1e-04)" in lines[1]
    assert lines[2].startswith(f"wrote {tmp_path / 'onnx' / 'model.int8.onnx'} (") and "dynamic int8" in lines[2]


def test_a_tied_embedding_is_stored_once_in_the_onnx_graph(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=4000, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model_dir = tmp_path / "student"
    BertForMaskedLM(config).save_pretrained(model_dir)  # its decoder is tied to the word embeddings
    _tokenizer(model_dir).save_pretrained(model_dir)
    assert main(["export", str(model_dir), "--output", str(tmp_path / "onnx"), "--quantize", "int8"]) == 0
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    large = [tuple(tensor.dims) for tensor in graph.initializer if np.prod(tensor.dims) >= 4000 * 64]
    assert large == [(4000, 64)]  # not also its (64, 4000) transpose for the decoder's MatMul
    weights = (model_dir / "model.safetensors").stat().st_size
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size < 1.1 * weights
    # The parity check ran on the graph as written, and the int8 graph still has the output's shape.
    record = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert record["max_abs_logit_difference"] < TOLERANCE and record["tied_weights_shared"] == 1
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.int8.onnx"))
    sample = BertTokenizerFast.from_pretrained(model_dir)(["magandang umaga"], return_tensors="np")
    logits = session.run(None, {i.name: sample[i.name].astype(np.int64) for i in session.get_inputs()})[0]
    assert logits.shape == (1, sample["input_ids"].shape[1], 4000)
