"""The tables of docs/RESULTS.md, "Recipes", from the recipes experiment's stored results.

    .venv/bin/python docs/results/local-recipes/tables.py [runs/local-recipes]     (from the repository root)

Reads every seed's result of the plain evaluation (``EXP/evaluate``) and of the task-stage KD
evaluation (``EXP/evaluate-kd``), and prints, per task, each model's mean and std over seeds, its gap
to the teacher and to the adapted teacher (points), and Welch's t-test p-value against each; then the
run-to-run spread of the reference recipe (``paper`` against ``paper-seed43``), the distillation
metrics of each student at its last validation, and whether the bar (within 1 point of the teacher on
Hatespeech and POS) is reached.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import scipy.stats

from monodistill.evaluate.metrics import main_metric

TEACHER, ADAPTED = "mmt-mini", "teacher-adapted"
BAR_TASKS = ("hatespeech-filipino", "ud-tagalog-pos")


def scores(folder: Path) -> dict[tuple[str, str], list[float]]:
    """(model label, task) -> the main metric of every seed, in points."""
    found: dict[tuple[str, str], list[float]] = {}
    for path in sorted(folder.glob("results/*/*/seed-*.json")):
        result = json.loads(path.read_text())
        metric = result["metrics"][main_metric(result["metric"])]
        found.setdefault((short(result["label"]), result["task"]), []).append(100 * metric)
    return found


def short(label: str) -> str:
    """``models__mmt-mini`` -> ``mmt-mini``, ``paper__student`` -> ``paper``: evaluate's labels of several folders
    named ``student`` carry their parent's name."""
    return label.removeprefix("models__").removesuffix("__student")


def welch(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    return float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/local-recipes")
    plain = scores(root / "evaluate")
    kd = {(f"{label} + task KD", task): values for (label, task), values in scores(root / "evaluate-kd").items()}
    kd = {key: values for key, values in kd.items() if not key[0].startswith(TEACHER)}
    everything = {**plain, **kd}
    tasks = sorted({task for _, task in everything})
    models = list(dict.fromkeys(label for label, _ in everything))
    print(f"models: {models}\n")
    for task in tasks:
        teacher = everything.get((TEACHER, task), [])
        adapted = next((values for (label, t), values in everything.items() if t == task and ADAPTED in label), [])
        print(f"### {task}\n")
        print("| model | score | gap to teacher | p | gap to adapted teacher | p |")
        print("|---|---|---|---|---|---|")
        for model in models:
            values = everything.get((model, task))
            if not values:
                continue
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells = [f"{mean:.2f} ± {spread:.2f} (n={len(values)})"]
            for reference in (teacher, adapted):
                if reference:
                    p = welch(values, reference)
                    cells += [f"{mean - statistics.mean(reference):+.2f}", f"{p:.3f}" if p is not None else "-"]
                else:
                    cells += ["-", "-"]
            print(f"| {model} | " + " | ".join(cells) + " |")
        print()
    print("### bar: within 1 point of the teacher on " + " and ".join(BAR_TASKS) + "\n")
    for model in models:
        gaps = []
        for task in BAR_TASKS:
            values, teacher = everything.get((model, task)), everything.get((TEACHER, task))
            if values and teacher:
                gaps.append(statistics.mean(values) - statistics.mean(teacher))
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
