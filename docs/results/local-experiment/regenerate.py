"""Regenerate this folder's report with today's ``monodistill report`` from what the folder recorded.

    .venv/bin/python docs/results/local-experiment/regenerate.py     (from the repository root, ../shared beside it)

The run folders of ``monodistill run --config configs/local-experiment.yaml`` are gone: this folder holds
the evaluation's ``summary.json`` (every seed's score and timing) and the old report, whose distillation
table has each student's last validation. The script rebuilds, in a scratch folder, the experiment as
``report`` reads it, and runs today's ``write_report`` on it:

- ``runs/local-experiment/config.yaml``: configs/local-experiment.yaml (unchanged since the run's commit
  f3f73f5), which names the teacher;
- ``evaluate/summary.json``: the recorded summary, its numbers untouched, with what today's evaluation
  also records, computed here by today's code (``evaluate.summary``), and checked:
  ``constant_prediction`` from the task files in configs/tasks (unchanged since the run) and ../shared;
  ``encoder_parameters`` from each model's config.json (the teacher's own; the others rebuilt from the
  experiment's shapes and the recorded embedding sizes), each equal to the recorded classifier count
  less its 17-tag POS head; ``weights_dtype`` read from the teacher's file (bfloat16), and float32 for the
  models monodistill wrote, whose recorded file sizes are 4 bytes per parameter (to a few kB of header);
- ``students/NAME/metrics.jsonl``: the last validation of each student, from the old report's table.

The distillation curves cannot be redrawn from one validation per student, so distillation.png is the
recorded one (drawn from the full curves by the report of commit b16c7e2, same panels, and the same
colours as today's: students in the order the report lists their runs); report.html inlines it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from monodistill.evaluate.summary import constant_prediction, encoder_parameter_counts, weights_dtype
from monodistill.evaluate.tasks import load_task
from monodistill.report import write_report
from monodistill.report.page import render_html

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared"
POS_TAGS = 17
"""The recorded parameter counts are of the last task's classifier: UD Tagalog POS, 17 UPOS tags."""
HEADER_BYTES = 100_000
"""At most this much of a safetensors file is its header rather than its tensors."""


def main() -> None:
    recorded = json.loads((HERE / "summary.json").read_text())
    experiment = yaml.safe_load((REPO / "configs" / "local-experiment.yaml").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "main"  # cwd: runs/local-experiment/... and ../shared resolve as in the run
        (Path(scratch) / "shared").symlink_to(SHARED)
        run = root / "runs" / "local-experiment"
        (run / "evaluate").mkdir(parents=True)
        shutil.copy(REPO / "configs" / "local-experiment.yaml", run / "config.yaml")
        summary = completed_summary(recorded, experiment, root)
        (run / "evaluate" / "summary.json").write_text(json.dumps(summary, indent=2))
        for name, validation in last_validations(HERE / "report.md").items():
            (run / "students" / name).mkdir(parents=True, exist_ok=True)
            (run / "students" / name / "config.yaml").write_text(yaml.safe_dump({"student": {"name": name}}))
            (run / "students" / name / "metrics.jsonl").write_text(json.dumps(validation) + "\n")
        out = Path(scratch) / "report"
        with _working_directory(root):
            write_report([Path("runs/local-experiment")], out)
            shutil.copy(HERE / "distillation.png", out / "distillation.png")  # the recorded curves
            page = render_html([(out / "report.md").read_text()], out, {}, [Path("runs/local-experiment/config.yaml")])
        (out / "report.html").write_text(page)
        for name in ("report.md", "report.html", "results.csv", "results.json", "quality.png", "cost.png"):
            shutil.copy(out / name, HERE / name)


def completed_summary(recorded: dict[str, Any], experiment: dict[str, Any], root: Path) -> dict[str, Any]:
    """The recorded summary with the constant predictions, encoder counts and dtypes today's evaluation records."""
    summary: dict[str, Any] = json.loads(json.dumps(recorded))
    with _working_directory(REPO):  # the task files' paths are relative to configs/tasks, as in the run
        tasks = [load_task(reference) for reference in experiment["evaluate"]["tasks"]]
    summary["constant_prediction"] = {task.name: constant_prediction(task) for task in tasks}
    teacher = Path(SHARED / "models" / "mmt-mini")
    teacher_config = json.loads((teacher / "config.json").read_text())
    shapes = {student["name"]: student for student in experiment["students"]}
    for label, entry in summary["models"].items():
        classifier = entry["parameters"]
        if label == "models__mmt-mini":
            folder, dtype = teacher, weights_dtype(str(teacher))
        else:
            name = label.removesuffix("__student") if label.endswith("__student") else None
            shape = shapes[name] if name else {"hidden_size": teacher_config["hidden_size"]}
            config = teacher_config | {"vocab_size": classifier["embedding"] // shape["hidden_size"]}
            if name:
                config |= {"num_hidden_layers": shape["num_layers"], "hidden_size": shape["hidden_size"]}
                config |= {"intermediate_size": shape["intermediate_size"], "num_attention_heads": shape["num_heads"]}
            folder = root / "configs" / label
            folder.mkdir(parents=True)
            (folder / "config.json").write_text(json.dumps(config))
            dtype = "float32"  # checked below against the recorded file size
        counts = encoder_parameter_counts(str(folder))
        assert counts is not None
        hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
        vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
        assert counts["total"] == classifier["total"] - (hidden * POS_TAGS + POS_TAGS), label
        masked_lm = counts["total"] + hidden * hidden + 3 * hidden + vocab  # + the MLM head: transform, bias
        stored = entry["disk_mb"] * 1e6 - masked_lm * {"float32": 4, "bfloat16": 2}[str(dtype)]
        assert 0 <= stored < HEADER_BYTES, (label, dtype, stored)
        entry["encoder_parameters"], entry["weights_dtype"] = counts, dtype
    return summary


def last_validations(report: Path) -> dict[str, dict[str, Any]]:
    """Each student's last validation, from the distillation table of the recorded report (3 decimals)."""
    table = report.read_text().split("## Distillation", 1)[1]
    keys = ("mlm_loss", "kl_to_teacher", "teacher_agreement", "student_accuracy")
    validations = {}
    for line in table.splitlines():
        if re.match(r"^\| [\w-]+ \| \d+ \|", line):
            name, step, *values = (cell.strip() for cell in line.strip("|").split("|"))
            validations[name] = {"split": "validation", "step": int(step)} | dict(
                zip(keys, map(float, values), strict=True)
            )
    return validations


@contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    """Run the block in ``folder`` (contextlib.chdir needs Python 3.11)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


if __name__ == "__main__":
    main()
