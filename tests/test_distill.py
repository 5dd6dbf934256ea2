"""End-to-end distillation on CPU: outputs, metrics, resume after SIGTERM and SIGKILL, NaN, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, pipeline

from monodistill import losses
from monodistill.checkpoint import list_checkpoints, read_metrics
from monodistill.cli import main
from monodistill.data.batches import BatchStream, MaskedBatch

from .conftest import REPO_ROOT

STUDENT = [
    "student.preset=custom",
    "student.num_layers=2",
    "student.hidden_size=16",
    "student.intermediate_size=32",
    "student.num_heads=2",
    "data.max_seq_length=32",
    "train.batch_size=4",
    "train.log_interval=2",
    "train.eval_interval=4",
    "data.max_validation_blocks=8",
    "train.keep_checkpoints=2",  # as runs longer than SHORT_RUN_STEPS keep them: the tests resume from either
]


def args(teacher: Path, corpus: Path, run: Path, cache: Path, steps: int, *extra: str, save: int = 4) -> list[str]:
    return [
        "distill",
        "--teacher", str(teacher),
        "--corpus", str(corpus),
        "--output", str(run),
        "--max-steps", str(steps),
        "--save-steps", str(save),
        *STUDENT,
        f"data.cache_dir={cache}",
        *extra,
    ]  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "student" / "model.safetensors"))


def stop_at(monkeypatch: pytest.MonkeyPatch, step: int, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to the run as it starts the step after ``step`` (as a scheduler or Ctrl-C would):
    it saves a checkpoint and stops. ``monkeypatch.undo()`` lets the next run go on undisturbed."""
    original = BatchStream.step

    def signalled(self: BatchStream, index: int) -> list[MaskedBatch]:
        if index == step:
            os.kill(os.getpid(), signum)
        return original(self, index)

    monkeypatch.setattr(BatchStream, "step", signalled)


def poison_loss(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th loss computed from now on NaN (through the MLM term: every objective computes it, once
    per micro-batch)."""
    calls = {"count": 0}
    real_sum = losses.MaskedLM.sum

    def poisoned(self: losses.MaskedLM, *a: object, **k: object) -> torch.Tensor:
        value = real_sum(self, *a, **k)
        calls["count"] += 1
        return value * float("nan") if calls["count"] == call else value

    monkeypatch.setattr(losses.MaskedLM, "sum", poisoned)


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def test_distill_end_to_end(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 8, "train.learning_rate=3e-3")) == 0

    student = AutoModelForMaskedLM.from_pretrained(run / "student")
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 16
    fill = pipeline("fill-mask", model=str(run / "student"))
    assert len(fill("ka [MASK] ta.")) == 5

    records = read_metrics(run)
    train = [r for r in records if r["split"] == "train"]
    validation = [r for r in records if r["split"] == "validation"]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert [r["step"] for r in validation] == [4, 8]
    for part in ("loss", "kl", "mlm", "learning_rate", "grad_norm", "tokens_per_second"):
        assert all(part in r for r in train), part
    for part in ("mlm_loss", "kl_to_teacher", "teacher_agreement", "student_accuracy", "teacher_accuracy"):
        assert 0 <= validation[-1][part] < 50, part
    assert train[-1]["loss"] < train[0]["loss"]  # it learns

    assert "loss:" in (run / "config.yaml").read_text()
    environment = json.loads((run / "environment.json").read_text())
    assert environment["versions"]["torch"] and "git_sha" in environment
    card = (run / "student" / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and str(tiny_teacher_dir) in card and "non-embedding" in card
    assert [p.name for p in list_checkpoints(run)] == ["step-00000004", "step-00000008"]
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))

    # A finished run is not redone, and a new run does not overwrite it.
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 8, "train.learning_rate=3e-3") + ["--resume"]) == 0
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 8)) == 2
    # Resuming with a setting that changes the trajectory is refused, naming the setting.
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 8, "loss.temperature=2") + ["--resume"]) == 2
    assert "loss.temperature" in capsys.readouterr().err


def test_sigterm_then_resume_ends_with_the_same_weights(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    extra = ("data.whole_word_mask=true", "train.log_interval=4")
    assert main(args(*common, tmp_path / "straight", cache_dir, 10, *extra)) == 0

    stop_at(monkeypatch, 5)
    resumed = tmp_path / "resumed"
    assert main(args(*common, resumed, cache_dir, 10, *extra)) == 143  # 128 + SIGTERM, as a shell says
    assert [p.name for p in list_checkpoints(resumed)][-1] == "step-00000006"
    monkeypatch.undo()
    assert main([*args(*common, resumed, cache_dir, 10, *extra), "--resume"]) == 0
    assert_same_weights(tmp_path / "straight", resumed)
    train = {r["step"]: r for r in read_metrics(resumed) if r["split"] == "train"}
    assert list(train) == [4, 8, 10]  # metrics after the checkpoint were not logged twice
    # Step 8 after resuming at 6 averages steps 5-8, as the uninterrupted run does: the running sums of
    # steps 5 and 6 travel in the checkpoint, so the log is the uninterrupted one's, not only its weights.
    straight = {r["step"]: r for r in read_metrics(tmp_path / "straight") if r["split"] == "train"}
    drop = ("tokens_per_second",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in train.values()] == [
        {k: v for k, v in r.items() if k not in drop} for r in straight.values()
    ]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_ends_with_the_same_weights(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    steps, common = 150, (tiny_teacher_dir, corpus_file)
    extra = ("train.eval_interval=50", "train.log_interval=10")
    assert main(args(*common, tmp_path / "straight", cache_dir, steps, *extra, save=5)) == 0

    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "monodistill.cli",
        *args(*common, killed, cache_dir, steps, *extra, save=5),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(int(p.name.split("-")[1]) >= 15 for p in list_checkpoints(killed)):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = list_checkpoints(killed)[-1]
    assert int(last.name.split("-")[1]) < steps, "killed too late to test anything"
    assert not (killed / "student").exists()

    assert main([*args(*common, killed, cache_dir, steps, *extra, save=5), "--resume"]) == 0
    assert_same_weights(tmp_path / "straight", killed)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    poison_loss(monkeypatch, 5)
    run = tmp_path / "run"
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 10, save=2)) == 2
    error = capsys.readouterr().err
    assert "non-finite loss at step 5" in error and "step-00000004" in error
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002", "step-00000004"]
    assert not (run / "student").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"teacher": "missing-folder/x/y"}, "teacher path missing-folder/x/y does not exist"),
        ({"teacher": "nobody/offline-model"}, "--local-dir"),
        ({"corpus": "EMPTY"}, "is empty"),
        ({"corpus": "BLANK"}, "no usable line"),
        ({"extra": "data.max_seq_length=128"}, "beyond the teacher's 64 positions"),
        ({"extra": "loss.alpha_kl=0 loss.alpha_mlm=0"}, "every loss weight"),
        ({"extra": "loss.temperature=0"}, "loss.temperature must be > 0"),
        ({"extra": "student.preset=dbert-mega"}, "unknown student preset"),
        ({"extra": "loss.alpha_cosine=1"}, "needs equal hidden sizes"),
        ({"extra": "train.mixed_precision=fp16"}, "fp16 needs a CUDA GPU"),
    ],
)
def test_bad_input_gets_one_clear_error_before_training(
    change: dict[str, str],
    message: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = {"EMPTY": "", "BLANK": "\n \n\t\n"}
    corpus_path = corpus_file
    if change.get("corpus") in corpus:
        corpus_path = tmp_path / "bad.txt"
        corpus_path.write_text(corpus[change["corpus"]])
    teacher = Path(change.get("teacher", tiny_teacher_dir))
    argv = args(teacher, corpus_path, tmp_path / "run", cache_dir, 2)
    # The overrides replace the student shape's preset where a test asks for another one.
    extra = change.get("extra", "").split()
    if any(item.startswith("student.preset") for item in extra):
        argv = [item for item in argv if not item.startswith("student.preset")]
    assert main(argv + extra) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not list_checkpoints(tmp_path / "run")


@pytest.mark.slow
def test_two_processes_share_the_work_with_no_code_change(
    still_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """torchrun with gloo on CPU exercises the same DDP path as `accelerate launch` on GPUs: both ranks end
    with the same weights, which are those of one process taking the same global batch (2 x 4 = 1 x 8)."""
    run = tmp_path / "ddp"
    faults = REPO_ROOT / "tests" / "distributed_faults.py"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        str(faults),
        *args(still_teacher_dir, corpus_file, run, cache_dir, 4),
    ]
    ranks = tmp_path / "ranks"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "WEIGHTS_DIR": str(ranks),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert AutoModelForMaskedLM.from_pretrained(run / "student").config.num_hidden_layers == 2
    assert [r["step"] for r in read_metrics(run) if r["split"] == "train"] == [2, 4]  # logged once, not per rank
    per_rank = [load_file(str(ranks / f"rank-{rank}.safetensors")) for rank in (0, 1)]
    saved = weights(run)
    for name, tensor in saved.items():
        assert torch.equal(per_rank[0][name], per_rank[1][name]), f"{name} differs between the ranks"
        assert torch.equal(per_rank[0][name], tensor), f"{name} differs from the saved student"

    one = tmp_path / "one"
    assert main(args(still_teacher_dir, corpus_file, one, cache_dir, 4, "train.batch_size=8")) == 0
    for name, tensor in weights(one).items():
        assert torch.allclose(tensor, saved[name], rtol=1e-4, atol=1e-6), f"{name}: 2 x 4 is not 1 x 8"


def test_ctrl_c_saves_a_checkpoint_and_exits_130(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop_at(monkeypatch, 3, signal.SIGINT)
    run = tmp_path / "run"
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 10)) == 130
    assert "stopped by signal 2 at step 4/10" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(run)][-1] == "step-00000004"


def test_accumulation_splits_a_step_without_changing_it(
    still_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """One micro-batch of 8 blocks and two of 4 are the same optimizer step: the same blocks and masks, and a
    gradient that is the mean over every masked token of the step. Whole-word masks make the two halves'
    token counts differ, so a mean of per-micro-batch means would weight their tokens unequally."""
    common = ("data.whole_word_mask=true", "train.warmup_ratio=0", "train.log_interval=1")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args(still_teacher_dir, corpus_file, one, cache_dir, 3, *common, "train.batch_size=8")) == 0
    split = ("train.batch_size=4", "train.gradient_accumulation_steps=2")
    assert main(args(still_teacher_dir, corpus_file, two, cache_dir, 3, *common, *split)) == 0
    a, b = weights(one), weights(two)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name
    logged = [{r["step"]: r["loss"] for r in read_metrics(run) if r["split"] == "train"} for run in (one, two)]
    assert logged[0] == pytest.approx(logged[1], rel=1e-5)  # the logged loss does not depend on the split either
