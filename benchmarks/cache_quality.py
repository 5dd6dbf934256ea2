"""The teacher cache's quality (issue 31): every student of a ``monodistill run`` folder scored against the live
teacher on one set of validation positions, and the students grouped by name with means, intervals and Welch's t.

A cached student's own validation reads its KL against the cache's validation summary (the top
``cache.validation_k`` tokens, the rest spread evenly), a live one's against the whole distribution: the two do not
compare. Here every student's KL(teacher || student) at T = 1 is computed again against the teacher itself, on the
run's validation blocks and masks (every next token for a causal teacher), beside the student's own masked-LM (or
next-token) loss and accuracy there. Students named
``NAME``, ``NAME-s43``, ``NAME-s44`` are one group ``NAME`` (distillation seeds); with ``--report`` (the
``results.json`` of ``monodistill report``) each group's downstream scores are read beside them.

    monodistill run --config configs/local-cache.yaml --output runs/local-cache
    monodistill report runs/local-cache --output docs/results/local-cache
    python benchmarks/cache_quality.py runs/local-cache --report docs/results/local-cache/results.json

Groups: mean ± the 95% interval of the mean (t with n - 1 degrees of freedom); p: Welch's t-test of each group
against the first (``--baseline``, default the first group in the run's order).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import scipy.stats
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from monodistill.config import DistillConfig, load_config
from monodistill.data.batches import BatchStream, Masking, NextToken
from monodistill.data.blocks import build_blocks
from monodistill.distill import TeacherPass
from monodistill.families import family_of
from monodistill.losses import Needs, kl_divergence
from monodistill.recipe import resolve_vocabulary
from monodistill.teacher import load_teacher

SEED_SUFFIX = re.compile(r"-s\d+$")


def score_students(run: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Each student's validation metrics against the live teacher, and the teacher's own, over the same positions (the
    masked ones, or every next token for a causal teacher)."""
    folders = sorted(path.parent.parent for path in (run / "students").glob("*/student/config.json"))
    if not folders:
        raise SystemExit(f"no distilled student in {run}/students/*/student")
    config = load_config(DistillConfig, folders[0] / "config.yaml")
    teacher, teacher_tokenizer = load_teacher(config.teacher)
    tokenizer, vocab_ids = resolve_vocabulary(config, teacher_tokenizer, folders[0])
    vocab_size = len(vocab_ids) if vocab_ids is not None else teacher.config.vocab_size
    objective = family_of(teacher).objective
    blocks = build_blocks(config.data, tokenizer, config.train.seed, objective)
    masked = objective == "masked"
    masking = Masking.of(tokenizer, vocab_size, config.data.mlm_probability) if masked else NextToken()
    batches = BatchStream(blocks, masking, config.train).validation()  # each block masked by its own seed: one set
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    teacher_pass = TeacherPass(teacher, vocab_ids, torch.device("cpu"))
    teacher_logits = [teacher_pass(batch, Needs()).scored_logits().at(slice(None)).float() for batch in batches]
    targets = torch.cat([batch.targets for batch in batches])
    teacher_all = torch.cat(teacher_logits)
    teacher_scores = {
        "teacher_mlm_loss": F.cross_entropy(teacher_all, targets).item(),
        "teacher_accuracy": (teacher_all.argmax(-1) == targets).float().mean().item(),
        "positions": float(targets.numel()),
    }
    scores = {}
    for folder in folders:
        student = auto.from_pretrained(folder / "student").eval()
        kl = loss = correct = 0.0
        with torch.inference_mode():
            for batch, teacher_batch in zip(batches, teacher_logits, strict=True):
                logits = student(input_ids=batch.input_ids).logits[batch.positions].float()  # (N, V)
                kl += kl_divergence(logits, teacher_batch, 1.0, "sum").item()
                loss += F.cross_entropy(logits, batch.targets, reduction="sum").item()
                correct += (logits.argmax(-1) == batch.targets).sum().item()
        count = targets.numel()
        scores[folder.name] = {
            "kl_to_teacher": kl / count,
            "mlm_loss": loss / count,
            "student_accuracy": correct / count,
        }
        print(f"{folder.name}: " + ", ".join(f"{key} {value:.4f}" for key, value in scores[folder.name].items()))
    return scores, teacher_scores


def downstream(report: Path) -> dict[str, dict[str, float]]:
    """Each model's main metric per task (in points: the mean over its fine-tuning seeds) and its bits per byte on a
    language-modelling task (no fine-tuning), from ``monodistill report``."""
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for row in json.loads(report.read_text()):
        if "main_metric" in row:
            metric = f"metric.{row['main_metric']}.mean"
            if row.get(metric) is not None:
                rows[row["model"]][row["task"]] = 100 * float(row[metric])
        elif row.get("metric.bits_per_byte") is not None:
            rows[row["model"]][f"{row['task']} bits per byte"] = float(row["metric.bits_per_byte"])
    return rows


def interval(values: list[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% interval (t, n - 1 degrees of freedom)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((value - mean) ** 2 for value in values) / (n - 1))
    return mean, float(scipy.stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def table(per_student: dict[str, dict[str, float]], baseline: str | None) -> str:
    """A markdown table: one row per group, each column's mean ± interval and Welch's p against ``baseline``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in per_student:
        groups[SEED_SUFFIX.sub("", name)].append(name)
    columns = sorted({column for scores in per_student.values() for column in scores})
    first = baseline or next(iter(groups))
    lines = [
        f"| group (seeds) | {' | '.join(columns)} |",
        f"|---|{'---|' * len(columns)}",
    ]
    for group, names in groups.items():
        cells = []
        for column in columns:
            values = [per_student[name][column] for name in names if column in per_student[name]]
            mean, half = interval(values)
            cell = f"{mean:.4f} ± {half:.4f}"
            if group != first:
                reference = [per_student[name][column] for name in groups[first] if column in per_student[name]]
                p = scipy.stats.ttest_ind(values, reference, equal_var=False).pvalue
                cell += f" (p = {p:.2g})"
            cells.append(cell)
        lines.append(f"| {group} ({len(names)}) | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a `monodistill run` folder")
    parser.add_argument("--report", type=Path, help="the results.json `monodistill report` wrote of the run")
    parser.add_argument("--baseline", help="the group the others are tested against (default: the first)")
    args = parser.parse_args()
    torch.manual_seed(0)
    scores, teacher = score_students(args.run)
    print(
        f"teacher over the same {teacher['positions']:,.0f} positions: "
        + ", ".join(f"{key} {value:.4f}" for key, value in teacher.items() if key != "positions")
    )
    if args.report is not None:
        for model, tasks in downstream(args.report).items():
            if model in scores:
                scores[model].update(tasks)
    print(table(scores, args.baseline))


if __name__ == "__main__":
    main()
