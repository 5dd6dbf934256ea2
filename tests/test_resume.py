"""What a resume trusts: the checkpoint's own record, verified checkpoints and students, resolved paths."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from monodistill.checkpoint import MANIFEST_FILE, STATE_FILE, list_checkpoints
from monodistill.cli import main
from monodistill.config import DistillConfig
from monodistill.errors import MonodistillError
from monodistill.resume import DATA_ORDER, check_resumed_settings, run_settings

from .test_distill import args, assert_same_weights, stop_at, weights
from .test_runfolder import one_error_line


def test_a_checkpoint_without_its_manifest_is_incomplete_and_skipped(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    assert main(args(*common, tmp_path / "straight", cache_dir, 10, save=3)) == 0
    run = tmp_path / "run"
    stop_at(monkeypatch, 8)
    assert main(args(*common, run, cache_dir, 10, save=3)) == 143
    monkeypatch.undo()
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step-00000009"
    (newest / MANIFEST_FILE).unlink()
    (newest / "optimizer.bin").write_bytes((newest / "optimizer.bin").read_bytes()[:100])
    capsys.readouterr()
    assert main([*args(*common, run, cache_dir, 10, save=3), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"skipping damaged checkpoint {newest}: {MANIFEST_FILE} is missing" in out
    assert "resumed from" in out and "step-00000006" in out
    assert_same_weights(tmp_path / "straight", run)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_student_is_saved_again_from_the_final_checkpoint(
    damage: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    argv = args(tiny_teacher_dir, corpus_file, run, cache_dir, 4)
    assert main(argv) == 0
    good = {name: tensor.clone() for name, tensor in weights(run).items()}  # not views of the file to damage
    saved = run / "student" / "model.safetensors"
    if damage == "truncate":
        saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    else:
        saved.unlink()
    capsys.readouterr()
    assert main(["export", str(run / "student"), "--output", str(tmp_path / "onnx")]) == 2
    assert "damaged or incomplete" in one_error_line(capsys)

    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "already complete" not in out and "saving it again from the final checkpoint" in out
    assert all((weights(run)[name] == tensor).all() for name, tensor in good.items())
    validations = [r for r in (run / "metrics.jsonl").read_text().splitlines() if '"validation"' in r]
    assert len(validations) == 1  # the final validation, logged once: the re-save logs nothing again


def test_the_same_teacher_and_corpus_spelled_another_way_resume(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths are compared resolved: relative from one folder, absolute from another, are the same run."""
    common = (tiny_teacher_dir, corpus_file)
    assert main(args(*common, tmp_path / "straight", cache_dir, 8)) == 0
    shutil.copytree(tiny_teacher_dir, tmp_path / "teacher")
    shutil.copy(corpus_file, tmp_path / "corpus.txt")
    monkeypatch.chdir(tmp_path)
    stop_at(monkeypatch, 1)
    assert main(args(Path("teacher"), Path("corpus.txt"), tmp_path / "run", cache_dir, 8)) == 143
    monkeypatch.undo()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["teacher"]["name_or_path"] == str(tmp_path / "teacher")  # readable from anywhere
    monkeypatch.chdir(tmp_path.parent)
    spelled = (tmp_path / "teacher", tmp_path / "corpus.txt")
    assert main([*args(*spelled, tmp_path / "run", cache_dir, 8), "--resume"]) == 0
    assert_same_weights(tmp_path / "straight", tmp_path / "run")


@pytest.mark.parametrize(
    ("change", "field"),
    [("train.learning_rate=1e-2", "train.learning_rate"), ("student.hidden_size=128", "student.hidden_size")],
)
def test_an_empty_run_config_does_not_turn_off_the_resume_checks(
    change: str,
    field: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The checkpoint carries its own record of the settings it was trained with."""
    run = tmp_path / "run"
    stop_at(monkeypatch, 1)
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 6)) == 143
    monkeypatch.undo()
    (run / "config.yaml").write_text("")
    capsys.readouterr()
    resumed = [*args(tiny_teacher_dir, corpus_file, run, cache_dir, 6), change, "--resume"]
    assert main(resumed) == 2
    line = one_error_line(capsys)
    assert f"cannot resume {run}" in line and field in line and "then" in line and "now" in line
    assert (run / "config.yaml").read_text() == ""  # nothing rewritten


def test_resume_of_a_folder_that_does_not_exist_is_refused(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "rnus" / "tiny"
    assert main([*args(tiny_teacher_dir, corpus_file, typo, cache_dir, 2), "--resume"]) == 2
    assert f"nothing to resume in {typo}" in one_error_line(capsys)
    assert not typo.exists()


def test_a_checkpoint_from_before_a_setting_existed_resumes_while_the_setting_keeps_its_default(
    tmp_path: Path,
) -> None:
    """A checkpoint written before ``teacher_cache``, ``cache.*`` and ``data.static_masks`` existed records none of
    them: at their defaults they change nothing; set otherwise, they are a change like any other."""
    config = DistillConfig(output_dir=str(tmp_path))
    settings = {
        key: value
        for key, value in run_settings(config).items()
        if not key.startswith(("cache.", "teacher_cache", "data.static_masks"))
    }
    latest = tmp_path / "step-00000002"
    latest.mkdir()
    state = {"data_order": DATA_ORDER, "settings": settings, "complete": False}
    (latest / STATE_FILE).write_text(json.dumps(state))
    check_resumed_settings(config, tmp_path, latest)
    changed = replace(config, data=replace(config.data, static_masks=True))
    with pytest.raises(MonodistillError, match=r"data.static_masks \(False then, True now\)"):
        check_resumed_settings(changed, tmp_path, latest)
