"""A near-constant classifier is never hidden behind its accuracy: macro-F1 beside accuracy in every table,
the majority class recorded on the examples scored, and a model that ends there said to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.card.results import evaluation_section
from monodistill.cli import main
from monodistill.config import EvaluateConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.splits import subset
from monodistill.evaluate.tables import format_summary
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


def write_sib200(folder: Path) -> Path:
    """A small task in SIB-200's layout: ``index_id<TAB>category<TAB>text``, train, dev and test files."""
    categories = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
    lines = make_lines(70, seed=11)
    for name, rows in (("train", range(0, 42)), ("dev", range(42, 56)), ("test", range(56, 70))):
        records = [f"{index}\t{categories[index % 7]}\t{lines[index]}" for index in rows]
        (folder / f"{name}.tsv").write_text("index_id\tcategory\ttext\n" + "\n".join(records) + "\n")
    spec = "name: sib200-tgl\nkind: classification\ntrain: train.tsv\nvalidation: dev.tsv\ntest: test.tsv\n"
    (folder / "sib200.yaml").write_text(spec + "text_column: text\nlabel_column: category\n")
    return folder / "sib200.yaml"


def test_a_sib200_tsv_is_a_classification_task_with_its_dev_split(tmp_path: Path) -> None:
    from monodistill.evaluate.tasks import load_task

    task = load_task(str(write_sib200(tmp_path)))
    assert task.kind == "classification" and len(task.labels) == 7 and "science/technology" in task.labels
    assert len(task.train) == 42 and len(task.test) == 14
    assert task.train[0]["text"] == make_lines(70, seed=11)[0]
    assert task.dev is not None and len(task.dev) == 14  # the validation file beside the test file: the dev split
    assert task.labels[task.dev[0]["label"]] == "science/technology"  # row 42: 42 % 7 == 0

    (tmp_path / "dev.tsv").write_text("index_id\tcategory\ttext\n1\tweather\tumuulan\n")
    with pytest.raises(MonodistillError, match=r"dev.tsv:2: label 'weather' is not in the label set"):
        load_task(str(tmp_path / "sib200.yaml"))


def test_the_learning_rate_is_chosen_on_a_dev_split_and_reported(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_sib200(tmp_path)
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(task), "--output", str(out), "epochs=1"]
    argv += ["max_length=16", "batch_size=16", "gradient_accumulation_steps=1", "learning_rates=[1e-5,3e-3]"]
    assert main(argv) == 0

    result = json.loads(result_file(out, "model", "sib200-tgl", "seed-42.json").read_text())
    selection = result["learning_rate_selection"]
    assert selection["by"] == "macro_f1" and selection["dev"] == "the task's dev split (14 examples)"
    assert [trial["learning_rate"] for trial in selection["trials"]] == [1e-5, 3e-3]
    best = max(selection["trials"], key=lambda trial: trial["metrics"]["macro_f1"])
    assert result["learning_rate"] == selection["learning_rate"] == best["learning_rate"]
    assert "chosen on the task's dev split (14 examples) by dev macro-F1" in capsys.readouterr().out

    table = (out / "summary.md").read_text()
    rate = f"{best['learning_rate']:g}"
    assert f"model on sib200-tgl: {rate} (chosen from 1e-05, 0.003 by macro-F1 on the task's dev split" in table
    summary = json.loads((out / "summary.json").read_text())
    assert f"model on sib200-tgl: {rate} (chosen from" in evaluation_section(summary, model)

    # Without a dev split of its own, a seeded share of the training split: the same examples for every run.
    from monodistill.evaluate.selection import development_task
    from monodistill.evaluate.tasks import load_task

    (tmp_path / "sib200.yaml").write_text((tmp_path / "sib200.yaml").read_text().replace("validation: dev.tsv\n", ""))
    plain = load_task(str(task))
    config = load_config(EvaluateConfig, overrides=["learning_rates=[1e-4]"])
    searched, where = development_task(plain, config)
    assert len(searched.test) == 4 and len(searched.train) == 38 and where.startswith("10% of the training split")
    assert development_task(plain, config)[0].test["text"] == searched.test["text"]
    assert not set(searched.test["text"]) & set(searched.train["text"]) and not set(searched.test["text"]) & set(
        plain.test["text"]
    )


def test_a_model_that_ends_at_the_majority_class_is_said_to(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels that no input predicts, 80% of them one class: the model can learn only the prior."""
    lines = make_lines(100, seed=13)
    labels = ["a" if index % 5 else "b" for index in range(100)]
    rows = [f"{line},{label}" for line, label in zip(lines, labels, strict=True)]
    (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(rows[:80]) + "\n")
    (tmp_path / "test.csv").write_text("text,label\n" + "\n".join(rows[80:]) + "\n")
    spec = "name: noise\nkind: classification\ntrain: train.csv\ntest: test.csv\ntext_column: text\n"
    (tmp_path / "task.yaml").write_text(spec + "label_column: label\n")
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(tmp_path / "task.yaml"), "--output", str(out)]
    assert main([*argv, "epochs=2", "max_length=16", "batch_size=16", "gradient_accumulation_steps=1"]) == 0

    result = json.loads(result_file(out, "model", "noise", "seed-42.json").read_text())
    assert result["predictions"]["top_label"] == "a" and result["near_majority"]
    printed = capsys.readouterr()
    assert "warning: model on noise (seed 42) ends at the majority class: it predicts 'a'" in printed.err
    assert "model on noise (seed 42): accuracy=0.8000, macro_f1=0.4444" in printed.out  # 16 of 20 test rows are 'a'
    assert "Ends at the majority class: model on noise (seed 42: it predicts 'a'" in (out / "summary.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert "Ends at the majority class: model on noise" in evaluation_section(summary, model)
    assert (
        "model on noise: 2e-05 (evaluate.learning_rate, not chosen on held-out data)"
        in (out / "summary.md").read_text()
    )
