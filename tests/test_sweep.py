"""Students sharing a teacher pass end exactly as if distilled alone: identity, resume, divergence, memory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from monodistill import losses, sweep
from monodistill.checkpoint import list_checkpoints, read_metrics
from monodistill.cli import main
from monodistill.config import DistillConfig, load_config
from monodistill.distill import TeacherPass, loop
from monodistill.errors import Interrupted, MonodistillError, NonFiniteLoss
from monodistill.recipe import distill_students
from monodistill.sweep import shared_teacher_groups

from .conftest import REPO_ROOT
from .test_distill import STUDENT, args, assert_same_weights, stop_at

# Three students that differ in shape, temperature and initialisation; the last copies teacher layers.
STUDENTS = {
    "deep": ["loss.temperature=2"],
    "shallow": ["student.num_layers=1", "loss.temperature=4", "train.learning_rate=1e-3"],
    "wide": [
        "student.init=teacher-layers",
        "student.hidden_size=32",
        "student.num_heads=4",
        "student.intermediate_size=64",
        "loss.temperature=1",
        "loss.alpha_mlm=0.2",
    ],
}
STUDENT_SHAPE = [
    item for item in args(Path(), Path(), Path(), Path(), 1) if item.startswith(("student.", "data.", "train."))
]
COMMON = ("train.gradient_accumulation_steps=2", "train.log_interval=1", "train.eval_interval=3")


def student_args(teacher: Path, corpus: Path, run: Path, cache: Path, steps: int, name: str, save: int) -> list[str]:
    return args(teacher, corpus, run, cache, steps, *COMMON, f"student.name={name}", *STUDENTS[name], save=save)


def group_configs(
    teacher: Path, corpus: Path, root: Path, cache: Path, steps: int, save: int = 2
) -> list[DistillConfig]:
    configs = []
    for name in STUDENTS:
        argv = student_args(teacher, corpus, root / name, cache, steps, name, save)
        overrides = [item for item in argv[1:] if "=" in item and not item.startswith("-")]
        updates = {**group_updates(teacher, corpus, cache, steps, save), "output_dir": str(root / name)}
        configs.append(load_config(DistillConfig, overrides=overrides, updates=updates))
    return configs


def group_updates(teacher: Path, corpus: Path, cache: Path, steps: int, save: int = 2) -> dict[str, object]:
    return {
        "teacher": {"name_or_path": str(teacher)},
        "data": {"corpus": str(corpus), "cache_dir": str(cache)},
        "train": {"max_steps": steps, "save_interval": save},
    }


def test_a_group_of_three_ends_bit_identical_to_each_student_alone(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    for name in STUDENTS:
        assert main(student_args(*common, tmp_path / "alone" / name, cache_dir, 6, name, save=2)) == 0
    configs = group_configs(*common, tmp_path / "group", cache_dir, 6)
    assert shared_teacher_groups(configs) == [[0, 1, 2]]

    calls = {"teacher": 0, "validation": 0}
    real_forward, real_validate = TeacherPass.__call__, loop.validate

    def counted(self: TeacherPass, *a: object, **k: object) -> object:
        calls["teacher"] += not k.get("outside_mass")  # validation asks for the mass outside the vocabulary
        return real_forward(self, *a, **k)  # type: ignore[arg-type]

    def counted_validation(teacher: TeacherPass, stream: object, runs: list[object]) -> object:
        calls["validation"] += 1
        assert len(runs) == 3
        return real_validate(teacher, stream, runs)  # type: ignore[arg-type]

    monkeypatch.setattr(TeacherPass, "__call__", counted)
    monkeypatch.setattr(loop, "validate", counted_validation)
    distill_students(configs)
    assert calls["teacher"] == 6 * 2  # one teacher pass per micro-batch for all three students
    assert calls["validation"] == 2  # at steps 3 and 6, one pass for all three students

    for name in STUDENTS:
        alone, grouped = tmp_path / "alone" / name, tmp_path / "group" / name
        assert_same_weights(alone, grouped)
        # Own metrics, checkpoints and TensorBoard run, as if alone.
        drop = ("tokens_per_second",)
        assert [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(alone)] == [
            {k: v for k, v in r.items() if k not in drop} for r in read_metrics(grouped)
        ]
        assert [p.name for p in list_checkpoints(grouped)] == ["step-00000004", "step-00000006"]
        assert list((grouped / "tensorboard").rglob("events.out.tfevents.*"))
        assert f"name: {name}" in (grouped / "config.yaml").read_text()


def test_a_diverging_student_stops_alone_and_the_others_finish(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_sum = losses.LogitKL.sum

    def poisoned(self: losses.LogitKL, *a: object, **k: object) -> torch.Tensor:
        value = real_sum(self, *a, **k)
        return value * float("nan") if self.temperature == 4.0 else value  # the "shallow" student

    monkeypatch.setattr(losses.LogitKL, "sum", poisoned)
    configs = group_configs(tiny_teacher_dir, corpus_file, tmp_path, cache_dir, 4)
    with pytest.raises(MonodistillError, match=r"1 of 3 students stopped: shallow: non-finite loss at step 1"):
        distill_students(configs)
    assert not (tmp_path / "shallow" / "student").exists()
    for name in ("deep", "wide"):
        assert (tmp_path / name / "student" / "model.safetensors").is_file()
        assert list_checkpoints(tmp_path / name)[-1].name == "step-00000004"


def test_a_group_that_does_not_fit_is_refused_before_training_with_a_split(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "available_bytes", lambda device: 200_000)
    configs = group_configs(tiny_teacher_dir, corpus_file, tmp_path, cache_dir, 4)
    with pytest.raises(MonodistillError, match=r"split the group, e.g. \[.*\] \+ \[.*\]"):
        distill_students(configs)
    assert not any(list_checkpoints(tmp_path / name) for name in STUDENTS)


def test_students_that_see_other_batches_are_not_grouped(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    configs = group_configs(tiny_teacher_dir, corpus_file, tmp_path, cache_dir, 4)
    other_seed = load_config(DistillConfig, overrides=["train.seed=7"], updates={"output_dir": str(tmp_path / "x")})
    apart = load_config(DistillConfig, overrides=["train.share_teacher=false"], updates={"output_dir": "y"})
    assert shared_teacher_groups([*configs, other_seed, apart]) == [[0, 1, 2], [3], [4]]
    with pytest.raises(MonodistillError, match="differ in .*train.seed"):
        distill_students([configs[0], other_seed])


GROUP_SCRIPT = """
import sys
from pathlib import Path
from tests.test_sweep import group_configs
from monodistill.recipe import distill_students
teacher, corpus, root, cache, steps = sys.argv[1:]
configs = group_configs(Path(teacher), Path(corpus), Path(root), Path(cache), int(steps), save=3)
distill_students(configs, resume=True)
"""


@pytest.mark.slow
def test_a_group_killed_mid_run_resumes_to_the_same_weights(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    steps, common = 60, (tiny_teacher_dir, corpus_file)
    distill_students(group_configs(*common, tmp_path / "straight", cache_dir, steps, save=3))

    killed = tmp_path / "killed"
    command = [sys.executable, "-c", GROUP_SCRIPT, *map(str, (*common, killed, cache_dir, steps))]
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    run = killed / "wide"
    while time.monotonic() < deadline and not any(int(p.name.split("-")[1]) >= 9 for p in list_checkpoints(run)):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert all(int(list_checkpoints(killed / name)[-1].name.split("-")[1]) < steps for name in STUDENTS)
    assert not any((killed / name / "student").exists() for name in STUDENTS)
    # One student behind the others, as when the kill lands between their saves: it catches up alone.
    behind = list_checkpoints(killed / "deep")
    if len(behind) > 1:
        shutil.rmtree(behind[-1])

    distill_students(group_configs(*common, killed, cache_dir, steps, save=3), resume=True)
    for name in STUDENTS:
        assert_same_weights(tmp_path / "straight" / name, killed / name)


def test_run_groups_compatible_students_and_logs_the_groups(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monodistill.pipeline import _distil_students

    configs = group_configs(tiny_teacher_dir, corpus_file, tmp_path, cache_dir, 2)
    other_data = load_config(
        DistillConfig,
        overrides=["data.data_fraction=0.5", "student.name=half", *STUDENT],
        updates={**group_updates(tiny_teacher_dir, corpus_file, cache_dir, 2), "output_dir": str(tmp_path / "half")},
    )
    folders = _distil_students([*configs, other_data])
    assert folders == [tmp_path / name / "student" for name in (*STUDENTS, "half")]
    assert "4 students in 2 groups, one teacher pass per group: [deep, shallow, wide] [half]" in capsys.readouterr().out


def test_a_stop_signal_saves_every_student_and_the_group_resumes_exactly(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    distill_students(group_configs(*common, tmp_path / "straight", cache_dir, 6, save=3))

    stop_at(monkeypatch, 3)  # during step four
    stopped = tmp_path / "stopped"
    with pytest.raises(Interrupted, match="stopped by signal 15 with checkpoints saved for deep step 4"):
        distill_students(group_configs(*common, stopped, cache_dir, 6, save=3))
    assert all(list_checkpoints(stopped / name)[-1].name == "step-00000004" for name in STUDENTS)
    monkeypatch.undo()
    distill_students(group_configs(*common, stopped, cache_dir, 6, save=3), resume=True)
    for name in STUDENTS:
        assert_same_weights(tmp_path / "straight" / name, stopped / name)


def test_distill_takes_a_config_listing_several_students(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`distill --config` with a `students` list distils them in one group, laid out as `run` lays them out,
    each student bit-identical to `distill` of that student alone."""
    common = (tiny_teacher_dir, corpus_file)
    shape = dict(item.removeprefix("student.").split("=") for item in STUDENT if item.startswith("student."))
    students = [{**shape, "name": name, "overrides": overrides} for name, overrides in STUDENTS.items()]
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump({"teacher": {"name_or_path": str(tiny_teacher_dir)}, "students": students}, sort_keys=False)
    )
    out = tmp_path / "sweep"
    shared = [item for item in STUDENT if not item.startswith("student.")]
    command = [
        "distill", "--config", str(sweep_file), "--corpus", str(corpus_file), "--output", str(out),
        "--max-steps", "4", "--save-steps", "2", *shared, *COMMON, f"data.cache_dir={cache_dir}",
    ]  # fmt: skip
    assert main(command) == 0
    log = capsys.readouterr().out
    assert "distilling 3 students (deep, shallow, wide) with one teacher pass" in log
    assert log.strip().endswith(str(out / "students"))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["config.yaml", "students"]

    alone = tmp_path / "alone"
    assert main(student_args(*common, alone, cache_dir, 4, "shallow", save=2)) == 0
    assert_same_weights(alone, out / "students" / "shallow")

    # Accidents: the same command again, --student beside a students list, then --resume.
    assert main(command) == 2
    assert "already holds a run (students); pass --resume" in capsys.readouterr().err
    assert main([*command, "--student", "dbert-tiny"]) == 2
    assert "lists its students; give one or the other" in capsys.readouterr().err
    assert main([*command, "--resume"]) == 0
    assert log.count("already complete") == 0 and capsys.readouterr().out.count("is already complete") == 3


class ScriptedRun:
    """A stand-in ``StudentRun`` for ``loop.fit``: records the batch of every step it trains, and its loss turns
    non-finite on the batch of step ``fails_at``."""

    def __init__(self, name: str, step: int, total_steps: int, fails_at: int | None = None) -> None:
        self.name, self.step, self.total_steps, self.fails_at = name, step, total_steps, fails_at
        self.error: NonFiniteLoss | None = None
        self.final_metrics: dict[str, float] | None = {}  # scored already: no final validation
        self.needs = losses.Needs()
        self.config = DistillConfig()  # the progress bar shows the parts its loss trains
        self.trained: list[tuple[int, int]] = []
        """(the run's step, the batch's step) of every micro-batch trained."""

    def train_micro(self, batch: int, teacher: object, last: bool) -> None:
        if batch == self.fails_at:
            self.error = NonFiniteLoss(f"non-finite loss at step {batch + 1}")
            return
        self.trained.append((self.step, batch))

    def optimizer_step(self) -> dict[str, float]:
        self.step += 1
        return {"loss": 0.0}

    def validates_now(self) -> bool:
        return False

    def record_step(self, metrics: dict[str, float], validation: dict[str, float] | None) -> None:
        pass


class StepStream:
    """Batches that are just the index of their step."""

    global_batch = block_length = 1

    def step(self, index: int) -> list[int]:
        return [index]


def test_a_student_that_stops_while_catching_up_does_not_set_the_others_back() -> None:
    """A resumed student behind the others stops (non-finite loss) during its catch-up; listed first, it used to
    set the group's start: the others re-ran steps they had taken, on the wrong batches."""
    behind = ScriptedRun("behind", step=2, total_steps=6, fails_at=3)
    ahead = ScriptedRun("ahead", step=4, total_steps=6)
    loop.fit(None, StepStream(), [behind, ahead])  # type: ignore[arg-type, list-item]
    assert behind.trained == [(2, 2)] and behind.step == 3 and behind.error is not None
    assert ahead.trained == [(4, 4), (5, 5)] and ahead.step == 6


def test_students_to_train_together_must_be_at_the_same_step() -> None:
    runs = [ScriptedRun("first", step=2, total_steps=6), ScriptedRun("second", step=4, total_steps=6)]
    with pytest.raises(AssertionError, match=r"first at step 2, second at step 4"):
        loop.train(None, StepStream(), runs, 6, loop.StopRequest())  # type: ignore[arg-type]
