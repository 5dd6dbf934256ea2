"""The report's figures: distillation curves, quality per task, and size and speed.

One colour per model in every figure (``model_colours``): greys for the teacher and its trimmed and
adapted versions, a colour of its own for each student. Every bar carries its model's label as its
``gid``, so tests (and SVG readers) can tell which model a bar is.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from monodistill.report.labels import Named, is_teacher_family

TRAIN_TITLES = {
    "loss": "train loss",
    "kl": "train KL at T, x T^2",
    "mse": "train logit MSE",
    "mlm": "train MLM loss",
    "cosine": "train hidden-state cosine (1 - cos)",
    "relation": "train attention-relation KL (Q-Q, K-K, V-V)",
    "hidden": "train hidden-state MSE",
    "attention": "train attention-probability MSE",
}
"""Panels of the distillation figure's training terms (the weighted total, then each part a recipe trains); the
``mlm`` panel is named by its students' objective (``OWN_LOSS``)."""
VALIDATION_CURVES = (
    ("kl_to_teacher", "validation KL to the teacher (T = 1)"),
    ("student_accuracy", "validation masked-token accuracy"),
    ("teacher_agreement", "validation top-1 agreement with the teacher"),
)
"""Validation panels: (metric, title). They score the LM head (masked or causal), so they are drawn for runs whose
loss trains it; the accuracy panel is named by its students' objective (``OWN_ACCURACY``). Validation KL is at
T = 1, so students distilled at different temperatures compare on it; top-1 agreement alone can mislead when the
teacher favours one token."""
OWN_LOSS = {"masked": "MLM loss", "causal": "next-token loss"}
"""The student's own loss (``mlm`` in training, ``mlm_loss`` in validation) by its objective: cross-entropy at the
masked positions (a masked LM), or of the next token at every position (a decoder)."""
OWN_ACCURACY = {"masked": "masked-token accuracy", "causal": "next-token accuracy"}
"""``student_accuracy`` by the student's objective."""
HEAD_PARTS = frozenset({"kl", "mse", "mlm"})
"""Parts over the vocabulary (and the terms that train the masked-LM head): their scale grows with its size
(a uniform guess's cross-entropy is log V), so runs on different vocabularies do not compare on them."""
OVER_VOCABULARY = frozenset({"kl_to_teacher"}) | HEAD_PARTS


@dataclass(frozen=True)
class RunTerms:
    """What a distillation run's curves mean: the loss parts its recipe trains, and its student's vocabulary."""

    parts: tuple[str, ...]
    """``LossConfig.trained_parts``: ``kl``, ``hidden``, ..."""
    vocab_size: int | None
    """V of the student's vocabulary (None: unknown)."""
    objective: str = "masked"
    """What the student predicts (``card.record.run_objective``): masked tokens, or the causal next token."""
    teacher_cache: str | None = None
    """The teacher cache the run read the teacher from (its validation KL is then the summary's); None: live."""


def named_for(names: dict[str, str], objectives: Iterable[str]) -> str:
    """What ``names`` (``OWN_LOSS``, ``OWN_ACCURACY``) calls a figure of students of ``objectives``: each objective's
    name, masked first, joined by " / " where both are there; the masked one where none is."""
    present = set(objectives)
    return " / ".join(name for objective, name in names.items() if objective in present) or names["masked"]


TEACHER_GREYS = ("#333333", "#8c8c8c", "#5e5e5e", "#b5b5b5")
STUDENT_COLOURS: tuple[str, ...] = (
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"),
    *("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"),
)
"""Matplotlib's tab10 without its grey, which the teachers have; then tab20's light shades."""
BUSY_HATCH = "xx"
"""The hatch of a fine-tuning speedup timed on a busy machine (``finetune_speedup_busy``)."""
BUSY_LABEL = "busy machine: fine-tuning\ntimed under load, not\nthe models' speed"
TASK_LABEL_WIDTH = 12
"""Characters per line of a task name under its bars: long names wrap at their hyphens instead of colliding."""


def model_colours(models: list[Named], labels: list[str]) -> dict[str, str]:
    """Label -> colour, one per label in the order the report lists the models (its runs first)."""
    colours: dict[str, str] = {}
    greys, others = 0, 0
    for model, label in zip(models, labels, strict=True):
        if label in colours:
            continue  # a student's run and its scores carry one label
        if is_teacher_family(model.name):
            colours[label], greys = TEACHER_GREYS[greys % len(TEACHER_GREYS)], greys + 1
        else:
            colours[label], others = STUDENT_COLOURS[others % len(STUDENT_COLOURS)], others + 1
    return colours


def plot_distillation(
    records: dict[str, list[dict[str, Any]]], path: Path, colours: dict[str, str], terms: dict[str, RunTerms]
) -> None:
    """A panel per curve, a line per student: the training loss, each part some student's recipe trains
    (drawn for the students that train it: TinyBERT's recipe logs an MLM loss it never weighs), and
    validation KL, accuracy and agreement (for students whose loss trains the masked-LM head they score).

    A panel of losses over the vocabulary that holds students of vocabularies of different sizes says so in
    its axis label, and the legend gives each student's vocabulary size.
    """
    parts = [part for part in TRAIN_TITLES if any(part in terms[label].parts for label in records)]
    own_loss = named_for(OWN_LOSS, (terms[label].objective for label in records if "mlm" in terms[label].parts))
    titles = TRAIN_TITLES | {"mlm": f"train {own_loss}"}
    panels = [("train", "loss", titles["loss"]), *[("train", part, titles[part]) for part in parts]]
    head = [label for label in records if HEAD_PARTS & set(terms[label].parts)]
    if head:
        accuracy = f"validation {named_for(OWN_ACCURACY, (terms[label].objective for label in head))}"
        panels += [
            ("validation", key, accuracy if key == "student_accuracy" else title) for key, title in VALIDATION_CURVES
        ]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, grid = plt.subplots(
        rows, columns, figsize=(4 * columns + 2, 3.2 * rows), layout="constrained", squeeze=False
    )
    axes = grid.ravel()
    for axis, (split, key, title) in zip(axes, panels, strict=False):
        drawn = []
        for label, run_records in records.items():
            trains = terms[label].parts
            if (split == "train" and key != "loss" and key not in trains) or (
                split == "validation" and label not in head
            ):
                continue
            points = [(r["step"], r[key]) for r in run_records if r.get("split") == split and key in r]
            if points:
                marker = "." if split == "validation" else None
                axis.plot(*zip(*points, strict=True), marker=marker, label=label, color=colours[label])
                over_vocabulary = key in OVER_VOCABULARY or (key == "loss" and HEAD_PARTS & set(trains))
                drawn += [terms[label].vocab_size] if over_vocabulary else []
        sizes = sorted({size for size in drawn if size is not None})
        if len(sizes) > 1:  # one axis, different scales: said where the values are read
            axis.set_ylabel(
                f"over vocabularies of {' and '.join(f'{size:,}' for size in sizes)}\ntokens: not comparable"
            )
        axis.set_title(title, fontsize="medium")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    mixed = len({terms[label].vocab_size for label in records} - {None}) > 1
    handles = [
        Line2D([], [], color=colours[label], marker=".", label=_with_vocabulary(label, terms[label].vocab_size, mixed))
        for label in records
    ]
    _save(figure, handles, path)


def _with_vocabulary(label: str, vocab_size: int | None, mixed: bool) -> str:
    return f"{label} ({vocab_size:,} tokens)" if mixed and vocab_size is not None else label


def plot_quality(rows: list[dict[str, Any]], path: Path, colours: dict[str, str], teachers: set[str]) -> None:
    """A grid of panels, one per task: main metric per model with its value (and macro-F1 under it for
    classification), std error bars over several
    seeds, a dashed line at the teacher's score, a dotted one at the constant prediction's, and an axis
    that starts near the lowest score (a constant prediction far below it is said in words)."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    columns = len(tasks) if len(tasks) <= 3 else min(3, math.ceil(math.sqrt(len(tasks))))  # 4 tasks: 2 x 2
    panel_width = max(3.8, 0.5 * len(models) + 1.2)
    figure, grid = plt.subplots(
        math.ceil(len(tasks) / columns),
        columns,
        figsize=(panel_width * columns + 2.4, 3.6 * math.ceil(len(tasks) / columns)),
        layout="constrained",
        squeeze=False,
    )
    for axis, task in zip(grid.ravel(), tasks, strict=False):
        picked = [row for row in rows if row["task"] == task]
        metric = picked[0]["main_metric"]
        scores = [100 * row[f"metric.{metric}.mean"] for row in picked]
        errors = [100 * row[f"metric.{metric}.std"] if row["seeds"] > 1 else 0.0 for row in picked]
        bars = axis.bar(
            range(len(picked)),
            scores,
            yerr=errors if any(errors) else None,
            capsize=3,
            color=[colours[row["model"]] for row in picked],
        )
        for bar, row, score, error in zip(bars, picked, scores, errors, strict=True):
            bar.set_gid(row["model"])
            value = f"{score:.1f}"
            if metric != "macro_f1" and row.get("metric.macro_f1.mean") is not None:  # accuracy hides a constant
                value += f"\nmacro-F1 {100 * row['metric.macro_f1.mean']:.1f}"
            axis.text(bar.get_x() + bar.get_width() / 2, score + error, value, ha="center", va="bottom")
        for text in axis.texts:
            text.set_fontsize("x-small")
        names = [f"{row['model']} (task KD)" if row.get("distilled_from") else row["model"] for row in picked]
        axis.set_xticks(range(len(picked)), names, rotation=35, ha="right", rotation_mode="anchor", fontsize="small")
        for row, score in zip(picked, scores, strict=True):
            if row["model"] in teachers:
                axis.axhline(score, color=colours[row["model"]], linestyle="--", linewidth=1)
        constant = picked[0].get("constant_prediction")
        constant = None if constant is None else 100 * constant
        bottom = _axis_bottom(scores, constant)
        top = max(score + error for score, error in zip(scores, errors, strict=True))
        room = 0.24 if any(row.get("metric.macro_f1.mean") is not None for row in picked) else 0.14
        axis.set_ylim(bottom, top + room * max(top - bottom, 1.0))  # room for the value labels
        title = task
        if constant is not None and constant >= bottom:
            axis.axhline(constant, color="black", linestyle=":", linewidth=1.2)
        elif constant is not None:  # a line far below the scores would squash their differences
            title += f"\n(constant prediction {constant:.1f}, below the axis)"
        axis.set_title(title, fontsize="medium")
        axis.set_ylabel(f"{metric} (%)")
        axis.grid(axis="y", alpha=0.3)
    for axis in grid.ravel()[len(tasks) :]:
        axis.set_visible(False)
    seeds = sorted({row["seeds"] for row in rows})
    spread = (
        "one seed (n = 1): no spread" if seeds == [1] else f"error bars: std over n = {'/'.join(map(str, seeds))} seeds"
    )
    figure.suptitle(
        f"Main metric per task, mean over seeds ({spread}); axes start near the lowest score", fontsize="medium"
    )
    handles: list[Any] = [Patch(color=colours[model], label=model) for model in models]
    handles.append(Line2D([], [], color="#333333", linestyle="--", label="teacher's score"))
    if any(row.get("constant_prediction") is not None for row in rows):
        handles.append(
            Line2D([], [], color="black", linestyle=":", label="constant prediction\n(most frequent test label)")
        )
    _save(figure, handles, path, where="outside right center")  # clear of the title above


def _axis_bottom(scores: list[float], constant: float | None) -> float:
    """Where a quality panel's axis starts: a little below the lowest score (down to a constant prediction
    close below it), on a multiple of 5 points; 0 when that is near 0 anyway."""
    low, high = min(scores), max(scores)
    if constant is not None and low - max(high - low, 10.0) <= constant < low:
        low = constant
    bottom = 5 * math.floor((low - 0.15 * max(high - low, 4.0)) / 5)
    return float(max(bottom, 0))


def plot_cost(rows: list[dict[str, Any]], path: Path, colours: dict[str, str]) -> None:
    """Counted parameters per model (embedding hatched above the rest), and fine-tuning and inference speedups
    per task against each evaluation's first model."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    first = {model: next(row for row in rows if row["model"] == model) for model in models}
    width = min(16.0, max(11.0, 0.7 * len(models) + 0.5 * len(models) * len(tasks) / 2 + 3))
    figure, panels = plt.subplot_mosaic(
        [["parameters", "parameters"], ["finetune", "inference"]], figsize=(width, 8), layout="constrained"
    )
    axes = [panels["parameters"], panels["finetune"], panels["inference"]]
    non_embedding = [(first[model]["non_embedding_parameters"] or 0) / 1e6 for model in models]
    totals = [(first[model]["parameters"] or 0) / 1e6 for model in models]
    embedding = [total - rest for total, rest in zip(totals, non_embedding, strict=True)]
    solid = axes[0].bar(models, non_embedding, color=[colours[model] for model in models])
    hatched = axes[0].bar(
        models, embedding, bottom=non_embedding, color=[colours[model] for model in models], alpha=0.45, hatch="//"
    )
    for bar, model in [*zip(solid, models, strict=True), *zip(hatched, models, strict=True)]:
        bar.set_gid(model)
    for bar, total in zip(hatched, totals, strict=True):
        label = f"{total:.1f}M" if total >= 0.1 else f"{total * 1e6:,.0f}"
        axes[0].text(bar.get_x() + bar.get_width() / 2, total, label, ha="center", va="bottom", fontsize="small")
    axes[0].set_ylim(0, 1.3 * max(totals + [1e-6]))  # room for the legend above the bars
    counted = "/".join(sorted({str(row.get("parameters_counted")) for row in rows}))
    axes[0].set_title(f"parameters (M): {counted}", fontsize="medium")
    plt.setp(axes[0].get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor", fontsize="small")
    parts = [
        Patch(facecolor="#d9d9d9", edgecolor="black", label="non-embedding (solid)"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="embedding (hatched, lighter)"),
    ]
    axes[0].legend(handles=parts, fontsize="small", loc="upper right")
    axes[0].grid(axis="y", alpha=0.3)
    baselines = sorted({str(row.get("baseline")) for row in rows})
    against = baselines[0] if len(baselines) == 1 else "each evaluation's first model"
    busy = any(row.get("finetune_speedup_busy") for row in rows)
    interleaved = all(row.get("inference_measured") == "interleaved" for row in rows)
    for axis, key, title in (
        (
            axes[1],
            "finetune_speedup",
            f"fine-tuning speedup (x) vs {against}\n(runs one after another"
            + ("; hatched: busy machine, not the models' speed)" if busy else ")"),
        ),
        (
            axes[2],
            "inference_speedup",
            f"inference speedup (x) vs {against}\n"
            + ("(interleaved: median of rounds in turns)" if interleaved else "(runs one after another)"),
        ),
    ):
        _grouped_bars(axis, rows, key, colours, hatched="finetune_speedup_busy" if key == "finetune_speedup" else None)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_title(title, fontsize="medium")
    # The models' plain colours, then the hatch of the busy bars on a swatch of its own: a model's swatch
    # never shows a pattern that only some of its bars have.
    handles = [Patch(facecolor=colours[model], label=model) for model in models]
    if busy:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=BUSY_HATCH, label=BUSY_LABEL))
    _save(figure, handles, path)


def _grouped_bars(
    axis: Any, rows: list[dict[str, Any]], key: str, colours: dict[str, str], hatched: str | None = None
) -> None:
    """One group of bars per task, one bar per model (in the order the rows list them) of ``row[key]``;
    hatched where ``row[hatched]`` is true."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        picked = [next((r for r in rows if r["model"] == model and r["task"] == task), None) for task in tasks]
        heights = [float(row[key] or 0.0) if row else 0.0 for row in picked]
        positions = [task_index + (index - (len(models) - 1) / 2) * width for task_index in range(len(tasks))]
        for bar, row in zip(
            axis.bar(positions, heights, width, color=colours[model], label=model), picked, strict=True
        ):
            bar.set_gid(model)
            if hatched and row and row.get(hatched):
                bar.set_hatch(BUSY_HATCH)
                bar.set_hatchcolor(_contrast(colours[model]))  # black on the teacher's dark grey would not show
    names = [textwrap.fill(task, TASK_LABEL_WIDTH) for task in tasks]
    axis.set_xticks(range(len(tasks)), names, fontsize="small")
    axis.grid(axis="y", alpha=0.3)


def _contrast(colour: str) -> str:
    """White on a dark colour, black on a light one."""
    red, green, blue = matplotlib.colors.to_rgb(colour)
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def _save(figure: Any, handles: list[Any], path: Path, where: str = "outside right upper") -> None:
    """Write a constrained-layout figure as PNG with a legend of ``handles`` beside the plots, never over them."""
    figure.legend(handles=handles, fontsize="small", loc=where)
    figure.savefig(path, dpi=120)
    plt.close(figure)
