"""The report's figures read right: value labels, the teacher and constant-prediction lines, an axis near
the scores, one colour per model in every figure, and tick labels that do not collide."""

from __future__ import annotations

import shutil
from itertools import combinations
from pathlib import Path

import matplotlib.colors
import matplotlib.figure
import pytest

from monodistill.report import write_report

from .report_fixtures import (
    TASKS,
    capture_figures,
    make_experiment,
    read_summary,
    task_result,
    write_records,
    write_summary,
)


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


def add_run(experiment: Path, name: str, loss: str, vocab_size: int, parts: tuple[str, ...]) -> None:
    """A distillation run of ``experiment``: its loss section, its student's vocabulary, and records of ``parts``."""
    run = experiment / "students" / name
    (run / "student").mkdir(parents=True)
    (run / "config.yaml").write_text(f"student:\n  name: {name}\nloss: {loss}\n")
    (run / "student" / "config.json").write_text(f'{{"vocab_size": {vocab_size}}}')
    records = [{"split": "train", "step": step} | {part: 2.0 / step for part in parts} for step in (1, 2)]
    validation = {"mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3, "student_accuracy": 0.2}
    write_records(run, [*records, {"split": "validation", "step": 2, **validation}])


def test_distillation_curves_are_the_terms_each_recipe_trains_and_say_when_vocabularies_differ(
    experiment: Path, tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]
) -> None:
    shutil.rmtree(experiment / "students" / "tiny")
    # TinyBERT's recipe logs an MLM loss it never trains; the paper's on a full and on a trimmed vocabulary.
    add_run(experiment, "tinybert", "{alpha_kl: 0, alpha_mlm: 0, alpha_hidden: 1, alpha_attention: 1}", 19_796,
            ("loss", "mlm", "hidden", "attention"))  # fmt: skip
    add_run(experiment, "full", "{}", 119_547, ("loss", "kl", "mlm"))
    add_run(experiment, "trimmed", "{}", 19_796, ("loss", "kl", "mlm"))
    write_report([experiment], tmp_path / "report")

    panels = {axis.get_title(): axis for axis in saved_figures["distillation.png"].axes if axis.get_visible()}

    def drawn(title: str) -> set[str]:
        return {line.get_label() for line in panels[title].get_lines()}

    assert drawn("train hidden-state MSE") == {"tinybert"} and drawn("train attention-probability MSE") == {"tinybert"}
    assert drawn("train MLM loss") == {"full", "trimmed"}  # not tinybert's, which its loss never weighs
    assert drawn("train KL at T, x T^2") == {"full", "trimmed"}
    # Its masked-LM head is never trained: its validation scores are not curves of its training.
    assert drawn("validation KL to the teacher (T = 1)") == {"full", "trimmed"}
    # Losses over 19,796 and 119,547 tokens on one axis say so; tinybert's hidden and attention terms need not.
    for title in ("train MLM loss", "train KL at T, x T^2", "train loss", "validation KL to the teacher (T = 1)"):
        assert "19,796" in panels[title].get_ylabel() and "119,547" in panels[title].get_ylabel(), title
    assert panels["train hidden-state MSE"].get_ylabel() == ""


def test_a_causal_students_own_loss_is_called_the_next_token_loss(
    experiment: Path, tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]
) -> None:
    """A decoder's own-token loss (``mlm``, ``mlm_loss``) is next-token cross-entropy, and its accuracy that of the
    next token: known from its student's family (config.json), or from the objective its config.yaml recorded."""
    shutil.rmtree(experiment / "students" / "tiny")
    add_run(experiment, "decoder", "{}", 300, ("loss", "kl", "mlm"))
    (experiment / "students" / "decoder" / "student" / "config.json").write_text(
        '{"model_type": "llama", "vocab_size": 300}'
    )
    write_report([experiment], tmp_path / "causal")
    titles = {axis.get_title() for axis in saved_figures["distillation.png"].axes if axis.get_visible()}
    assert {"train next-token loss", "validation next-token accuracy"} <= titles
    assert not {"train MLM loss", "validation masked-token accuracy"} & titles
    report = (tmp_path / "causal" / "report.md").read_text()
    assert "| student | steps | next-token loss | KL to teacher |" in report and "MLM loss" not in report

    # An encoder student beside it: each panel and column names both.
    add_run(experiment, "encoder", "{}", 300, ("loss", "kl", "mlm"))
    (experiment / "students" / "decoder" / "student" / "config.json").write_text('{"vocab_size": 300}')
    (experiment / "students" / "decoder" / "config.yaml").write_text("student:\n  name: decoder\nobjective: causal\n")
    write_report([experiment], tmp_path / "both")
    titles = {axis.get_title() for axis in saved_figures["distillation.png"].axes if axis.get_visible()}
    assert {"train MLM loss / next-token loss", "validation masked-token accuracy / next-token accuracy"} <= titles
    assert (
        "| student | steps | MLM loss / next-token loss | KL to teacher |"
        in (tmp_path / "both" / "report.md").read_text()
    )


def test_the_cost_legend_shows_model_colours_and_a_busy_machine_swatch(
    experiment: Path, tmp_path: Path, saved_figures: dict[str, matplotlib.figure.Figure]
) -> None:
    summary = read_summary(experiment / "evaluate")
    summary["models"]["student"]["tasks"][TASKS[0]]["finetune_speedup_busy"] = True
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    figure = saved_figures["cost.png"]
    bars = {
        patch.get_gid(): matplotlib.colors.to_rgb(patch.get_facecolor())
        for axis in figure.axes[1:]
        for patch in axis.patches
        if not patch.get_hatch()
    }
    (legend,) = figure.legends
    swatches = {text.get_text(): handle for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)}
    for model, colour in bars.items():
        assert matplotlib.colors.to_rgb(swatches[model].get_facecolor()) == colour, model
        assert not swatches[model].get_hatch(), model  # a model's swatch is its plain colour
    busy = [handle for label, handle in swatches.items() if label.startswith("busy machine")]
    assert len(busy) == 1 and busy[0].get_hatch() == "xx"  # the hatch of the busy bars, on its own swatch
    hatched = [patch for axis in figure.axes[1:] for patch in axis.patches if patch.get_hatch()]
    assert [patch.get_gid() for patch in hatched] == ["tiny"]
