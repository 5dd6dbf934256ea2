"""A near-constant classifier is never hidden behind its accuracy: macro-F1 beside accuracy in every table,
the majority class recorded on the examples scored, and a model that ends there said to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.card import evaluation_section
from monodistill.cli import main
from monodistill.evaluate.finetune import subset
from monodistill.evaluate.summary import format_summary
from monodistill.pipeline import describe_experiment
from monodistill.report import write_report

from ..conftest import make_lines, save_teacher
from ..report_fixtures import capture_figures, task_result, write_summary
from .test_finetune import result_file


def classification_result(accuracy: float, macro_f1: float) -> dict[str, Any]:
    """A summary entry of a classification task: accuracy and macro-F1, one seed."""
    result = task_result(accuracy, 1.0, seeds=1)
    result["metric.macro_f1"] = {"mean": macro_f1, "std": 0.0, "values": [macro_f1]}
    return result


def hatespeech_summary(student: Path) -> dict[str, Any]:
    """The quickstart's Hatespeech scores: the student's accuracy near the teacher's, its macro-F1 the majority's."""
    return {
        "baseline": "teacher",
        "tasks": ["hatespeech"],
        "constant_prediction": {"hatespeech": {"label": "0", "accuracy": 0.588, "macro_f1": 0.3703}},
        "models": {
            "teacher": {"model": "teacher", "tasks": {"hatespeech": classification_result(0.588, 0.588)}},
            "student": {"model": str(student), "tasks": {"hatespeech": classification_result(0.574, 0.365)}},
        },
    }


def test_macro_f1_stands_beside_accuracy_in_every_table_and_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = tmp_path / "run" / "student"
    summary = hatespeech_summary(student)

    table = format_summary(summary)
    quality = table.split("\n\n", 2)[1]
    assert "| model | hatespeech accuracy | hatespeech macro-F1 |" in quality
    assert "| student | 57.40 (1) | 36.50 |" in quality
    assert "| constant prediction (most frequent test label) | 58.80 | 37.03 |" in quality

    figures: dict[str, matplotlib.figure.Figure] = capture_figures(monkeypatch)
    write_summary(tmp_path / "eval", summary)
    write_report([tmp_path / "eval"], tmp_path / "report")
    assert "| 57.40 (1) | 36.50 |" in (tmp_path / "report" / "report.md").read_text()  # named by its run
    (panel,) = [axis for axis in figures["quality.png"].axes if axis.get_title().startswith("hatespeech")]
    assert "57.4\nmacro-F1 36.5" in {text.get_text() for text in panel.texts}

    card = evaluation_section(summary, student)
    assert "| hatespeech | macro-F1 | 36.50 | 58.80 |" in card and "| hatespeech | accuracy | 57.40 | 58.80 |" in card

    ending = describe_experiment(summary, [], tmp_path / "report" / "report.md", 1.0)
    assert "| model | hatespeech accuracy | hatespeech macro-F1 |" in ending and "| student | 57.40 | 36.50 |" in ending


def test_the_majority_class_is_recorded_on_the_examples_scored(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    """With evaluate.max_eval_samples, the floor is that of the sample scored, not of the whole test split."""
    lines = make_lines(72, seed=9)
    test_labels = [1] * 14 + [0] * 26  # 65% zeros in the file; the scored sample of 10 holds another share
    kept = subset(len(test_labels), 10, seed=42)
    share = max(sum(test_labels[i] for i in kept), 10 - sum(test_labels[i] for i in kept)) / 10
    assert share != 0.65
    rows = [f"{line},{label}" for line, label in zip(lines[32:], test_labels, strict=True)]
    train = [f"{line},{index % 2}" for index, line in enumerate(lines[:32])]
    (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(train) + "\n")
    (tmp_path / "test.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    spec = "name: skewed\nkind: classification\ntrain: train.csv\ntest: test.csv\n"
    spec += "text_column: text\nlabel_column: label\n"
    (tmp_path / "task.yaml").write_text(spec)
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(tmp_path / "task.yaml"), "--output", str(out)]
    assert main([*argv, "epochs=1", "max_length=16", "max_eval_samples=10"]) == 0

    result = json.loads(result_file(out, "model", "skewed", "seed-42.json").read_text())
    assert result["majority_class"]["accuracy"] == pytest.approx(share)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["constant_prediction"]["skewed"]["accuracy"] == pytest.approx(share)
