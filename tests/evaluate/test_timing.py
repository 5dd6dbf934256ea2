"""Cost measurements: every timing with its machine and load, busy ones said to be, inference interleaved."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.card.results import evaluation_section
from monodistill.cli import main
from monodistill.evaluate import machine as machine_module
from monodistill.evaluate.timing import time_interleaved
from monodistill.report import write_report

from ..conftest import save_teacher, write_keyword_task
from .test_finetune import result_file


def test_interleaved_timing_keeps_the_ratio_when_the_load_changes() -> None:
    """A teacher 4x slower than its student; the machine gets 3x slower at t = 12 s. Timed in turns, the
    ratio is still 4; timed one model after the other, as fine-tuning runs are, it reads 1.33."""
    now = [0.0]

    def load() -> float:
        return 1.0 if now[0] < 12 else 3.0

    def teacher() -> None:
        now[0] += 4.0 * load()

    def student() -> None:
        now[0] += 1.0 * load()

    teacher_times, student_times = time_interleaved(teacher, student, rounds=5, clock=lambda: now[0])
    assert len(teacher_times) == len(student_times) == 5
    assert statistics.median(teacher_times) / statistics.median(student_times) == pytest.approx(4.0)

    now[0] = 0.0
    one_after_the_other = []
    for call in (teacher, student):
        times = []
        for _ in range(5):
            start = now[0]
            call()
            times.append(now[0] - start)
        one_after_the_other.append(statistics.median(times))
    assert one_after_the_other[0] / one_after_the_other[1] == pytest.approx(4 / 3)


def test_every_timing_records_its_machine_and_load_and_a_busy_one_says_so(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    student = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    task = write_keyword_task(tmp_path, count=80)
    monkeypatch.setattr(machine_module.os, "getloadavg", lambda: (6.8, 5.9, 3.8))  # a shared machine, busy
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(teacher), "--model", str(student), "--task", str(task), "--output", str(out)]
    argv += ["epochs=1", "max_length=16", "batch_size=16", "gradient_accumulation_steps=1"]
    assert main(argv) == 0

    result = json.loads(result_file(out, "student", "keyword", "seed-42.json").read_text())
    assert set(result["machine"]) == {"cpu", "cpus", "torch_threads", "device"}
    assert result["machine"]["device"] == "cpu" and result["machine"]["torch_threads"] >= 1
    for timing in ("finetune", "inference"):
        load = result["load"][timing]
        assert load["before"] == load["after"] == [6.8, 5.9, 3.8] and load["peak"] == 6.8 and load["busy"]

    summary = json.loads((out / "summary.json").read_text())
    timing = summary["inference_timing"]
    assert timing["method"] == "interleaved" and timing["rounds"] >= 3
    assert timing["machine"]["torch_threads"] == 1  # one thread: a loaded scheduler stalls no thread barrier
    measured = timing["tasks"]["keyword"]["models"]
    assert set(measured) == {"teacher", "student"} and len(measured["student"]["values"]) == timing["rounds"]
    entry = summary["models"]["student"]["tasks"]["keyword"]
    assert entry["inference_speedup"] == pytest.approx(measured["student"]["speedup"])
    assert entry["finetune_busy"] is True

    table = (out / "summary.md").read_text()
    assert "interleaved" in table and "busy" in table and "6.8" in table and "on 1 torch thread," in table
    write_report([out], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "interleaved" in report and "6.8" in report
    assert "busy" in report.split("| model | task | fine-tune s", 1)[1]  # in the speed table itself
    rows = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all(row["finetune_busy"] is True for row in rows)
    card = evaluation_section(summary, student)
    assert "busy" in card and "6.8" in card and "interleaved" in card and str(result["machine"]["cpu"]) in card
