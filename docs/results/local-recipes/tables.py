"""The tables of docs/RESULTS.md, "Recipes", from the recipes experiment's stored results.

    .venv/bin/python docs/results/local-recipes/tables.py [runs/local-recipes]     (from the repository root)

Reads every seed's result of the plain evaluation (``EXP/evaluate``) and of the task-stage KD
evaluation (``EXP/evaluate-kd``), falling back to ``earlier.json`` (the first session's scores, whose
seed files are gone) for every model and task the run folder has none for. Prints, per task, each
model's mean and std over seeds, its gap to the teacher and to the adapted teacher (points), and
Welch's t-test p-value against each (from means, stds and seed counts); whether the bar (within 1
point of the teacher on Hatespeech and POS) is reached; the distillation metrics of each student at
its last validation, and its masked-token accuracy curve.
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
EARLIER = Path(__file__).with_name("earlier.json")


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


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/local-recipes")
    old_plain, old_kd = earlier(EARLIER) if EARLIER.exists() else ({}, {})
    distilled = scores(root / "evaluate-kd")
    # The teacher's plain fine-tuning is done in evaluate-kd (which needs its classifiers) when evaluate has none.
    teacher_plain = {key: score for key, score in distilled.items() if key[0] == TEACHER}
    plain = {**old_plain, **teacher_plain, **scores(root / "evaluate")}
    kd = {**old_kd, **{key: score for key, score in distilled.items() if key[0] != TEACHER}}
    everything = {**plain, **{(f"{label} + task KD", task): score for (label, task), score in kd.items()}}
    tasks = sorted({task for _, task in everything})
    models = sorted(dict.fromkeys(label for label, _ in everything), key=lambda m: ("task KD" in m, m))
    print(f"models: {models}\n")
    for task in tasks:
        teacher = everything.get((TEACHER, task))
        adapted = everything.get((ADAPTED, task))
        print(f"### {task}\n")
        print("| model | score | gap to teacher | p | gap to adapted teacher | p |")
        print("|---|---|---|---|---|---|")
        for model in models:
            score = everything.get((model, task))
            if score is None:
                continue
            cells = [f"{score.mean:.2f} ± {score.std:.2f} (n={score.n})"]
            for reference in (teacher, adapted):
                if reference is None:
                    cells += ["-", "-"]
                    continue
                p = welch(score, reference)
                cells += [f"{score.mean - reference.mean:+.2f}", f"{p:.3f}" if p is not None else "-"]
            print(f"| {model} | " + " | ".join(cells) + " |")
        print()
    print("### bar: within 1 point of the teacher on " + " and ".join(BAR_TASKS) + "\n")
    for model in models:
        gaps = []
        for task in BAR_TASKS:
            score, teacher = everything.get((model, task)), everything.get((TEACHER, task))
            if score and teacher:
                gaps.append(score.mean - teacher.mean)
        if len(gaps) == len(BAR_TASKS):
            reached = all(gap >= -1.0 for gap in gaps)
            shown = ", ".join(f"{gap:+.2f}" for gap in gaps)
            print(f"- {model}: {shown} -> {'reached' if reached else 'short by ' + f'{-min(gaps) - 1.0:.2f}'}")
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
