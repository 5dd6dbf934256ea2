"""The tables of docs/RESULTS.md, "Recipes", from the recipes experiment's stored results.

    .venv/bin/python docs/results/local-recipes/tables.py [runs/local-recipes]     (from the repository root)

Scores come from the files stored beside this script: ``results.json`` (the second session's report,
plain and task-KD fine-tuning) over ``earlier.json`` (the first session's scores, whose seed files are
gone). Given a run folder, every seed's result of its plain evaluation (``EXP/evaluate``) and of its
task-stage KD evaluation (``EXP/evaluate-kd``) takes precedence over both. Prints, per task, each
model's mean and std over seeds, its gap to the teacher and to the adapted teacher (points) with the
gap's 95% confidence interval and Welch's t-test p-value (both from means, stds and seed counts); and
what those intervals say of the bar (within 1 point of the teacher on Hatespeech and POS). The
distillation metrics of each student at its last validation, and its masked-token accuracy curve,
come from the run folder's logs, which are not stored: only with a run folder.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import scipy.stats

from monodistill.evaluate.metrics import main_metric

TEACHER, ADAPTED = "mmt-mini", "teacher-adapted"
BAR_TASKS = ("hatespeech-filipino", "ud-tagalog-pos")
BAR = 1.0
"""Points below the teacher that a student may be and still reach the bar (above it is always within)."""
LEVEL = 0.95
"""Confidence level of the gaps' intervals."""
EARLIER = Path(__file__).with_name("earlier.json")
STORED = Path(__file__).with_name("results.json")


@dataclass(frozen=True)
class Score:
    """One model's main metric on one task over its fine-tuning seeds, in points."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Score:
        return cls(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def scores(folder: Path) -> dict[tuple[str, str], Score]:
    """(model label, task) -> the main metric over every seed file of an evaluation folder. A model evaluated
    again beside other models (another label, the same seed) counts once per seed."""
    found: dict[tuple[str, str], dict[int, float]] = {}
    for path in sorted(folder.glob("results/*/*/seed-*.json")):
        result = json.loads(path.read_text())
        metric = result["metrics"][main_metric(result["metric"])]
        found.setdefault((short(result["model"]), result["task"]), {})[result["seed"]] = 100 * metric
    return {key: Score.of(list(values.values())) for key, values in found.items()}


def earlier(path: Path) -> tuple[dict[tuple[str, str], Score], dict[tuple[str, str], Score]]:
    """The first session's plain and task-KD scores, whose seed files are gone (see the file's note)."""
    plain: dict[tuple[str, str], Score] = {}
    kd: dict[tuple[str, str], Score] = {}
    for row in json.loads(path.read_text())["results"]:
        (kd if row["distilled_from"] else plain)[row["model"], row["task"]] = Score(row["mean"], row["std"], row["n"])
    return plain, kd


def stored(path: Path) -> tuple[dict[tuple[str, str], Score], dict[tuple[str, str], Score]]:
    """The plain and task-KD scores of a report's ``results.json`` (a row per model, task and evaluation).
    A model is named by its evaluation label, which keeps its folder's last two names (``hidden__student``,
    ``models__mmt-mini``): the same name ``short`` gives its folder."""
    plain: dict[tuple[str, str], Score] = {}
    kd: dict[tuple[str, str], Score] = {}
    for row in json.loads(path.read_text()):
        metric = f"metric.{row['main_metric']}"
        score = Score(100 * row[f"{metric}.mean"], 100 * row[f"{metric}.std"], int(row["seeds"]))
        (kd if row["distilled_from"] else plain)[short(row["label"].replace("__", "/")), row["task"]] = score
    return plain, kd


def short(model: str) -> str:
    """A model's name in the tables: its folder's, or its parent's for a folder named ``student``
    (``runs/local-recipes/students/paper/student`` -> ``paper``). evaluate's labels depend on which other
    models were evaluated beside it, so they are not used."""
    path = Path(model)
    return path.parent.name if path.name == "student" else path.name


def welch(a: Score, b: Score) -> float | None:
    """Welch's t-test p-value from the two means, sample stds and seed counts."""
    if a.n < 2 or b.n < 2:
        return None
    if a.std == 0 and b.std == 0:
        return 1.0 if a.mean == b.mean else 0.0
    result = scipy.stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False)
    return float(result.pvalue)


def welch_interval(a: Score, b: Score, level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` confidence interval of a.mean - b.mean: Welch's, from the two means, sample stds and
    seed counts (t quantile at the Welch-Satterthwaite degrees of freedom)."""
    if a.n < 2 or b.n < 2:
        return None
    gap = a.mean - b.mean
    variances = (a.std**2 / a.n, b.std**2 / b.n)  # of each mean
    spread = sum(variances)
    if spread == 0:
        return gap, gap
    freedom = spread**2 / (variances[0] ** 2 / (a.n - 1) + variances[1] ** 2 / (b.n - 1))
    half = float(scipy.stats.t.ppf((1 + level) / 2, freedom)) * spread**0.5
    return gap - half, gap + half


def interval_text(interval: tuple[float, float] | None) -> str:
    return f"[{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "-"


def bar_verdict(interval: tuple[float, float]) -> str:
    """What a gap's interval supports about the bar (a gap of -BAR or more): ``within`` where the interval
    lies above -BAR, ``behind`` where it lies below, ``not shown`` where it holds -BAR."""
    low, high = interval
    if low >= -BAR:
        return "within"
    if high < -BAR:
        return "behind"
    return "not shown"


def bar_words(interval: tuple[float, float]) -> str:
    """``bar_verdict`` in words, and whether an interval that holds -BAR holds 0 too."""
    verdict = bar_verdict(interval)
    if verdict == "within":
        return f"shown within {BAR:g} point"
    if verdict == "behind":
        return f"shown more than {BAR:g} point behind"
    return f"holds -{BAR:g}{' and 0' if interval[0] <= 0 <= interval[1] else ', not 0'}: not shown either way"


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    old_plain, old_kd = earlier(EARLIER) if EARLIER.exists() else ({}, {})
    stored_plain, stored_kd = stored(STORED) if STORED.exists() else ({}, {})
    distilled = scores(root / "evaluate-kd") if root else {}
    # The teacher's plain fine-tuning is done in evaluate-kd (which needs its classifiers) when evaluate has none.
    teacher_plain = {key: score for key, score in distilled.items() if key[0] == TEACHER}
    plain = {**old_plain, **stored_plain, **teacher_plain, **(scores(root / "evaluate") if root else {})}
    distilled_kd = {key: score for key, score in distilled.items() if key[0] != TEACHER}
    kd = {**old_kd, **stored_kd, **distilled_kd}
    everything = {**plain, **{(f"{label} + task KD", task): score for (label, task), score in kd.items()}}
    tasks = sorted({task for _, task in everything})
    models = sorted(dict.fromkeys(label for label, _ in everything), key=lambda m: ("task KD" in m, m))
    print(f"models: {models}\n")
    for task in tasks:
        teacher = everything.get((TEACHER, task))
        adapted = everything.get((ADAPTED, task))
        print(f"### {task}\n")
        print(f"| model | score | gap to teacher | {LEVEL:.0%} CI | p | gap to adapted teacher | {LEVEL:.0%} CI | p |")
        print("|---|---|---|---|---|---|---|---|")
        for model in models:
            score = everything.get((model, task))
            if score is None:
                continue
            cells = [f"{score.mean:.2f} ± {score.std:.2f} (n={score.n})"]
            for reference in (teacher, adapted):
                if reference is None or reference is score:
                    cells += ["-", "-", "-"]
                    continue
                p = welch(score, reference)
                gap = f"{score.mean - reference.mean:+.2f}"
                cells += [gap, interval_text(welch_interval(score, reference)), f"{p:.3f}" if p is not None else "-"]
            print(f"| {model} | " + " | ".join(cells) + " |")
        print()
    print(f"### bar: within {BAR:g} point of the teacher on " + " and ".join(BAR_TASKS) + "\n")
    print(
        f"Gap to the teacher with its {LEVEL:.0%} interval (Welch) and what the interval supports: within "
        f"{BAR:g} point where it lies above -{BAR:g}, more than {BAR:g} point behind where it lies below, "
        f"neither where it holds -{BAR:g}. The bar is shown reached where every interval lies above "
        f"-{BAR:g}, shown missed where one lies below; the point estimates' verdict beside it.\n"
    )
    print(
        "| model | "
        + " | ".join(f"{task}: gap [{LEVEL:.0%} CI]" for task in BAR_TASKS)
        + " | bar, by the intervals | by the point estimates |"
    )
    print("|---|" + "---|" * len(BAR_TASKS) + "---|---|")
    for model in models:
        if model == TEACHER:
            continue
        gaps, verdicts, cells = [], [], []
        for task in BAR_TASKS:
            score, teacher = everything.get((model, task)), everything.get((TEACHER, task))
            interval = welch_interval(score, teacher) if score and teacher else None
            if score and teacher and interval:
                gaps.append(score.mean - teacher.mean)
                verdicts.append(bar_verdict(interval))
                cells.append(f"{gaps[-1]:+.2f} {interval_text(interval)}: {bar_words(interval)}")
        if len(gaps) == len(BAR_TASKS):
            point = "reached" if all(gap >= -BAR for gap in gaps) else f"short by {-min(gaps) - BAR:.2f}"
            shown = "missed" if "behind" in verdicts else "reached" if set(verdicts) == {"within"} else "not shown"
            print(f"| {model} | " + " | ".join(cells) + f" | {shown} | {point} |")
    if root is None:
        print(
            "\n(The last validation of each student and its masked-token accuracy curve are read from a run "
            "folder's metrics.jsonl, which is not stored: pass the run folder to print them.)"
        )
        return
    print("\n### last validation of each student\n")
    print("| student | steps | MLM loss | KL to teacher (T=1) | agreement | accuracy | top-prediction share |")
    print("|---|---|---|---|---|---|---|")
    logs = {
        path.parent.name: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for path in sorted((root / "students").glob("*/metrics.jsonl"))
    }
    for name, records in logs.items():
        last = [record for record in records if "teacher_agreement" in record]
        if last:
            r = last[-1]
            print(
                f"| {name} | {r.get('step')} | {r['mlm_loss']:.3f} | {r['kl_to_teacher']:.3f} "
                f"| {r['teacher_agreement']:.3f} | {r['student_accuracy']:.3f} "
                f"| {r.get('student_top_prediction_share', float('nan')):.3f} |"
            )

    print("\n### masked-token accuracy (%) at each validation: is it still rising at the end of the budget?\n")
    curves = {
        name: {r["step"]: r["student_accuracy"] for r in records if "student_accuracy" in r}
        for name, records in logs.items()
    }
    steps = sorted({step for curve in curves.values() for step in curve})
    print("| student | " + " | ".join(str(step) for step in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for name, curve in curves.items():
        print(f"| {name} | " + " | ".join(f"{100 * curve[s]:.1f}" if s in curve else "-" for s in steps) + " |")


if __name__ == "__main__":
    main()
