"""`monodistill run` end to end on tiny models, then `report` and `card` on what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main

from .conftest import write_keyword_task


def test_run_distils_evaluates_reports_and_resumes(
    tiny_teacher_dir: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shape = "preset: custom\n    num_layers: 1\n    hidden_size: 16\n    intermediate_size: 32\n    num_heads: 2"
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        f"""# A tiny experiment: monodistill run --config experiment.yaml --output OUT
name: tiny
teacher:
  name_or_path: {tiny_teacher_dir}
vocab:
  enabled: true
  export_teacher: true
students:
  - name: full-data
    {shape}
  - name: half-data
    {shape}
    overrides: [data.data_fraction=0.5]
data:
  corpus: {corpus_file}
  language: tl
  max_seq_length: 32
  cache_dir: {cache_dir}
train:
  max_steps: 4
  batch_size: 4
evaluate:
  tasks: [{write_keyword_task(tmp_path, 120)}]
  epochs: 1
  max_length: 32
  batch_size: 16
  gradient_accumulation_steps: 1
"""
    )
    out = tmp_path / "out"
    assert main(["run", "--config", str(experiment), "--output", str(out)]) == 0
    # The run ends with where everything is and the headline scores.
    log = capsys.readouterr().out
    ending = log[log.index("== done in ") :]
    assert f"\nfull-data: {out / 'students' / 'full-data' / 'student'}\n" in ending
    assert f"\nhalf-data: {out / 'students' / 'half-data' / 'student'}\n" in ending
    assert f"report: {out / 'report' / 'report.md'} (also report.html" in ending
    assert "fine-tuning runs: 4 made, 0 reused from earlier runs\n" in ending
    assert "| model | keyword accuracy | keyword macro-F1 |" in ending and ending.count("\n| ") == 5  # header, 4 models
    assert log.count("| model | keyword accuracy | keyword macro-F1 |") == 1  # the score table printed once
    assert log.count(f"report: {out / 'report' / 'report.md'}") == 1

    rows = list(csv.DictReader((out / "report" / "results.csv").open()))
    # Teacher first, then the trimmed teacher ("Load What You Need" baseline), then the students.
    assert [row["model"] for row in rows] == ["teacher", "teacher-trimmed", "full-data", "half-data"]
    assert {row["task"] for row in rows} == {"keyword"}
    report = (out / "report" / "report.md").read_text()
    # One seed: no spread is shown, and the count of seeds says so.
    assert "n = 1" in report and "± " not in report and "agreement with teacher" in report
    assert "distillation.png" in report
    assert (out / "report" / "distillation.png").stat().st_size > 1000
    assert (out / "report" / "quality.png").stat().st_size > 1000
    assert (out / "report" / "cost.png").stat().st_size > 1000 and "cost.png" in report
    assert "Model card: full-data" in (out / "report" / "report.html").read_text()
    assert (out / "students" / "half-data" / "config.yaml").read_text().count("data_fraction: 0.5") == 1
    card = (out / "students" / "full-data" / "student" / "README.md").read_text()
    assert "## Downstream results" in card and "keyword" in card
    metadata = yaml.safe_load(card.split("---")[1])  # the Hub reads the front matter as YAML
    assert metadata["language"] == ["tl"] and metadata["pipeline_tag"] == "fill-mask"
    assert "base_model" not in metadata and "datasets" not in metadata  # a local teacher and corpus
    for section in ("## Model", "## Distillation", "## Intended use", "## Limitations"):
        assert section in card
    # One parameter count per model: the card's is the report's (the encoder with its embeddings).
    counts = {row["model"]: int(row["parameters"]) for row in rows}
    assert f"| {counts['full-data']:,} | {counts['teacher']:,} |" in card
    assert report.count(f"teacher: `{tiny_teacher_dir}`") == 1

    # Nothing finished is redone.
    weights = out / "students" / "full-data" / "student" / "model.safetensors"
    results = sorted((out / "evaluate" / "results").rglob("seed-*.json"))
    stamps = [path.stat().st_mtime_ns for path in [weights, *results]]
    assert main(["run", "--config", str(experiment), "--output", str(out)]) == 0
    assert [path.stat().st_mtime_ns for path in [weights, *results]] == stamps
    assert "fine-tuning runs: 0 made, 4 reused from earlier runs\n" in capsys.readouterr().out

    assert main(["report", str(out / "evaluate"), "--output", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "quality.png").is_file()
    assert main(["card", str(out / "students" / "half-data")]) == 0


def test_report_and_card_refuse_folders_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert "no distillation runs" in capsys.readouterr().err
    assert main(["card", str(tmp_path)]) == 2
    assert "not a finished distillation run" in capsys.readouterr().err


def write_sweep(path: Path, teacher: Path, corpus: Path, cache: Path, students: list[dict[str, object]]) -> Path:
    """A `distill --config` file with several students of the tiny shape, 2 steps each."""
    shape = {"preset": "custom", "num_layers": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2}
    config = {
        "teacher": {"name_or_path": str(teacher)},
        "students": [{**shape, **student} for student in students],
        "data": {"corpus": str(corpus), "max_seq_length": 32, "cache_dir": str(cache), "max_validation_blocks": 8},
        "train": {"max_steps": 2, "batch_size": 4, "eval_interval": 2},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_each_student_gets_the_vocabulary_its_own_settings_give(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A student's vocab.* overrides are what it trains with and what its config records, not the shared ones."""
    from transformers import AutoConfig

    sweep = write_sweep(
        tmp_path / "sweep.yaml",
        tiny_teacher_dir,
        corpus_file,
        cache_dir,
        [
            {"name": "shared"},
            {"name": "smaller", "overrides": ["vocab.max_size=60"]},
            {"name": "full", "overrides": ["vocab.enabled=false"]},
        ],
    )
    text = sweep.read_text() + "vocab:\n  enabled: true\n"
    sweep.write_text(text)
    out = tmp_path / "out"
    assert main(["distill", "--config", str(sweep), "--output", str(out)]) == 0
    sizes = {
        name: AutoConfig.from_pretrained(out / "students" / name / "student").vocab_size
        for name in ("shared", "smaller", "full")
    }
    teacher_size = AutoConfig.from_pretrained(tiny_teacher_dir).vocab_size
    assert sizes["smaller"] == 60 and sizes["full"] == teacher_size and 60 < sizes["shared"] < teacher_size
    recorded = {
        name: yaml.safe_load((out / "students" / name / "config.yaml").read_text())["vocab"]
        for name in ("shared", "smaller", "full")
    }
    assert recorded["smaller"]["max_size"] == 60 and recorded["full"]["enabled"] is False
    assert recorded["full"]["path"] is None and recorded["smaller"]["path"] != recorded["shared"]["path"]


def test_students_of_one_experiment_are_validated_on_the_same_blocks(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Validation blocks come from the whole corpus, whatever fraction of it a student trains on: what the
    teacher puts outside the trimmed vocabulary on them (which depends on nothing else) is the same for both."""
    from monodistill.checkpoint import read_metrics

    sweep = write_sweep(
        tmp_path / "sweep.yaml",
        tiny_teacher_dir,
        corpus_file,
        cache_dir,
        [{"name": "all"}, {"name": "half", "overrides": ["data.data_fraction=0.5"]}],
    )
    sweep.write_text(sweep.read_text() + "vocab:\n  enabled: true\n  max_size: 60\n")
    out = tmp_path / "out"
    assert main(["distill", "--config", str(sweep), "--output", str(out)]) == 0
    final = {
        name: [r for r in read_metrics(out / "students" / name) if r["split"] == "validation"][-1]
        for name in ("all", "half")
    }
    assert final["all"]["teacher_mass_outside_vocab"] == final["half"]["teacher_mass_outside_vocab"]
    assert final["all"]["teacher_accuracy"] == final["half"]["teacher_accuracy"]
    assert final["all"]["kl_to_teacher"] != final["half"]["kl_to_teacher"]  # different students all the same


@pytest.mark.parametrize("damage", ["task key", "task data"])
def test_run_checks_what_it_will_evaluate_before_it_distils(
    damage: str,
    tiny_teacher_dir: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A malformed task file or a missing task split ends ``run`` before the first distillation step."""
    task = write_keyword_task(tmp_path, 40)
    if damage == "task key":
        task.write_text(task.read_text().replace("label_column:", "label_colum:"))
    else:
        (tmp_path / "train.csv").unlink()
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        f"""teacher:
  name_or_path: {tiny_teacher_dir}
students:
  - name: s
    preset: custom
    num_layers: 1
    hidden_size: 16
    intermediate_size: 32
    num_heads: 2
data:
  corpus: {corpus_file}
  max_seq_length: 32
  cache_dir: {cache_dir}
train:
  max_steps: 2
  batch_size: 4
evaluate:
  tasks: [{task}]
  epochs: 1
  max_length: 32
"""
    )
    out = tmp_path / "out"
    assert main(["run", "--config", str(experiment), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert "distilling" not in captured.out and not (out / "students").exists()
    (error,) = [line for line in captured.err.splitlines() if line.startswith("monodistill run: error: ")]
    assert ("label_colum" if damage == "task key" else "train.csv") in error


def test_a_sweep_refused_before_training_leaves_nothing_the_next_command_trips_on(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Neither a bad student override nor a group refused for memory leaves what makes the corrected command
    need --resume (a config.yaml) or builds it from stale preparation (a trimmed vocabulary)."""
    from monodistill import pipeline, sweep

    students = [{"name": "a"}, {"name": "b", "overrides": ["loss.temperature=-1"]}]
    bad = write_sweep(tmp_path / "bad.yaml", tiny_teacher_dir, corpus_file, cache_dir, students)
    out = tmp_path / "out"
    assert main(["distill", "--config", str(bad), "--output", str(out)]) == 2
    assert "student 'b'" in capsys.readouterr().err
    assert not out.exists()

    good = write_sweep(tmp_path / "good.yaml", tiny_teacher_dir, corpus_file, cache_dir, [{"name": "a"}, {"name": "b"}])
    good.write_text(good.read_text() + "vocab:\n  enabled: true\n")
    monkeypatch.setattr(sweep, "available_bytes", lambda device: 1)
    assert main(["distill", "--config", str(good), "--output", str(out)]) == 2
    assert "need about" in capsys.readouterr().err
    monkeypatch.undo()

    # The corrected command (here: a smaller vocabulary) starts afresh, without --resume.
    stages: list[Path] = []
    monkeypatch.setattr(pipeline, "_distil_stages", lambda config, root: stages.append(root) or ([], []))
    assert main(["distill", "--config", str(good), "--output", str(out), "vocab.max_size=60"]) == 0, (
        capsys.readouterr().err
    )
    assert stages == [out] and not (out / "vocab").exists()  # the refused command's vocabulary is not reused
