"""Resuming with another length: a finished run is extended on the new schedule; an unfinished one is not bent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monodistill.checkpoint import list_checkpoints, read_metrics
from monodistill.cli import main

from .test_distill import args, weights

LOG_EVERY_STEP = ("train.log_interval=1", "train.warmup_ratio=0")


def learning_rates(run: Path) -> dict[int, float]:
    return {r["step"]: r["learning_rate"] for r in read_metrics(run) if r["split"] == "train"}


def test_a_finished_run_given_more_steps_continues_on_the_schedule_of_the_new_length(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, common = tmp_path / "run", (tiny_teacher_dir, corpus_file)
    assert main(args(*common, run, cache_dir, 4, *LOG_EVERY_STEP)) == 0
    first = weights(run)
    assert main([*args(*common, run, cache_dir, 8, *LOG_EVERY_STEP), "--resume"]) == 0
    assert "extending the finished run" in capsys.readouterr().out
    assert list_checkpoints(run)[-1].name == "step-00000008"
    assert any(not (first[name] == tensor).all() for name, tensor in weights(run).items())  # it trained on
    rates = learning_rates(run)
    assert sorted(rates) == list(range(1, 9))
    # Linear decay without warmup: step s (1-based) trains at lr * (1 - (s - 1) / total).
    peak = rates[1]
    assert [rates[s] / peak for s in (1, 2, 3, 4)] == pytest.approx([1, 0.75, 0.5, 0.25])
    assert [rates[s] / peak for s in (5, 6, 7, 8)] == pytest.approx([0.5, 0.375, 0.25, 0.125])

    # Shorter than what it has already trained: refused, nothing touched.
    assert main([*args(*common, run, cache_dir, 6, *LOG_EVERY_STEP), "--resume"]) == 2
    assert "already trained 8 steps, more than the 6" in capsys.readouterr().err
    assert list_checkpoints(run)[-1].name == "step-00000008"

    # The same length again: nothing to do.
    assert main([*args(*common, run, cache_dir, 8, *LOG_EVERY_STEP), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("train.max_steps=12", "train.max_steps"),
        ("train.warmup_ratio=0.5", "train.warmup_ratio"),
        ("train.epochs=2", "train.epochs"),
    ],
)
def test_an_unfinished_run_refuses_a_change_that_bends_its_schedule(
    change: str,
    field: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, common = tmp_path / "run", (tiny_teacher_dir, corpus_file)
    extra = (*LOG_EVERY_STEP, "train.keep_checkpoints=8")
    assert main(args(*common, run, cache_dir, 8, *extra, save=2)) == 0
    # Make it a run stopped at step 4: later checkpoints and the student go.
    for path in list_checkpoints(run)[2:]:
        shutil.rmtree(path)
    shutil.rmtree(run / "student")
    steps = 12 if field == "train.max_steps" else 8
    argv = args(*common, run, cache_dir, steps, *extra, save=2)
    if field != "train.max_steps":
        argv.append(change)
    assert main([*argv, "--resume"]) == 2
    error = capsys.readouterr().err
    assert field in error and "learning-rate schedule of an unfinished run" in error
    assert list_checkpoints(run)[-1].name == "step-00000004"


def test_an_extension_killed_before_its_next_checkpoint_is_not_reported_finished(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Done is decided from the checkpoint's own state (the length it was trained for), not from a
    config.yaml that an extension rewrote before it died."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from .conftest import REPO_ROOT

    run, common = tmp_path / "run", (tiny_teacher_dir, corpus_file)
    assert main(args(*common, run, cache_dir, 4, *LOG_EVERY_STEP, save=4)) == 0
    four_steps = weights(run)
    # Extended to 60 steps with no checkpoint before the end, and killed on the way.
    longer = [*args(*common, run, cache_dir, 60, *LOG_EVERY_STEP, save=1000), "--resume"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(
        [sys.executable, "-m", "monodistill.cli", *longer],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and max([0, *learning_rates(run)]) < 6:
        assert process.poll() is None, "the extension ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list_checkpoints(run)[-1].name == "step-00000004"

    capsys.readouterr()
    assert main(longer) == 0
    assert "already complete" not in capsys.readouterr().out
    assert list_checkpoints(run)[-1].name == "step-00000060"
    assert any(not torch.equal(four_steps[name], tensor) for name, tensor in weights(run).items())


def test_the_logged_learning_rate_is_the_one_of_the_logged_step(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Logged every 4 steps, the loss is the 4 steps' mean, but the learning rate is the step's own (a mean
    over a warmup would rise while the schedule decays)."""
    run = tmp_path / "run"
    assert (
        main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 8, "train.log_interval=4", "train.warmup_ratio=0"))
        == 0
    )
    rates = learning_rates(run)
    assert sorted(rates) == [4, 8]
    # Linear decay without warmup: step s (1-based) trains at lr * (1 - (s - 1) / 8).
    assert rates[8] / rates[4] == pytest.approx((1 - 7 / 8) / (1 - 3 / 8))
