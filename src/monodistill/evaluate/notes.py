"""The sentences under an evaluation's tables: how the speeds were measured and on what, which timings
ran on a busy machine, which models ended at the majority class, and the learning rates used.

``summary.md``, the report and the model card print the same sentences (``tables.py`` places them).
"""

from __future__ import annotations

from typing import Any

from monodistill.evaluate.machine import BUSY_MARGIN, describe_machine
from monodistill.evaluate.metrics import METRIC_NAMES


def majority_note(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """Which models of ``labels`` (default: all) ended at the majority class on which task and seed, and why;
    "" when none did."""
    flagged = [
        f"{label} on {task} (seed {seed}: {why})"
        for label, entry in summary["models"].items()
        if labels is None or label in labels
        for task, result in entry["tasks"].items()
        for seed, why in (result.get("near_majority") or {}).items()
    ]
    if not flagged:
        return ""
    return (
        f"Ends at the majority class: {'; '.join(flagged)}. Such a score says no more than the label distribution; "
        "evaluate.learning_rates chooses the learning rate on held-out data."
    )


def learning_rate_note(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """The learning rate each model of ``labels`` (default: all) was fine-tuned with per task, and how it was
    chosen; "" for a summary that does not record it."""
    chosen: dict[str, list[str]] = {}  # how it was chosen -> "model on task: rate"
    for label, entry in summary["models"].items():
        for task, result in entry["tasks"].items():
            if not result.get("learning_rates") or (labels is not None and label not in labels):
                continue
            selection = result.get("learning_rate_selection")
            if selection:
                name = METRIC_NAMES.get(selection["by"], selection["by"])
                candidates = ", ".join(f"{rate:g}" for rate in selection["candidates"])
                how = f"chosen from {candidates} by {name} on {selection['dev']}"
            else:
                how = "evaluate.learning_rate, not chosen on held-out data"
            rates = "/".join(f"{rate:g}" for rate in dict.fromkeys(result["learning_rates"]))
            chosen.setdefault(how, []).append(f"{label} on {task}: {rates}")
    parts = [f"{', '.join(items)} ({how})" for how, items in chosen.items()]
    return f"Fine-tuning learning rate: {'; '.join(parts)}." if parts else ""


def measurement_notes(summary: dict[str, Any], table: bool = True) -> list[str]:
    """How the speed figures were measured, in sentences: fine-tuning sequential, inference interleaved (or,
    in summaries made before, each model's own pass), and the machines they ran on; ``table``: with the
    speed table's peak-load column explained."""
    timing = summary.get("inference_timing")
    peak = " (peak load: the highest 1-minute load average during the runs)" if table else ""
    notes = [
        "Fine-tuning: each model's own run, one after another, so a change of the machine's load between runs "
        f"moves its ratio{peak}."
    ]
    if timing:
        sizes = sorted({task["batch_size"] for task in timing["tasks"].values()})
        threads = timing["machine"]["torch_threads"]
        notes.append(
            f"Inference: measured interleaved, {summary['baseline']} and each model taking turns on one batch of "
            f"{'/'.join(map(str, sizes))} test examples, median of {timing['rounds']} turns each, on "
            f"{threads} torch thread{'s' if threads != 1 else ''}, so a steady load slows both alike and the "
            "ratio holds."
        )
    else:
        notes.append("Inference: each model's pass over the test split after its fine-tuning, one after another.")
    machines = list(summary.get("machines") or [])
    if not machines and timing:
        machines.append(describe_machine(timing["machine"]))
    if machines:
        notes.append(f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}.")
    else:
        notes.append("The machine and its load were not recorded (results made before they were).")
    return notes


def busy_measurements(summary: dict[str, Any], labels: list[str] | None = None) -> str:
    """What the busy timings of ``labels`` (default: every model) are, and how far to trust their ratios; ""
    when none was busy."""
    models = {label: entry for label, entry in summary["models"].items() if labels is None or label in labels}
    busy = [
        (label, task, result)
        for label, entry in models.items()
        for task, result in entry["tasks"].items()
        if result.get("finetune_busy")
    ]
    parts = []
    if busy:
        peak = max(result["finetune_load_peak"] for _, _, result in busy)
        threads = sorted({thread for _, _, result in busy for thread in result.get("threads", [])})
        runs = ", ".join(f"{label} on {task}" for label, task, _ in busy)
        parts.append(
            f"Busy: {runs} fine-tuned while the 1-minute load average (up to {peak:.1f}) was above the "
            f"{'/'.join(map(str, threads))} torch threads used by more than {BUSY_MARGIN}: other work held CPUs "
            "they wanted, so those times, and the fine-tuning speedups that involve them, are not the models' own "
            "speed; rerun on an idle machine to measure it."
        )
    timing = summary.get("inference_timing") or {}
    if (timing.get("load") or {}).get("busy"):
        parts.append(
            f"The interleaved inference measurement ran under load too (peak {timing['load']['peak']:.1f}); "
            "both models of each ratio shared it."
        )
    return " ".join(parts)


def cost_note(summary: dict[str, Any], labels: list[str]) -> str:
    """A model card's paragraph under its speedups: how they were measured, on what, and any busy timing of
    ``labels`` (the model and its baseline)."""
    return " ".join([*measurement_notes(summary, table=False), busy_measurements(summary, labels)]).strip()
