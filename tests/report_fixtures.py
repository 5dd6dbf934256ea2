"""Folders as `monodistill run` and `evaluate` leave them, without weights, for the report and card tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest

TASKS = ("hatespeech-filipino", "nli-tagalog-health", "wikiann-tl-ner", "ud-tagalog-pos")
"""The local experiment's tasks: long names, as the figures must fit them."""
TEACHER = "shared/models/mmt-mini"


def task_result(score: float, speedup: float, seeds: int = 2) -> dict[str, Any]:
    """One model's summary entry for a task: accuracy ``score`` (± 0.01 over ``seeds`` seeds) and its speed."""
    seconds, rate = 10.0 / speedup, 100.0 * speedup
    values = [score - 0.01, score + 0.01][:seeds] if seeds > 1 else [score]
    return {
        "main_metric": "accuracy",
        "seeds": list(range(42, 42 + seeds)),
        "mixed_precision": ["no"],
        "metric.accuracy": {"mean": score, "std": 0.01 if seeds > 1 else 0.0, "values": values},
        "finetune_seconds": {"mean": seconds, "std": 0.1, "values": [seconds] * seeds},
        "train_samples_per_second": {"mean": rate, "std": 1.0, "values": [rate] * seeds},
        "inference_samples_per_second": {"mean": rate, "std": 1.0, "values": [rate] * seeds},
        "finetune_speedup": speedup,
        "inference_speedup": speedup,
        "rank": 1,
    }


def make_experiment(root: Path) -> Path:
    """An experiment folder: config, one distilled student (metrics, config, model card) and an evaluation of
    the teacher, trimmed teacher and student."""
    run = root / "students" / "tiny"
    (run / "student").mkdir(parents=True)
    (run / "vocab" / "teacher").mkdir(parents=True)
    (root / "config.yaml").write_text(f"name: tiny\nteacher:\n  name_or_path: {TEACHER}\n")
    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\n")
    records = [{"split": "train", "step": step, "loss": 3.0 / step, "kl": 2.0 / step, "mlm": 1.0} for step in (1, 2)]
    records.append(
        {"split": "validation", "step": 2, "mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3}
        | {"student_accuracy": 0.2}
    )
    write_records(run, records)
    (run / "student" / "README.md").write_text(
        "---\ntags: [monodistill]\n---\n\n# tiny: distilled from mmt-mini\n\n## Model\n\n| | student | teacher |\n"
        "|---|---|---|\n| parameters | 1,000 | 9,000 |\n\n## Distillation\n\n- Loss: KL\n\n"
        "## Downstream results\n\n| task | metric | this model |\n|---|---|---|\n| nli | accuracy | 50.00 |\n"
    )
    models = {"teacher": TEACHER, "vocab__teacher": run / "vocab" / "teacher", "student": run / "student"}
    summary = {
        "baseline": "teacher",
        "tasks": list(TASKS),
        "mixed_precision": ["no"],
        "models": {
            label: {
                "model": str(path),
                "disk_mb": 10.0,
                "parameters": {"total": 9000 // (index + 1), "embedding": 8000 // (index + 1), "non_embedding": 1000},
                "tasks": {task: task_result(0.8 - 0.1 * index, 1.0 + index) for task in TASKS},
            }
            for index, (label, path) in enumerate(models.items())
        },
    }
    (root / "evaluate").mkdir()
    write_summary(root / "evaluate", summary)
    (root / "evaluate" / "config.yaml").write_text("epochs: 3\n")
    return root


def read_summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())  # type: ignore[no-any-return]


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary))


def write_records(run: Path, records: list[dict[str, Any]]) -> None:
    (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


def capture_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, matplotlib.figure.Figure]:
    """Every figure the report saves from now on, drawn, by file name (``saved_renderer``: what drew it)."""
    figures: dict[str, matplotlib.figure.Figure] = {}
    save = matplotlib.figure.Figure.savefig

    def savefig(figure: matplotlib.figure.Figure, path: Any, **kwargs: Any) -> None:
        save(figure, path, **kwargs)  # drawing lays out the ticks and places every text
        figure.saved_renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # gone once closed
        figures[Path(path).name] = figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return figures
