"""A model card's downstream results, read from an evaluation's ``summary.json``: this model's scores
beside the baseline's, and the data each score was made on.

Where a score was made is what the evaluation recorded (``summary["task_sources"]``), never the task's
name: a local file named as a Hub task is named as local files, and only a Hub dataset's own test split,
scored whole, counts as a score on it (``is_hub_score``, which the Hub's ``model-index`` also asks).
A causal LM's scores with no fine-tuning (bits per byte beside the baseline's, multiple-choice accuracy) follow
its fine-tuned ones (``lm_tables.language_card_table``), with the files they were read from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monodistill.evaluate.lm_tables import language_card_table
from monodistill.evaluate.tables import card_table, seed_count, seeds_phrase


def summary_entry(summary: dict[str, Any], student_dir: Path) -> dict[str, Any] | None:
    """The entry of an evaluation summary whose model is ``student_dir``, or None."""
    entries = summary["models"].values()
    return next((entry for entry in entries if Path(entry["model"]).resolve() == student_dir.resolve()), None)


def evaluation_section(summary: dict[str, Any], student_dir: Path, epochs: float | None = None) -> str:
    """Downstream results of this student beside the baseline's, from an evaluation ``summary.json``, and the
    data each task's score was made on (``task_data``; ``epochs``: the evaluation's ``epochs``)."""
    entries = summary["models"]
    mine = summary_entry(summary, student_dir)
    if mine is None:
        return ""
    label = next(label for label, entry in entries.items() if entry is mine)
    language = language_card_table(summary, label)
    if not mine["tasks"] and not language:
        return ""
    lines = ["## Downstream results", ""]
    if mine["tasks"]:
        lines += [_results_intro(summary, mine), "", *card_table(summary, label), ""]
    if language:
        lines += [*language, ""]
    data = summary.get("task_sources") or {}
    lines += ["Task data:", ""]
    lines += [f"- {task_data(task, data.get(task), result, epochs)}." for task, result in mine["tasks"].items()]
    sources = summary.get("language_tasks") or {}
    lines += [f"- {language_task_data(task, sources.get(task))}." for task in mine.get("language") or {}]
    return "\n".join(lines) + "\n\n"


def language_task_data(task: str, described: dict[str, Any] | None) -> str:
    """One line naming what a language-model task scored: its file (and the lines read), or its prompts."""
    source = (described or {}).get("source") or {}
    kind = (described or {}).get("kind", "language-model task")
    if "file" not in source:
        prompts = source.get("prompts", 0)
        return f"`{task}`: generation samples of {prompts} prompt{'s' if prompts != 1 else ''} (in the report)"
    file = "/".join(Path(source["file"]).parts[-2:])
    if "documents" in source:
        where = f"{source['documents']:,} documents (lines) of `{file}` from line {source['first_line']:,}"
        return f"`{task}`: {kind} on {where}, no fine-tuning"
    return f"`{task}`: {kind}, {source.get('questions', 0):,} questions of `{file}`, no fine-tuning"


def _results_intro(summary: dict[str, Any], mine: dict[str, Any]) -> str:
    """How the scores were made: seeds, the baseline, and any task-stage distillation."""
    baseline_label = summary["baseline"]
    baseline = summary["models"][baseline_label]
    counts = {
        seed_count(result[f"metric.{result['main_metric']}"])
        for entry in (mine, baseline)
        for result in entry["tasks"].values()
    }
    intro = f"Fine-tuned with identical settings; {seeds_phrase(counts)}; "
    intro += f"baseline: {baseline_label} (`{baseline['model']}`)."
    # evaluate.distil_from: fine-tuned with a KL term to another model's fine-tuned logits, not plainly.
    sources = sorted(
        {result["distilled_from"]["model"] for result in mine["tasks"].values() if result.get("distilled_from")}
    )
    if sources:
        intro += f" Rows marked (task KD): fine-tuned with task-stage distillation from `{', '.join(sources)}`."
    return intro


def is_hub_score(source: dict[str, Any], result: dict[str, Any]) -> bool:
    """Whether a task result is a score on the Hub dataset its source names: read from the Hub, and its whole
    test split scored (``evaluate.max_eval_samples`` scores a sample of it)."""
    return bool(source.get("hub")) and result.get("test_samples") == source.get("test_rows")


def task_data(task: str, source: dict[str, Any] | None, result: dict[str, Any], epochs: float | None) -> str:
    """One line naming the data a task's score was made on, as the evaluation recorded it."""
    if not source:
        return (
            f"`{task}`: this evaluation did not record where its data was read (evaluate again to record it), so "
            "its score is not given to the Hub's model-index"
        )
    trained, scored = result.get("train_samples"), result.get("test_samples")
    train = _examples(trained, source.get("train_rows"), "fine-tuned on")
    test = _examples(scored, source.get("test_rows"), "scored on")
    cadence = f", {epochs:g} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    if source.get("hub"):
        config = f" ({source['config']})" if source.get("config") else ""
        line = (
            f"`{task}`: the Hub dataset `{source['hub']}`{config}, its `{source['train_split']}` split ({train}) and "
            f"`{source['test_split']}` split ({test}){cadence}"
        )
        return line if is_hub_score(source, result) else line + "; a sample of the split, not given to model-index"
    files = {split: "/".join(Path(path).parts[-2:]) for split, path in source.get("files", {}).items()}
    return (
        f"`{task}`: local files, not a Hub dataset: `{files.get('train')}` ({train}) and `{files.get('test')}` as "
        f"the test split ({test}){cadence}; not given to the Hub's model-index"
    )


def _examples(used: int | None, rows: int | None, verb: str) -> str:
    if used is None or rows is None:
        return f"{verb} {rows:,} examples" if rows is not None else "examples not recorded"
    return f"{verb} all {rows:,} examples" if used == rows else f"{verb} {used:,} of its {rows:,} examples"


def evaluation_epochs(evaluate_config: Path) -> float | None:
    """The fine-tuning epochs an evaluation folder's ``config.yaml`` records, or None."""
    if not evaluate_config.is_file():
        return None
    epochs = (yaml.safe_load(evaluate_config.read_text()) or {}).get("epochs")
    return float(epochs) if isinstance(epochs, int | float) else None
