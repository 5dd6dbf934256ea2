"""Validation metrics read against what a useless student would score: agreement beside a constant prediction's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from monodistill import ranks
from monodistill.card import build_model_card
from monodistill.config import DistillConfig
from monodistill.distill.loop import describe
from monodistill.distill.validation import ValidationTotals
from monodistill.report import write_report

from .report_fixtures import make_experiment, write_records

COMMA = 5
"""The token a smoke-budget student predicts everywhere (``,`` in mBERT's vocabulary is another id)."""


def one_hot_logits(top: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(N, V) logits whose argmax is ``top``."""
    return torch.nn.functional.one_hot(top, vocab_size).float() * 5.0


def comma_student_metrics() -> dict[str, float]:
    """A student that predicts ``,`` at every masked position, against a teacher that does so at 70% of them."""
    vocab_size, positions = 12, 100
    teacher_top = torch.tensor([COMMA] * 70 + [index % 4 for index in range(30)])  # (N,) `,` 70%, tokens 0-3 else
    student_top = torch.full((positions,), COMMA)
    totals = ValidationTotals(vocab_size)
    totals.add(
        one_hot_logits(student_top, vocab_size), one_hot_logits(teacher_top, vocab_size), None, teacher_top.roll(1)
    )
    return totals.metrics(trimmed=False)


def test_agreement_stands_beside_a_constant_prediction_of_the_teachers_top_token(tmp_path: Path) -> None:
    metrics = comma_student_metrics()
    assert metrics["teacher_agreement"] == 0.7
    # Always predicting the teacher's most frequent top token agrees as often: the student shows nothing more.
    assert metrics["agreement_constant"] == 0.7
    names = list(metrics)
    assert names.index("agreement_constant") == names.index("teacher_agreement") + 1

    # The validation log line, beside the agreement.
    line = describe(SimpleNamespace(name="student", step=60), metrics, named=False)  # type: ignore[arg-type]
    assert "teacher_agreement=0.7000, agreement_constant=0.7000" in line, line

    # The report's validation table.
    experiment = make_experiment(tmp_path / "experiment")
    run = experiment / "students" / "tiny"
    records: list[dict[str, Any]] = [{"split": "validation", "step": 60, **metrics}]
    write_records(run, records)
    report = (write_report([experiment], tmp_path / "report")).read_text()
    header = next(line for line in report.splitlines() if line.startswith("| student | steps |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    row = next(line for line in report.splitlines() if line.startswith("| tiny | 60 |"))
    cells = dict(zip(columns, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
    assert cells["agreement with teacher"] == "0.700"
    assert cells["a constant prediction's agreement"] == "0.700", header

    # The model card, in the row after the agreement.
    counts = {"total": 1000, "non_embedding": 100, "embedding": 900}
    card = build_model_card(DistillConfig(), metrics, counts, counts, 10)
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    agreement = next(index for index, line in enumerate(rows) if line.startswith("| teacher agreement |"))
    assert rows[agreement + 1] == (
        "| agreement of a constant prediction (the teacher's most frequent top token) | 0.7000 |"
    ), rows[agreement : agreement + 2]


def test_a_rank_without_batches_reduces_the_teachers_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation takes every collective on every rank: the teacher's counts go in the one reduction."""
    lengths: list[int] = []
    reduce = ranks.sum_over_ranks

    def counted(values: list[float]) -> list[float]:
        lengths.append(len(values))
        return reduce(values)

    monkeypatch.setattr(ranks, "sum_over_ranks", counted)
    empty = ValidationTotals(12).metrics(trimmed=False)
    assert lengths == [8 + 2 * 12]  # one collective: the sums, then the student's and the teacher's (V,) counts
    assert "agreement_constant" not in empty  # nothing scored: nothing to compare
