"""Every command stops on SIGTERM (143) and SIGINT (130) after saving what is finished, and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from .conftest import REPO_ROOT, save_teacher, write_keyword_task

# Runs `monodistill evaluate` with the second fine-tuning run signalling this process as it starts.
EVALUATE = """
import os, signal, sys
from monodistill.cli import main
from monodistill.evaluate import harness
real, calls = harness.finetune, []
def finetune(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return real(*args, **kwargs)
harness.finetune = finetune
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    ("name", "status", "ignored"),
    [("SIGTERM", 143, False), ("SIGINT", 130, True)],  # SIGINT as a shell leaves it for a background job
)
def test_evaluate_stops_on_a_signal_keeping_the_finished_results(
    name: str, status: int, ignored: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(write_keyword_task(tmp_path)), "--output", str(out)]
    argv += ["--seeds", "3", "epochs=1", "max_length=16", "max_train_samples=16", "max_eval_samples=8"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    result = subprocess.run(
        [sys.executable, "-c", EVALUATE, name, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=ignore_sigint if ignored else None,
    )
    assert result.returncode == status, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("monodistill evaluate")]
    assert len(lines) == 1 and f"stopped by signal {getattr(signal, name).value} ({name})" in lines[0]
    assert "monodistill evaluate --model" in lines[0] and "to continue" in lines[0]
    finished = list((out / "results").rglob("seed-*.json"))
    assert len(finished) == 1 and json.loads(finished[0].read_text())["seed"] == 42  # the first run is kept
