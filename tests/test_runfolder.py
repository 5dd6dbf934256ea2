"""Run folders survive accidents: two writers, stale runs, files as outputs, damaged checkpoints,
moved folders, changed data, full disks and stale evaluation results."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from monodistill import runfolder
from monodistill.checkpoint import MANIFEST_FILE, list_checkpoints, read_metrics
from monodistill.cli import main
from monodistill.errors import MonodistillError

from .conftest import REPO_ROOT, save_teacher, write_keyword_task
from .test_distill import args, assert_same_weights, poison_loss, stop_at


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("monodistill")]
    assert len(lines) == 1, err
    return lines[0]


# --- 1. one writer per folder ---


def test_a_second_process_on_a_busy_folder_is_refused_and_a_dead_ones_lock_is_taken_over(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = args(tiny_teacher_dir, corpus_file, run, cache_dir, 200, "train.eval_interval=0", save=20)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "monodistill.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(run):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not get going"
            time.sleep(0.05)
        assert main([*argv, "--resume"]) == 2
        assert f"{run} is in use by pid {first.pid}" in one_error_line(capsys)
        assert main(argv) == 2  # a fresh start too
        assert "in use" in one_error_line(capsys)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    if first.returncode == 0:
        pytest.skip("the first run finished before it could be killed (a very fast machine)")
    # The kernel dropped the dead process's lock: the folder is free again, and resumes.
    assert main([*argv, "--resume"]) == 0
    assert list_checkpoints(run)[-1].name == "step-00000200"


def test_evaluate_holds_its_output_folder(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(write_keyword_task(tmp_path)), "--output", str(out)]
    with runfolder.claim(out):
        assert main(argv) == 2
    assert f"{out} is in use by pid {os.getpid()}" in one_error_line(capsys)


REFUSAL_TIMER = """
import sys, time
from monodistill.cli import main
started = time.monotonic()
code = main(sys.argv[1:])
print(f"main took {time.monotonic() - started:.3f} s")
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["distill", "run", "evaluate"])
def test_a_second_writer_is_refused_at_once(
    command: str, tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Refused before the command imports what it trains with (which alone takes seconds): in under 2 s."""
    busy = tmp_path / "busy"
    experiment = tmp_path / "experiment.yaml"
    task = write_keyword_task(tmp_path)
    experiment.write_text(f"teacher:\n  name_or_path: {tiny_teacher_dir}\nevaluate:\n  tasks: [{task}]\n")
    argv = {
        "distill": args(tiny_teacher_dir, corpus_file, busy, cache_dir, 2),
        "run": ["run", "--config", str(experiment), "--output", str(busy)],
        "evaluate": ["evaluate", "--model", str(tiny_teacher_dir), "--task", str(task), "--output", str(busy)],
    }[command]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with runfolder.claim(busy):
        result = subprocess.run(
            [sys.executable, "-c", REFUSAL_TIMER, *argv], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{busy} is in use by pid {os.getpid()}; wait for it to finish" in result.stderr
    seconds = float(result.stdout.split("main took ")[1].split()[0])
    assert seconds < 2, f"the refusal took {seconds:.1f} s"


def fake_folder(folder: Path, *entries: str) -> Path:
    """A folder holding ``entries`` (a name with a suffix is a file), as a command would have left them."""
    folder.mkdir(parents=True)
    for name in entries:
        (folder / name).write_text("{}\n") if "." in name else (folder / name).mkdir()
    return folder


def test_no_command_writes_into_another_commands_folder(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distill_config = f"teacher:\n  name_or_path: {tiny_teacher_dir}\nstudent:\n  preset: custom\n"
    distilled = fake_folder(tmp_path / "distilled", "checkpoints", "student", "metrics.jsonl")
    (distilled / "config.yaml").write_text(distill_config)
    evaluated = fake_folder(tmp_path / "evaluated", "config.yaml", "results", "summary.json")
    experiment = fake_folder(tmp_path / "experiment", "config.yaml", "students", "evaluate")
    started_only = fake_folder(tmp_path / "started-only")  # a run killed before it wrote more than its config
    (started_only / "config.yaml").write_text(distill_config)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"teacher:\n  name_or_path: {tiny_teacher_dir}\nstudents:\n  - preset: dbert-tiny\n")

    def evaluate(output: Path) -> list[str]:
        return ["evaluate", "--model", str(tiny_teacher_dir), "--task", "x.yaml", "--output", str(output)]

    refusals = [
        (evaluate(distilled), "distillation run", "an evaluation"),
        (["run", "--config", str(sweep), "--output", str(distilled)], "distillation run", "an experiment"),
        (["run", "--config", str(sweep), "--output", str(started_only)], "distillation run", "an experiment"),
        (evaluate(experiment), "experiment", "an evaluation"),
        (args(tiny_teacher_dir, corpus_file, experiment, cache_dir, 2), "experiment", "a distillation run"),
        ([*args(tiny_teacher_dir, corpus_file, evaluated, cache_dir, 2), "--overwrite"], "evaluation", "a distill"),
        (["distill", "--config", str(sweep), "--output", str(evaluated)], "evaluation", "an experiment"),
    ]
    for argv, held, written in refusals:
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert f"is a{'n' if held[0] in 'ae' else ''} {held} folder (it holds " in line, line
        assert f"this command writes {written}" in line and line.endswith("choose another --output"), line
    assert main(evaluate(distilled)) == 2
    assert f"{distilled} is a distillation run folder (it holds checkpoints, student, metrics.jsonl)" in (
        one_error_line(capsys)
    )
    assert (distilled / "config.yaml").read_text() == distill_config
    assert sorted(path.name for path in evaluated.iterdir()) == ["config.yaml", "results", "summary.json"]
    # The claim checks too, for stages called from Python.
    with pytest.raises(MonodistillError, match="is an evaluation folder"), runfolder.claim(evaluated, "experiment"):
        pass


# --- 2. a fresh run never appends to an old one ---


def test_a_run_killed_before_its_first_checkpoint_is_not_appended_to(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 4)) == 0
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "student")  # as if killed before its first checkpoint: config and metrics remain
    stale = len(read_metrics(run))
    assert stale > 0

    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 4)) == 2
    line = one_error_line(capsys)
    assert "already holds a run (config.yaml" in line and "--resume" in line and "--overwrite" in line

    assert main([*args(tiny_teacher_dir, corpus_file, run, cache_dir, 4), "--overwrite"]) == 0
    records = read_metrics(run)
    assert len(records) == stale and [r["step"] for r in records] == sorted(r["step"] for r in records)

    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "student")
    assert main([*args(tiny_teacher_dir, corpus_file, run, cache_dir, 4), "--resume"]) == 0
    assert len(read_metrics(run)) == stale  # started from step 0 without the old records


# --- 3. an output path that is a file ---


@pytest.mark.parametrize("command", ["distill", "evaluate", "report", "run"])
def test_an_output_that_is_a_file_is_refused_before_anything_loads(
    command: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "taken.txt"
    output.write_text("not a folder\n")
    argv = {
        "distill": args(tiny_teacher_dir, corpus_file, output, cache_dir, 2),
        "evaluate": ["evaluate", "--model", str(tiny_teacher_dir), "--task", "x.yaml", "--output", str(output)],
        "report": ["report", str(tmp_path), "--output", str(output)],
        "run": ["run", "--config", str(REPO_ROOT / "configs" / "local-quickstart.yaml"), "--output", str(output)],
    }[command]
    started = time.monotonic()
    assert main(argv) == 2
    assert f"{output} exists and is not a folder" in one_error_line(capsys)
    assert output.read_text() == "not a folder\n"
    assert time.monotonic() - started < 5  # no model was loaded


# --- 4. resume takes the newest intact checkpoint ---


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate:pytorch_model.bin", "pytorch_model.bin has"),
        ("delete:optimizer.bin", "optimizer.bin is missing"),
        ("delete:random_states_0.pkl", "random_states_0.pkl is missing"),
    ],
)
def test_resume_skips_a_damaged_checkpoint_for_the_previous_intact_one(
    damage: str,
    reason: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    extra = ("train.keep_checkpoints=5",)
    assert main(args(*common, tmp_path / "straight", cache_dir, 10, *extra, save=2)) == 0
    run = tmp_path / "run"
    stop_at(monkeypatch, 5)
    assert main(args(*common, run, cache_dir, 10, *extra, save=2)) == 143
    monkeypatch.undo()
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step-00000006" and (newest / MANIFEST_FILE).is_file()
    kind, name = damage.split(":")
    if kind == "truncate":
        data = (newest / name).read_bytes()
        (newest / name).write_bytes(data[: len(data) // 2])
    else:
        (newest / name).unlink()
    capsys.readouterr()

    assert main([*args(*common, run, cache_dir, 10, *extra, save=2), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"skipping damaged checkpoint {newest}: {reason}" in out
    assert "resumed from" in out and "step-00000004" in out
    assert_same_weights(tmp_path / "straight", run)


def test_a_run_whose_every_checkpoint_is_damaged_is_refused(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    stop_at(monkeypatch, 1)
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 10, save=4)) == 143
    monkeypatch.undo()
    (only,) = list_checkpoints(run)
    (only / "optimizer.bin").write_bytes(b"")
    capsys.readouterr()
    assert main([*args(tiny_teacher_dir, corpus_file, run, cache_dir, 10, save=4), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "no intact checkpoint" in line and "step-00000002: optimizer.bin has 0 of its" in line
    assert "--overwrite" in line


def test_a_damaged_checkpoint_is_moved_aside_and_never_named_good_again(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, common = tmp_path / "run", (tiny_teacher_dir, corpus_file)
    argv = args(*common, run, cache_dir, 10, "train.keep_checkpoints=3", save=2)
    stop_at(monkeypatch, 5)
    assert main(argv) == 143
    monkeypatch.undo()
    damaged = list_checkpoints(run)[-1]
    assert damaged.name == "step-00000006"
    (damaged / "optimizer.bin").write_bytes(b"")
    capsys.readouterr()

    poison_loss(monkeypatch, 1)  # the first step after resuming diverges
    assert main([*argv, "--resume"]) == 2
    captured = capsys.readouterr()
    aside = run / "checkpoints" / "damaged-step-00000006"
    assert f"skipping damaged checkpoint {damaged}: optimizer.bin has 0 of its" in captured.out
    assert f"moved it to {aside}" in captured.out
    assert "Last good checkpoint: " + str(run / "checkpoints" / "step-00000004") in captured.err
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002", "step-00000004"]
    assert (aside / "optimizer.bin").is_file()


# --- 5. the same folder spelled differently, or moved ---


def test_the_same_folder_spelled_differently_or_moved_resumes(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    assert main(args(*common, tmp_path / "straight", cache_dir, 8)) == 0
    monkeypatch.chdir(tmp_path)
    stop_at(monkeypatch, 1)
    assert main(args(*common, Path("run"), cache_dir, 8)) == 143
    stop_at(monkeypatch, 3)
    assert main([*args(*common, Path("./run/"), cache_dir, 8), "--resume"]) == 143
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").rename(tmp_path / "moved")
    assert main([*args(*common, tmp_path / "moved", cache_dir, 8), "--resume"]) == 0
    assert_same_weights(tmp_path / "straight", tmp_path / "moved")


# --- 6. the data changed under a run ---


def test_resuming_on_a_changed_corpus_is_refused_naming_it(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tmp_path / "corpus.txt"
    shutil.copy(corpus_file, corpus)
    run = tmp_path / "run"
    stop_at(monkeypatch, 1)
    assert main(args(tiny_teacher_dir, corpus, run, cache_dir, 8)) == 143
    monkeypatch.undo()
    # Touched but unchanged (as a copy would be): still the same data.
    os.utime(corpus)
    lines = corpus.read_text().splitlines()
    corpus.write_text("\n".join(lines[::-1]) + "\n")  # same lines, another order: other blocks
    capsys.readouterr()
    assert main([*args(tiny_teacher_dir, corpus, run, cache_dir, 8), "--resume"]) == 2
    line = one_error_line(capsys)
    assert f"the corpus {corpus} changed since" in line
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]


# --- 7. full disk ---


def test_a_save_that_hits_a_full_disk_says_so_removes_its_staging_and_resumes(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = (tiny_teacher_dir, corpus_file)
    assert main(args(*common, tmp_path / "straight", cache_dir, 8, save=2)) == 0
    save_state = Accelerator.save_state
    saves = {"count": 0}

    def full_disk(self: Accelerator, output_dir: str, **kwargs: object) -> None:
        saves["count"] += 1
        if saves["count"] == 2:
            Path(output_dir).mkdir(parents=True)
            (Path(output_dir) / "pytorch_model.bin").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", output_dir)
        save_state(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", full_disk)
    run = tmp_path / "run"
    assert main(args(*common, run, cache_dir, 8, save=2)) == 2
    line = one_error_line(capsys)
    assert "could not save the checkpoint of step 4: no space left on device (needs about" in line
    assert f"MB in {run / 'checkpoints'})" in line and "step-00000002" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000002"]  # staging removed
    monkeypatch.undo()
    assert main([*args(*common, run, cache_dir, 8, save=2), "--resume"]) == 0
    assert_same_weights(tmp_path / "straight", run)


def test_a_full_disk_while_saving_the_student_says_so_and_the_exact_command_saves_it(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from transformers import PreTrainedModel

    run = tmp_path / "run"
    argv = args(tiny_teacher_dir, corpus_file, run, cache_dir, 4)

    def full_disk(self: PreTrainedModel, folder: str, **kwargs: object) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", folder)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "could not save the student" in line and "no space left on device" in line
    assert "`monodistill distill " in line and "--resume`" in line  # the exact command that saves it
    assert not (run / "student").exists() and not list(run.glob(".tmp-*"))  # nothing half-written left
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    records = read_metrics(run)
    assert len([r for r in records if r["split"] == "validation"]) == 1  # the final validation, once
    assert (run / "student" / "model.safetensors").stat().st_size > 1000


def test_a_full_disk_while_writing_the_blocks_cache_says_so_and_cleans_up(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import datasets

    def full_disk(self: datasets.Dataset, path: str, **kwargs: object) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full_disk)
    assert main(args(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir, 2)) == 2
    line = one_error_line(capsys)
    assert "no space left on device while writing the blocks cache" in line and str(cache_dir) in line
    assert "data.cache_dir" in line
    assert not [p for p in (cache_dir / "blocks").iterdir() if not p.name.endswith(".lock")]  # staging removed


def test_resume_cleans_leftovers_of_failed_saves_first(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    stop_at(monkeypatch, 1)
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 4)) == 143
    monkeypatch.undo()
    leftover = run / "checkpoints" / ".tmp-step-00000004-12345"
    leftover.mkdir()
    (leftover / "pytorch_model.bin").write_bytes(b"x" * 1000)
    (run / "config.yaml").write_text("")  # as a crash mid-write left it before writes were atomic
    assert main([*args(tiny_teacher_dir, corpus_file, run, cache_dir, 4), "--resume"]) == 0
    assert not leftover.exists()


def test_a_real_full_disk_on_a_small_tmpfs(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or mounted.returncode}")
    try:
        run = mount / "run"
        argv = args(tiny_teacher_dir, corpus_file, run, cache_dir, 40, "train.keep_checkpoints=20", save=2)
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert "no space left on device (needs about" in line and str(run / "checkpoints") in line
        assert not list((run / "checkpoints").glob(".tmp-*"))
        kept = list_checkpoints(run)
        assert kept
        subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
        assert main([*argv, "--resume"]) == 0
        assert list_checkpoints(run)[-1].name == "step-00000040"
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # even if a writer still holds a file


# --- 8. stale evaluation results ---


def test_evaluation_results_are_reused_only_when_made_from_the_same_model_task_and_settings(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = save_teacher("bert", tiny_tokenizer, tmp_path / "a" / "student")
    second = save_teacher("xlm-roberta", tiny_tokenizer, tmp_path / "b" / "student")
    task = write_keyword_task(tmp_path)
    out = tmp_path / "out"
    base = ["evaluate", "--task", str(task), "--output", str(out)]
    settings = ["epochs=1", "max_length=16", "max_train_samples=16", "max_eval_samples=8"]
    assert main([*base, "--model", str(first), *settings]) == 0
    assert "fine-tuning student on keyword (seed 42)\n" in capsys.readouterr().out
    assert main([*base, "--model", str(first), *settings]) == 0
    assert "fine-tuning student" not in capsys.readouterr().out  # reused

    # Another model of the same folder name gets results of its own.
    assert main([*base, "--model", str(second), *settings]) == 0
    assert "fine-tuning student on keyword (seed 42)\n" in capsys.readouterr().out
    assert len(list((out / "results").glob("student-*"))) == 2

    # A changed setting, or retrained weights, are recomputed and say why.
    assert main([*base, "--model", str(first), *settings, "learning_rate=1e-3"]) == 0
    assert "made with other evaluate.learning_rate; recomputing" in capsys.readouterr().out
    weights = load_file(str(first / "model.safetensors"))
    save_file({name: tensor + 0.01 for name, tensor in weights.items()}, str(first / "model.safetensors"))
    assert main([*base, "--model", str(first), *settings, "learning_rate=1e-3"]) == 0
    assert "made with other weights; recomputing" in capsys.readouterr().out
    assert "learning_rate: 0.001" in (out / "config.yaml").read_text()


def test_everything_a_run_saves_is_readable_by_others(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """transformers writes model.safetensors 0600; under umask 022 the saved student is 0644 like its other files."""
    previous = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 2)) == 0
    finally:
        os.umask(previous)
    student = run / "student"
    modes = {path.relative_to(student).as_posix(): path.stat().st_mode & 0o777 for path in student.rglob("*")}
    folders = {name for name in modes if (student / name).is_dir()}  # 1_Pooling/, of sentence-transformers
    assert modes["model.safetensors"] == 0o644 and {modes[name] for name in modes.keys() - folders} == {0o644}
    assert folders == {"1_Pooling"} and modes["1_Pooling"] == 0o755
    assert (run / "student").stat().st_mode & 0o777 == 0o755


# --- 9. a command that fails before writing anything leaves no folder behind ---


def test_a_claimed_folder_left_empty_is_removed_with_the_parents_the_claim_made(tmp_path: Path) -> None:
    kept = tmp_path / "runs"
    kept.mkdir()
    folder = kept / "paper" / "students" / "tiny"
    with pytest.raises(RuntimeError), runfolder.claim(folder):
        assert (folder / runfolder.LOCK_FILE).is_file()
        raise RuntimeError("the teacher could not be loaded")
    assert not (kept / "paper").exists()  # made by the claim, left empty
    assert kept.is_dir()  # there before


def test_a_claimed_folder_that_existed_or_holds_anything_stays(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    with runfolder.claim(existing):
        pass
    assert existing.is_dir()  # not made by this process: not its to remove
    written = tmp_path / "new" / "run"
    with runfolder.claim(written):
        (written / "config.yaml").write_text("name: x\n")
    assert (written / "config.yaml").is_file()
    assert not (written / runfolder.OWNER_FILE).exists()
