"""What a command prints: each warning once, normalised paths, token ids as integers, the trained terms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monodistill import progress
from monodistill.cli import main
from monodistill.evaluate.tasks import load_task

from .test_distill import args

TINYBERT = (
    "loss.alpha_kl=0",
    "loss.alpha_mlm=0",
    "loss.alpha_hidden=1",
    "loss.alpha_attention=1",
    "student.num_heads=4",
)


def test_the_distillation_log_shows_the_terms_the_recipe_trains_and_token_ids_as_integers(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)  # a line per step in a captured (non-terminal) stream
    student = tmp_path / "student"
    assert main(args(tiny_teacher_dir, corpus_file, student, tmp_path / "cache", 2, *TINYBERT)) == 0
    captured = capsys.readouterr()
    bars = [line for line in captured.err.splitlines() if line.startswith("distilling: ")]
    assert bars and all("hidden=" in line and "attention=" in line for line in bars), bars
    assert not any("mlm=" in line or "kl=" in line for line in bars), bars  # logged, never trained
    assert re.search(r"student_top_prediction_id=\d+(,|$)", captured.out, flags=re.MULTILINE), captured.out
    assert "distilling student (" in captured.out and "the student student" not in captured.out


def test_a_task_says_once_how_it_reads_a_file_with_its_path_normalised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "tasks").mkdir()
    sentence = "Si\tO\nJuan\tB-PER\nay\tO\nnasa\tO\nManila\tB-LOC\n"
    for split in ("train", "test"):
        (tmp_path / "data" / f"{split}.iob").write_text((sentence + "\n") * 3)
    spec = "name: ner\nkind: token-classification\ntrain: ../data/train.iob\ntest: ../data/test.iob\n"
    (tmp_path / "tasks" / "ner.yaml").write_text(spec)
    for _ in range(3):  # run checks every task, then evaluate reads them again (and a dev split a third time)
        task = load_task(str(tmp_path / "tasks" / "ner.yaml"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "read as token-tag" in line]
    assert lines == [
        f"{tmp_path / 'data' / 'train.iob'}: read as token-tag (line 1 is token<TAB>tag; set format: in the task file "
        "to choose another)",
        f"{tmp_path / 'data' / 'test.iob'}: read as token-tag (line 1 is token<TAB>tag; set format: in the task file "
        "to choose another)",
    ]
    assert ".." not in str(task.source)
