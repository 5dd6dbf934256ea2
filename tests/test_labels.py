"""One label per model in every output: the console, evaluate's result folders and summary, the report, the card."""

from __future__ import annotations

import csv
import json
import re
import shutil
from functools import partial
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.card import write_card
from monodistill.cli import main
from monodistill.config import DistillConfig, load_config, save_config
from monodistill.evaluate import harness, timing
from monodistill.report import write_report

from .conftest import save_teacher, write_keyword_task
from .report_fixtures import write_records

QUICK = ["epochs=1", "max_length=16", "max_train_samples=16", "max_eval_samples=8", "batch_size=8", "seeds=1"]
QUICK += ["gradient_accumulation_steps=1"]


def fake_run(run: Path, teacher: Path, name: str | None) -> Path:
    """A distillation run folder as `distill` leaves it (config, environment, metrics, student), without training:
    the student is a copy of the teacher."""
    shutil.copytree(teacher, run / "student")
    updates = {"teacher": {"name_or_path": str(teacher)}, "student": {"name": name, "preset": "dbert-tiny"}}
    save_config(load_config(DistillConfig, updates=updates), run / "config.yaml")
    (run / "environment.json").write_text(json.dumps({"train_blocks": 10}))
    validation = {"mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3, "student_accuracy": 0.2}
    write_records(run, [{"split": "validation", "step": 4, **validation}])
    return run / "student"


def test_evaluate_and_report_give_each_model_the_same_label(
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(harness, "measure_inference", partial(timing.measure_inference, rounds=1))  # labels only
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "models" / "mmt-mini")
    runs = tmp_path / "runs"
    students = [
        fake_run(runs / "tinybert", teacher, None),  # named by its folder
        fake_run(runs / "trimmed", teacher, "student"),  # two runs whose students are both named `student`
        fake_run(runs / "base", teacher, "student"),
    ]
    out = runs / "eval"
    argv = ["evaluate", "--model", str(teacher), *[arg for student in students for arg in ("--model", str(student))]]
    assert main([*argv, "--task", str(write_keyword_task(tmp_path)), "--output", str(out), *QUICK]) == 0
    console = capsys.readouterr().out
    # Only the namesakes are told apart, by their runs' folders; the teacher is named by its students' runs.
    expected = {"teacher", "tinybert", "trimmed/student", "base/student"}

    fine_tuned = set(re.findall(r"^fine-tuning (\S+) on keyword", console, flags=re.MULTILINE))
    assert fine_tuned == expected, console
    scored = set(re.findall(r"^(\S+) on keyword \(seed 42\): accuracy=", console, flags=re.MULTILINE))
    assert scored == expected, console
    folders = {path.name.rpartition("-")[0].replace("__", "/") for path in (out / "results").iterdir()}
    assert folders == expected
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == expected and summary["baseline"] == "teacher"
    assert table_labels((out / "summary.md").read_text()) == expected

    write_report([runs], tmp_path / "report")
    assert table_labels((tmp_path / "report" / "report.md").read_text()) == expected
    with open(tmp_path / "report" / "results.csv") as handle:
        assert {row["model"] for row in csv.DictReader(handle)} == expected
    # The distillation table names each run as its scores do.
    distillation = (tmp_path / "report" / "report.md").read_text().split("## Distillation")[1]
    assert table_labels(distillation) == {"tinybert", "trimmed/student", "base/student"}

    card = write_card(runs / "tinybert", out / "summary.json").read_text()
    assert card.startswith("---") and "# tinybert: distilled from" in card
    assert f"baseline: teacher (`{teacher}`)" in card


def table_labels(markdown: str) -> set[str]:
    """The first cell of every table row of ``markdown`` that names a model (not a header, rule or note)."""
    cells = {line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| ")}
    skip = {"model", "student", "task", "metric", "constant prediction (most frequent test label)"}
    return {cell.split(" (")[0] for cell in cells if cell not in skip and not cell.startswith("-")}


def test_labels_tell_apart_only_the_models_that_share_a_name(tmp_path: Path) -> None:
    from monodistill.labels import Named, label_models

    runs, other = tmp_path / "runs", tmp_path / "c13b"
    named = [Named("student", runs, runs / "a", "distillation"), Named("tinybert", runs, runs / "b", "distillation")]
    named.append(Named("student", other, other / "students" / "student", "distillation"))
    # `local-quickstart/student` beside `runs/tinybert` no more: tinybert keeps its one name.
    assert label_models(named) == ["runs/student", "tinybert", "c13b/student"]
