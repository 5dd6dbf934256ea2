"""The smoke set (``pytest -m smoke``): the whole pipeline in a few steps, as CI runs it on the newest
versions the metadata allows (``make test-latest``), so a dependency release that breaks loading,
tokenising, training, evaluation, export or the report shows on the day it is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from monodistill.cli import main

from .conftest import require_shared, write_keyword_task

pytestmark = pytest.mark.smoke


def test_distil_evaluate_export_and_report_in_a_few_steps(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = tmp_path / "run"
    student = ["preset=custom", "num_layers=1", "hidden_size=16", "intermediate_size=32", "num_heads=2"]
    argv = ["distill", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(run)]
    argv += ["--max-steps", "3", "--save-steps", "2", "--student", "custom"]
    argv += [f"student.{setting}" for setting in student[1:]]
    argv += ["data.max_seq_length=32", "train.batch_size=4", f"data.cache_dir={cache_dir}", "vocab.enabled=true"]
    assert main(argv) == 0
    saved = run / "student"
    # The student is a Hugging Face model: it loads and predicts as one.
    model = AutoModelForMaskedLM.from_pretrained(saved).eval()
    tokenizer = AutoTokenizer.from_pretrained(saved)
    with torch.inference_mode():
        logits = model(**tokenizer("ang bata", return_tensors="pt")).logits
    assert logits.shape[-1] == len(tokenizer) and torch.isfinite(logits).all()

    task = write_keyword_task(tmp_path, 60)
    evaluation = tmp_path / "evaluate"
    argv = ["evaluate", "--model", str(tiny_teacher_dir), "--model", str(saved), "--task", str(task)]
    argv += ["--output", str(evaluation), "epochs=1", "max_length=16", "save_models=true"]
    assert main(argv) == 0
    summary = json.loads((evaluation / "summary.json").read_text())
    assert len(summary["models"]) == 2

    assert main(["export", str(saved), "--output", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 0  # export checks parity with PyTorch itself

    assert main(["card", str(run), "--results", str(evaluation / "summary.json")]) == 0
    assert main(["report", str(run), "--output", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").is_file()


def test_the_stand_in_teacher_loads_and_passes_the_model_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """The real checkpoint in ../shared: its tokenizer, stored shapes and masked-LM head as a release reads them."""
    teacher = require_shared("models", "mmt-mini")
    from monodistill.config import TeacherConfig
    from monodistill.evaluate.harness import check_model
    from monodistill.teacher import load_teacher, mlm_head

    tokenizer = check_model(str(teacher), 128)
    model, _ = load_teacher(TeacherConfig(name_or_path=str(teacher), dtype="float32"))
    encoded = tokenizer("Ang bata ay naglalaro sa [MASK].", return_tensors="pt")
    with torch.inference_mode():
        hidden = model.base_model(**encoded).last_hidden_state
        own = model(**encoded).logits
    assert torch.allclose(mlm_head(model).logits(hidden), own, atol=1e-4)
