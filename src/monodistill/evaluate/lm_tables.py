"""The language-model tasks of a summary (``lm_harness.add_language_results``) as Markdown: bits per byte and
perplexity, multiple-choice accuracy, and generation samples; for ``summary.md`` and the report
(``language_tables``), a model card (``language_card_table``) and the end of ``run`` (``language_headline``).
"""

from __future__ import annotations

from typing import Any

from monodistill.evaluate.lm_tasks import GENERATION, LANGUAGE_MODELING, MULTIPLE_CHOICE

BITS_PER_BYTE = "bits per byte (lower is better)"
LANGUAGE_NOTE = (
    "Language modelling, no fine-tuning. Bits per byte: the negative log-likelihood of every token of the text, "
    "in bits, over the text's UTF-8 bytes, so models of different vocabularies compare on it; perplexity is per "
    "token of each model's own tokenizer, so it compares only models that share one. Each document (a line) is "
    "read from its tokenizer's BOS, else its EOS, and every token of it is scored. A model on a trimmed "
    "vocabulary spends no probability on the tokens it dropped, so the trimmed teacher scores fewer bits per byte "
    "than the teacher it was cut from, with the same weights: by the probability the teacher gave those tokens"
)
CHOICE_NOTE = (
    "Multiple choice by log-likelihood, no fine-tuning (points): each answer scored by the sum of its tokens' "
    "log-probabilities after the prompt (accuracy) and by that sum per UTF-8 byte of the answer (accuracy per "
    "byte, as lm-evaluation-harness's acc_norm per character); chance is one in the number of answers."
)


def language_tables(summary: dict[str, Any]) -> list[str]:
    """Every language-model table of ``summary`` with the sentences that say what it holds; [] without any."""
    kinds = {name: task["kind"] for name, task in (summary.get("language_tasks") or {}).items()}
    lines: list[str] = []
    if LANGUAGE_MODELING in kinds.values():
        lines += _modeling_table(summary, [name for name, kind in kinds.items() if kind == LANGUAGE_MODELING])
    if MULTIPLE_CHOICE in kinds.values():
        lines += _choice_table(summary, [name for name, kind in kinds.items() if kind == MULTIPLE_CHOICE])
    for name in (name for name, kind in kinds.items() if kind == GENERATION):
        lines += _samples(summary, name)
    return lines


def _results(summary: dict[str, Any], task: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, result) of every model with a result on ``task``, in the summary's order."""
    return [
        (label, entry["language"][task])
        for label, entry in summary["models"].items()
        if task in (entry.get("language") or {})
    ]


def _modeling_table(summary: dict[str, Any], tasks: list[str]) -> list[str]:
    windows = sorted(
        {
            f"{result['max_length']} tokens moving {result['stride']} at a time"
            for task in tasks
            for _, result in _results(summary, task)
        }
    )
    note = f"{LANGUAGE_NOTE}; a longer document is read in windows of {' or '.join(windows)}, each token scored once."
    baseline = summary["baseline"]
    lines = [
        "",
        note,
        "",
        f"| model | task | {BITS_PER_BYTE} | vs {baseline} | perplexity per token | tokens scored | bytes per token |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        base = ((summary["models"].get(baseline) or {}).get("language") or {}).get(task)
        for label, result in _results(summary, task):
            bits = result["metrics"]["bits_per_byte"]
            gap = f"{bits - base['metrics']['bits_per_byte']:+.4f}" if base else "-"
            lines.append(
                f"| {label} | {task} | {bits:.4f} | {gap} | {result['metrics']['perplexity']:.2f} | "
                f"{result['tokens']:,} | {result['bytes_per_token']:.2f} |"
            )
    return lines


def _choice_table(summary: dict[str, Any], tasks: list[str]) -> list[str]:
    lines = [
        "",
        CHOICE_NOTE,
        "",
        "| model | task | accuracy | accuracy per byte | questions |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        results = _results(summary, task)
        for label, result in results:
            metrics = result["metrics"]
            lines.append(
                f"| {label} | {task} | {100 * metrics['accuracy']:.2f} | {100 * metrics['accuracy_per_byte']:.2f} | "
                f"{result['questions']:,} |"
            )
        if results:
            chance = 100 * results[0][1]["chance"]
            lines.append(f"| chance | {task} | {chance:.2f} | {chance:.2f} | |")
    return lines


def _samples(summary: dict[str, Any], task: str) -> list[str]:
    """A generation task's samples: its settings, then per prompt a row per model."""
    results = _results(summary, task)
    if not results:
        return []
    lines = ["", f"Generation samples ({task}): {results[0][1]['settings']}.", ""]
    for number, sample in enumerate(results[0][1]["samples"]):
        lines += [f"Prompt: {_cell(sample['prompt'])}", "", "| model | continuation |", "|---|---|"]
        for label, result in results:
            continuation = result["samples"][number]["continuation"] if number < len(result["samples"]) else ""
            lines.append(f"| {label} | {_cell(continuation) or '(nothing before EOS)'} |")
        lines.append("")
    return lines


def _cell(text: str) -> str:
    """Text as one Markdown table cell: pipes escaped, ``<`` as an entity (no tag reaches the HTML report), line
    breaks shown as ``↵``, other control characters as ``\\xNN`` (a weak model's bytes are anything)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;").replace("<", "&lt;")
    text = text.replace("\r\n", "\n").replace("\n", " ↵ ")
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text).strip()


def language_card_table(summary: dict[str, Any], label: str) -> list[str]:
    """A model card's table of ``label``'s language-model scores beside the baseline's; [] without any."""
    mine = summary["models"][label].get("language") or {}
    baseline = summary["models"][summary["baseline"]].get("language") or {}
    rows = []
    for task, result in mine.items():
        base = (baseline.get(task) or {}).get("metrics") or {}
        chance = f"{100 * result.get('chance', 0):.2f}"
        for key, name, scale, digits in (
            ("bits_per_byte", BITS_PER_BYTE, 1, 4),
            ("perplexity", "perplexity per token", 1, 2),
            ("accuracy", f"accuracy (points; chance {chance})", 100, 2),
            ("accuracy_per_byte", "accuracy per byte (points)", 100, 2),
        ):
            if key in result.get("metrics", {}):
                ours = f"{scale * result['metrics'][key]:.{digits}f}"
                theirs = f"{scale * base[key]:.{digits}f}" if key in base else "-"
                rows.append(f"| {task} | {name} | {ours} | {theirs} |")
    if not rows:
        return []
    return [
        f"Language-model quality with no fine-tuning, beside the baseline ({summary['baseline']}): bits per byte "
        "compares models of any vocabulary; perplexity only models of one tokenizer.",
        "",
        "| task | metric | this model | baseline |",
        "|---|---|---|---|",
        *rows,
    ]


def language_headline(summary: dict[str, Any]) -> list[str]:
    """``run``'s closing table of the language-model scores: bits per byte and multiple-choice accuracy."""
    columns = [
        (name, "bits_per_byte" if task["kind"] == LANGUAGE_MODELING else "accuracy")
        for name, task in (summary.get("language_tasks") or {}).items()
        if task["kind"] != GENERATION
    ]
    if not columns:
        return []
    headers = [f"{name} {'bits/byte' if key == 'bits_per_byte' else 'accuracy'}" for name, key in columns]
    lines = [
        "language-model tasks, no fine-tuning (bits per byte: lower is better; accuracy in points):",
        "| model | " + " | ".join(headers) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for label, entry in summary["models"].items():
        cells = []
        for name, key in columns:
            value = (((entry.get("language") or {}).get(name) or {}).get("metrics") or {}).get(key)
            cells.append("-" if value is None else f"{value:.4f}" if key == "bits_per_byte" else f"{100 * value:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines
