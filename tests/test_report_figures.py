"""The report's figures read right: value labels, the teacher and constant-prediction lines, an axis near
the scores, one colour per model in every figure, and tick labels that do not collide."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib.colors
import matplotlib.figure
import pytest

from monodistill.report import write_report

from .report_fixtures import TASKS, capture_figures, make_experiment, read_summary, task_result, write_summary


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return make_experiment(tmp_path / "experiment")


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, matplotlib.figure.Figure]:
    return capture_figures(monkeypatch)


def lines_of(axis: object, style: str) -> list[float]:
    """The heights of the horizontal lines drawn in ``style`` on ``axis``."""
    return [float(line.get_ydata()[0]) for line in axis.get_lines() if line.get_linestyle() == style]  # type: ignore[attr-defined]


def test_quality_panels_show_values_the_teacher_and_the_constant_prediction(
    experiment: Path, tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]
) -> None:
    summary = read_summary(experiment / "evaluate")
    summary["constant_prediction"] = {task: {"accuracy": 0.5, "label": "0"} for task in TASKS}
    summary["constant_prediction"][TASKS[3]] = {"accuracy": 0.1, "label": "NOUN"}  # far below every score
    summary["models"]["student"]["tasks"][TASKS[2]] = task_result(0.0, 3.0)  # a 0.00 bar must still read
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")

    axes = saved_figures["quality.png"].axes
    panels = {axis.get_title().split("\n")[0]: axis for axis in axes if axis.get_title().split("\n")[0] in TASKS}
    assert set(panels) == set(TASKS)
    for task, axis in panels.items():
        labels = {text.get_text() for text in axis.texts}
        assert {"80.0", "70.0"} <= labels, task  # every bar carries its value
        assert lines_of(axis, "--") == [pytest.approx(80.0)], task  # the teacher, dashed
    assert "0.0" in {text.get_text() for text in panels[TASKS[2]].texts}

    hatespeech = panels[TASKS[0]]
    assert lines_of(hatespeech, ":") == [pytest.approx(50.0)]  # constant prediction, dotted
    assert 40 <= hatespeech.get_ylim()[0] <= 50  # near the lowest score and the constant, not at 0
    assert panels[TASKS[2]].get_ylim()[0] == 0  # a score of 0 is the lowest
    pos = panels[TASKS[3]]
    assert pos.get_ylim()[0] > 40 and not lines_of(pos, ":")  # 10.0 would squash the bars: said in words
    assert "(constant prediction 10.0, below the axis)" in pos.get_title()


def test_every_bar_and_curve_has_its_models_colour(
    experiment: Path, tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]
) -> None:
    write_report([experiment], tmp_path / "report")
    colours: dict[str, tuple[float, float, float]] = {}
    for name in ("quality.png", "cost.png"):
        for axis in saved_figures[name].axes:
            for patch in axis.patches:
                model = patch.get_gid()
                assert model is not None, f"{name}: a bar of no model in {axis.get_title()!r}"
                colour = matplotlib.colors.to_rgb(patch.get_facecolor())
                assert colours.setdefault(model, colour) == colour, f"{name}: {model} in two colours"
    assert set(colours) == {"teacher", "teacher-trimmed", "tiny"}
    assert len(set(colours.values())) == len(colours)  # no colour for two models
    for axis in saved_figures["distillation.png"].axes:
        for line in axis.get_lines():
            assert matplotlib.colors.to_rgb(line.get_color()) == colours[line.get_label()]


def test_tick_labels_do_not_collide(tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]) -> None:
    """Three long task names under two models' bars, as the quickstart's cost panels had them."""
    experiment = make_experiment(tmp_path / "experiment")
    summary = read_summary(experiment / "evaluate")
    summary["tasks"] = list(TASKS[:3])
    summary["models"] = {label: summary["models"][label] for label in ("teacher", "student")}
    for entry in summary["models"].values():
        entry["tasks"] = {task: entry["tasks"][task] for task in TASKS[:3]}
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    for name in ("quality.png", "cost.png"):
        figure = saved_figures[name]
        renderer = figure.saved_renderer  # type: ignore[attr-defined]
        for axis in figure.axes:
            boxes = [label.get_window_extent(renderer) for label in axis.get_xticklabels() if label.get_text()]
            for one, other in combinations(boxes, 2):
                assert not one.overlaps(other), f"{name}: tick labels collide in {axis.get_title()!r}"
