"""`monodistill run` with a decoder teacher: the students, the trimmed teacher and the teacher scored by bits per
byte, multiple choice and generation samples with no fine-tuning, and fine-tuned on a classification task; the
scores in the summary, the report and the student's card beside the teacher's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main

from .conftest import make_lines, save_decoder, write_keyword_task
from .evaluate.test_decoder_evaluation import BELEBELE

Tokenizers = dict[str, PreTrainedTokenizerFast]


def write_tasks(folder: Path, corpus: Path, held_out_from: int) -> list[Path]:
    """Bits per byte on the corpus's lines from ``held_out_from`` on, a Belebele-format file, and samples."""
    (folder / "belebele.tsv").write_text(BELEBELE)
    specs = {
        "lm.yaml": f"name: held-out\nkind: language-modeling\nfile: {corpus}\nskip_lines: {held_out_from - 1}\n",
        "mc.yaml": "name: belebele-mini\nkind: multiple-choice\nfile: belebele.tsv\n",
        "gen.yaml": "name: samples\nkind: generation\nprompts: [Ang bata]\nmax_new_tokens: 4\n",
    }
    for name, spec in specs.items():
        (folder / name).write_text(spec)
    return [folder / name for name in specs]


def test_run_with_a_decoder_teacher_scores_every_model_as_a_language_model(
    decoder_tokenizers: Tokenizers, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = save_decoder("llama", decoder_tokenizers["byte-level"], tmp_path / "teacher")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_lines(300, seed=4)) + "\n")
    tasks = [*write_tasks(tmp_path, corpus, held_out_from=251), write_keyword_task(tmp_path, 60)]
    shape = "preset: custom\n    num_layers: 1\n    hidden_size: 16\n    intermediate_size: 32\n    num_heads: 2"
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        f"""name: tiny-causal
teacher:
  name_or_path: {teacher}
vocab:
  enabled: true
  export_teacher: true
students:
  - name: trimmed
    {shape}
data:
  corpus: {corpus}
  language: tl
  max_seq_length: 32
  max_documents: 250
  cache_dir: {cache_dir}
train:
  max_steps: 2
  batch_size: 4
evaluate:
  tasks: [{", ".join(str(task) for task in tasks)}]
  epochs: 1
  max_length: 32
  batch_size: 16
  gradient_accumulation_steps: 1
"""
    )
    out = tmp_path / "out"
    assert main(["run", "--config", str(experiment), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "not held-out" not in captured.err  # the task reads lines 251 on; the students, the first 250
    ending = captured.out[captured.out.index("== done in ") :]
    assert "| model | keyword accuracy | keyword macro-F1 |" in ending
    assert "| model | held-out bits/byte | belebele-mini accuracy |" in ending

    summary = json.loads((out / "evaluate" / "summary.json").read_text())
    assert list(summary["models"]) == ["teacher", "teacher-trimmed", "trimmed"]
    bits = {
        label: entry["language"]["held-out"]["metrics"]["bits_per_byte"] for label, entry in summary["models"].items()
    }
    assert all(value > 0 for value in bits.values())
    assert summary["models"]["trimmed"]["language"]["held-out"]["documents"] == 50
    report = (out / "report" / "report.md").read_text()
    assert f"| trimmed | held-out | {bits['trimmed']:.4f} |" in report and "Generation samples (samples)" in report
    rows = list(csv.DictReader((out / "report" / "results.csv").open()))
    assert {(row["model"], row["kind"]) for row in rows if row["task"] == "held-out"} == {
        (label, "language-modeling") for label in bits
    }
    card = (out / "students" / "trimmed" / "student" / "README.md").read_text()
    row = f"| held-out | bits per byte (lower is better) | {bits['trimmed']:.4f} | {bits['teacher']:.4f} |"
    assert row in card and "`held-out`: language-modeling on 50 documents (lines) of" in card

    # Distilled on every line, the students would have read the task's text: run says so before it distils.
    experiment.write_text(experiment.read_text().replace("  max_documents: 250\n", ""))
    assert main(["run", "--config", str(experiment), "--output", str(tmp_path / "again")]) == 0
    assert "task held-out scores lines from 251 of" in capsys.readouterr().err
