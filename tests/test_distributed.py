"""Two processes (torchrun, gloo, CPU) take every decision together: stop signals, NaN, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monodistill.checkpoint import list_checkpoints, read_metrics

from .conftest import REPO_ROOT
from .test_distill import args, assert_same_weights

pytestmark = pytest.mark.slow

FAULTS_SCRIPT = Path(__file__).with_name("distributed_faults.py")


def torchrun(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
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
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240)


def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_resumes_exactly(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    extra = ("train.log_interval=2",)
    parts = tmp_path / "parts"
    parts.mkdir()
    straight = torchrun(args(*common, tmp_path / "straight", cache_dir, 10, *extra, save=4), PARTS_DIR=str(parts))
    assert straight.returncode == 0, straight.stderr[-3000:]

    # Logged train metrics are means over both ranks, not rank 0's alone.
    per_rank = [
        {r["step"]: r for r in map(json.loads, (parts / f"rank-{rank}.jsonl").read_text().splitlines())}
        for rank in (0, 1)
    ]
    assert per_rank[0][1]["loss"] != per_rank[1][1]["loss"]  # the ranks saw different blocks
    logged = {r["step"]: r for r in read_metrics(tmp_path / "straight") if r["split"] == "train"}
    for step in (2, 10):
        expected = sum(per_rank[rank][s]["loss"] for rank in (0, 1) for s in (step - 1, step)) / 4
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
