"""Two processes (torchrun, gloo, CPU) take every decision together: stop signals, NaN, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from monodistill.checkpoint import list_checkpoints, read_metrics

from .conftest import REPO_ROOT
from .test_distill import args, assert_same_weights

pytestmark = pytest.mark.slow

FAULTS_SCRIPT = Path(__file__).with_name("distributed_faults.py")


def torchrun(argv: list[str], timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``monodistill`` on 2 CPU processes through the fault-injecting launcher."""
    command = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", str(FAULTS_SCRIPT), *argv]
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    # A hang in a collective would show up here as a timeout.
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_resumes_exactly(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    extra = ("train.log_interval=2",)
    parts = tmp_path / "parts"
    parts.mkdir()
    straight = torchrun(args(*common, tmp_path / "straight", cache_dir, 10, *extra, save=4), PARTS_DIR=str(parts))
    assert straight.returncode == 0, straight.stderr[-3000:]

    # Each rank holds its share of a step's mean over every masked token of the step: the logged loss is
    # their sum (the mean over both ranks' tokens), averaged over the steps of the log interval.
    per_rank = [
        {r["step"]: r for r in map(json.loads, (parts / f"rank-{rank}.jsonl").read_text().splitlines())}
        for rank in (0, 1)
    ]
    assert per_rank[0][1]["loss"] != per_rank[1][1]["loss"]  # the ranks saw different blocks
    logged = {r["step"]: r for r in read_metrics(tmp_path / "straight") if r["split"] == "train"}
    for step in (2, 10):
        expected = sum(per_rank[rank][s]["loss"] for rank in (0, 1) for s in (step - 1, step)) / 2
        assert logged[step]["loss"] == pytest.approx(expected, rel=1e-9)

    stopped = tmp_path / "stopped"
    result = torchrun(args(*common, stopped, cache_dir, 10, *extra, save=4), FAULT="sigterm:1:5")
    assert result.returncode != 0
    # Rank 1 got the signal, rank 0 learned of it from the step's reduction: both stop after step 6.
    assert "stopped by signal 15 at step 6/10" in result.stderr
    assert "stopped by a signal sent to another rank at step 6/10" in result.stderr
    last = list_checkpoints(stopped)[-1]
    assert last.name == "step-00000006"
    assert (last / "random_states_0.pkl").is_file() and (last / "random_states_1.pkl").is_file()
    assert not (stopped / "student").exists()

    resumed = torchrun([*args(*common, stopped, cache_dir, 10, *extra, save=4), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(tmp_path / "straight", stopped)


def test_nan_on_one_rank_stops_both_and_keeps_the_last_good_checkpoint(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = tmp_path / "run"
    result = torchrun(args(tiny_teacher_dir, corpus_file, run, cache_dir, 10, save=2), FAULT="nan:1:5")
    assert result.returncode != 0
    # Both ranks stop before the backward pass of step 5, so neither waits in the gradient all-reduce.
    assert result.stderr.count("non-finite loss at step 5 on rank 1") == 2, result.stderr[-3000:]
    assert "Last good checkpoint" in result.stderr and "step-00000004" in result.stderr
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002", "step-00000004"]
    assert not (run / "student").exists()


def test_a_rank_without_validation_blocks_takes_every_collective(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """One validation block on two ranks: rank 1 scores no batch, yet joins every reduction of each validation
    (a rank that skipped one left the other waiting in it until the collective timeout)."""
    run = tmp_path / "run"
    extra = ("data.max_validation_blocks=1", "train.eval_interval=1", "train.collective_timeout_minutes=0.2")
    result = torchrun(args(tiny_teacher_dir, corpus_file, run, cache_dir, 2, *extra), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    validations = [record for record in read_metrics(run) if record["split"] == "validation"]
    assert [record["step"] for record in validations] == [1, 2]
    # The share is over rank 0's one block alone: rank 1 added nothing to either sum.
    assert all(0 < record["student_top_prediction_share"] <= 1 for record in validations)


def without_length(argv: list[str]) -> list[str]:
    """``argv`` with its --max-steps removed, so that train.epochs sets the length."""
    at = argv.index("--max-steps")
    return argv[:at] + argv[at + 2 :]


def test_resuming_on_another_number_of_processes_is_exact_or_refused(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The data order, masks, dropout and schedule are those of the global batch (blocks per optimizer step): a
    run resumes on another process count that keeps it, and is refused, saying how, on one that does not. The
    student has the tiny teacher's dropout (0.1): each micro-batch draws it from its place in the global batch,
    not from a stream per process."""
    from monodistill.cli import main

    epoch = ("train.epochs=1", "train.log_interval=1", "train.warmup_ratio=0")
    run_args = lambda run, *extra: without_length(
        args(tiny_teacher_dir, corpus_file, run, cache_dir, 1, *epoch, *extra, save=4)
    )
    straight = torchrun(run_args(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    # What a command prints for the user comes once, from rank 0, not once per rank.
    assert straight.stdout.count(f"{tmp_path / 'straight' / 'student'}\n") == 1, straight.stdout
    stopped = tmp_path / "stopped"
    result = torchrun(run_args(stopped), FAULT="sigterm:1:5")
    assert "stopped by signal 15 at step 6/" in result.stderr, result.stderr[-3000:]

    capsys.readouterr()
    assert main([*run_args(stopped), "--resume"]) == 2
    error = capsys.readouterr().err
    assert (
        "8 blocks per optimizer step (2 processes x train.batch_size 4 x train.gradient_accumulation_steps 1)" in error
    )
    assert "gives 4" in error and "torchrun --nproc_per_node 2" in error
    assert list_checkpoints(stopped)[-1].name == "step-00000006"

    # One process with twice the accumulation takes the same global batch: it continues exactly.
    assert main([*run_args(stopped, "train.gradient_accumulation_steps=2"), "--resume"]) == 0
    assert "on 1 processes (trained on 2) with the same 8 blocks per step: the same data order, masks, dropout" in (
        capsys.readouterr().out
    )
    assert list_checkpoints(stopped)[-1].name == list_checkpoints(tmp_path / "straight")[-1].name
    a, b = (
        load_file(str(tmp_path / "straight" / "student" / "model.safetensors")),
        load_file(str(stopped / "student" / "model.safetensors")),
    )
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name


def test_preparation_waits_on_files_and_a_wedged_rank_fails_the_job_quickly(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Corpus preparation on one rank may take far longer than the collective timeout (the others wait on a
    file lock, not in a collective); a rank that wedges in training fails the job after that timeout."""
    import time

    timeout = ("train.collective_timeout_minutes=0.1",)  # 6 seconds
    slow = torchrun(
        args(tiny_teacher_dir, corpus_file, tmp_path / "slow", cache_dir, 4, *timeout), FAULT="slowprep:0:15"
    )
    assert slow.returncode == 0, slow.stderr[-3000:]

    started = time.monotonic()
    wedged = torchrun(
        args(tiny_teacher_dir, corpus_file, tmp_path / "wedged", cache_dir, 8, *timeout), FAULT="wedge:1:2"
    )
    assert wedged.returncode != 0
    assert time.monotonic() - started < 100, "the job waited for the wedged rank"


def test_students_sharing_a_teacher_pass_on_two_processes_end_as_each_alone(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A group trains under torchrun as in one process: each student ends bit-identical to itself alone."""
    import yaml

    shape = {"preset": "custom", "num_layers": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "teacher": {"name_or_path": str(tiny_teacher_dir)},
                "students": [
                    {**shape, "name": "warm", "overrides": ["loss.temperature=2"]},
                    {**shape, "name": "hot", "overrides": ["loss.temperature=8", "train.learning_rate=1e-3"]},
                ],
                "data": {
                    "corpus": str(corpus_file),
                    "max_seq_length": 32,
                    "cache_dir": str(cache_dir),
                    "max_validation_blocks": 8,
                },
                "train": {"max_steps": 6, "batch_size": 4, "save_interval": 3, "eval_interval": 3},
            }
        )
    )
    grouped = torchrun(["distill", "--config", str(sweep), "--output", str(tmp_path / "group")])
    assert grouped.returncode == 0, grouped.stderr[-3000:]
    assert "distilling 2 students (warm, hot) with one teacher pass" in grouped.stdout
    alone = torchrun(
        args(tiny_teacher_dir, corpus_file, tmp_path / "hot", cache_dir, 6, "loss.temperature=8", save=3)
        + ["train.learning_rate=1e-3", "train.eval_interval=3", "student.name=hot"]
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert_same_weights(tmp_path / "hot", tmp_path / "group" / "students" / "hot")
