"""Checkpoints on disk: a short run keeps one, and a finished run says what takes its space and what may go."""

from __future__ import annotations

from pathlib import Path

import pytest

from monodistill.checkpoint import describe_disk, list_checkpoints
from monodistill.cli import main
from monodistill.config import TrainConfig

STUDENT = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16", "student.intermediate_size=32"]
BUDGET = ["student.num_heads=2", "data.max_seq_length=32", "train.batch_size=4", "data.max_validation_blocks=4"]


def size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def test_a_short_run_keeps_one_checkpoint_and_says_what_takes_the_space(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    common = ["--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(run)]
    steps = ["--max-steps", "8", "--save-steps", "4"]
    assert main(["distill", *common, *steps, *STUDENT, *BUDGET, f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    assert [path.name for path in list_checkpoints(run)] == ["step-00000008"]  # step 4's went once 8 was saved
    held = size(run / "checkpoints")
    assert held > 2 * size(run / "student") - size(run / "student" / "tokenizer.json")  # weights and AdamW moments
    out = capsys.readouterr().out
    assert f"disk: {size(run) / 1e6:,.0f} MB in {run}" in out or f"disk: {size(run) / 1e3:,.1f} kB in {run}" in out
    assert f"; checkpoints/ {held / 1e3:,.1f} kB of it (the model and optimizer state for --resume; delete" in out
    assert f"delete once done: rm -r {run / 'checkpoints'})" in out


def test_only_short_runs_keep_one_checkpoint_by_default() -> None:
    assert TrainConfig().checkpoints_kept(60) == TrainConfig().checkpoints_kept(1000) == 1
    assert TrainConfig().checkpoints_kept(1001) == 2  # one to fall back on should the newest be damaged
    assert TrainConfig(keep_checkpoints=3).checkpoints_kept(60) == 3


def test_the_disk_line_names_every_runs_checkpoints(tmp_path: Path) -> None:
    for name, megabytes in (("a", 3), ("b", 2)):
        (tmp_path / "students" / name / "checkpoints" / "step-00000060").mkdir(parents=True)
        (tmp_path / "students" / name / "checkpoints" / "step-00000060" / "optimizer.bin").write_bytes(
            bytes(megabytes * 10**6)
        )
    (tmp_path / "students" / "a" / "student").mkdir()
    (tmp_path / "students" / "a" / "student" / "model.safetensors").write_bytes(bytes(10**6))
    folders = " ".join(str(tmp_path / "students" / name / "checkpoints") for name in ("a", "b"))
    assert describe_disk(tmp_path) == (
        f"disk: 6 MB in {tmp_path}; checkpoints/ 5 MB of it (the model and optimizer state for --resume; delete "
        f"once done: rm -r {folders})"
    )
    assert describe_disk(tmp_path / "students" / "a" / "student") == f"disk: 1 MB in {tmp_path}/students/a/student"
