"""What a user reads: bars on a terminal, plain lines in a log, and no library chatter unless asked for."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill import progress
from monodistill.cli import main

from .conftest import save_teacher, write_keyword_task
from .test_distill import STUDENT

LIBRARY_LINES = (
    "Loading weights",  # transformers, on every model load
    "Writing model shards",  # transformers, on every save
    "Saving the dataset",  # datasets, on the blocks cache
    "Generating train split",  # datasets, on reading a corpus or task
    "train_runtime",  # the Trainer's PrinterCallback/ProgressCallback dicts
    "'loss':",
    "Retrying in",  # huggingface_hub's backoff
)


class FakeClock:
    """tqdm's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_in_a_log_writes_a_plain_line_at_most_every_interval_and_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("tqdm.std.time", clock)
    log = io.StringIO()  # not a terminal
    with progress.progress_bar(total=100, desc="counting tokens", unit="doc", file=log, interval=30) as bar:
        for _ in range(100):
            clock.now += 1
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no redraws, no cursor moves
    lines = text.splitlines()
    # At 30, 60 and 90 seconds, then the final one.
    assert len(lines) == 4, lines
    assert lines[0].startswith("counting tokens:  30%") and "30/100" in lines[0]
    assert lines[-1].startswith("counting tokens: 100%") and "100/100" in lines[-1]


def test_time_spent_paused_does_not_enter_the_rate_or_the_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 steps of 4 s, then 2 minutes of validation: 30 steps left at 4 s each are 2 minutes, not 6."""
    clock = FakeClock()
    monkeypatch.setattr("tqdm.std.time", clock)
    with progress.progress_bar(total=60, desc="distilling", unit="step", file=io.StringIO()) as bar:
        for _ in range(30):
            clock.now += 4
            bar.update(1)
        with bar.paused():
            clock.now += 120
        clock.now += 4
        bar.update(1)
        shown = bar.format_dict
        left = (shown["total"] - shown["n"]) / (shown["rate"] or shown["n"] / shown["elapsed"])
        assert left == pytest.approx(29 * 4)
        assert shown["elapsed"] == pytest.approx(31 * 4 + 120)  # the wall time since the start stays
    # Off the main rank the bar is disabled: pausing it is a no-op, not an error.
    with progress.progress_bar(total=2, disable=True).paused():
        pass


def test_a_transient_bar_in_a_log_is_silent_unless_it_runs_longer_than_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("tqdm.std.time", clock)
    quick, slow = io.StringIO(), io.StringIO()
    for log, seconds in ((quick, 1), (slow, 20)):
        with progress.progress_bar(total=3, desc="validating", file=log, interval=30, leave=False) as bar:
            for _ in range(3):
                clock.now += seconds
                bar.update(1)
    assert quick.getvalue() == ""
    assert [line.split(":")[0] for line in slow.getvalue().splitlines()] == ["validating", "validating"]


def test_a_bar_on_a_terminal_is_a_normal_tqdm_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with progress.progress_bar(total=3, desc="distilling", file=screen) as bar:
        bar.update(3)
    assert "\r" in screen.getvalue() and "|" in screen.getvalue()


def run_distill(teacher: Path, corpus: Path, output: Path, cache: Path, *extra: str) -> int:
    argv = ["distill", "--teacher", str(teacher), "--corpus", str(corpus), "--output", str(output)]
    return main([*argv, "--max-steps", "4", *STUDENT, f"data.cache_dir={cache}", *extra])


def test_a_distillation_log_holds_progress_lines_and_no_library_chatter(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_distill(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir) == 0
    captured = capsys.readouterr()  # pytest's capture is not a terminal, as a log file or CI is not
    text = captured.out + captured.err
    assert "\r" not in text, [line for line in text.splitlines() if "\r" in line][:3]
    for noise in LIBRARY_LINES:
        assert noise not in text, noise
    lines = text.splitlines()
    assert any(line.startswith("distilling: 100%") and "4/4" in line for line in lines), lines
    assert any(line.startswith("step 4: mlm_loss=") for line in lines), lines


@pytest.mark.parametrize("how", ["flag", "flag-after-command", "environment"])
def test_verbose_brings_the_library_output_back(
    how: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "run"
    argv = ["distill", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(output)]
    argv += ["--max-steps", "2", *STUDENT, f"data.cache_dir={cache_dir}"]
    if how == "flag":
        argv = ["--verbose", *argv]
    elif how == "flag-after-command":
        argv = [argv[0], "--verbose", *argv[1:]]
    else:
        monkeypatch.setenv("MONODISTILL_VERBOSE", "1")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Loading weights" in err and "Saving the dataset" in err


def test_an_evaluation_log_names_each_run_and_gives_one_result_line_each(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    task = write_keyword_task(tmp_path, count=40)
    capsys.readouterr()  # saving the model in this test shows transformers' bar
    argv = ["evaluate", "--model", str(model), "--task", str(task), "--output", str(tmp_path / "eval"), "--seeds", "2"]
    assert main([*argv, "epochs=1", "max_length=16"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "\r" not in text
    for noise in LIBRARY_LINES:
        assert noise not in text, noise
    lines = text.splitlines()
    assert any("model 1/1, task 1/1, seed 2/2" in line for line in lines), lines
    results = [line for line in lines if line.startswith("student on keyword (seed ")]
    assert len(results) == 2 and all("accuracy=" in line and "train_loss=" in line for line in results), lines


def test_durations_read_as_a_person_reads_them() -> None:
    """A 9.6 s command said "done in 00:09", easily read as nine minutes; under a minute it is seconds."""
    assert progress.format_duration(9.6) == "9.6 s"
    assert progress.format_duration(193.2) == "3 min 13 s"
    assert progress.format_duration(3725) == "1 h 02 min"
