"""Inference timed interleaved, so that a speed ratio holds under a steady load.

Fine-tuning runs are made one after another (the teacher's, then each student's), minutes apart, so a
change of load between them moves their ratio; their records say the load each ran under
(``machine.py``). Inference is measured again once every model is fine-tuned (``measure_inference``):
the baseline and one other model take turns on the same batch for a few rounds (``time_interleaved``),
and each keeps its median; a load that holds through a round slows both alike, so the ratio holds. The
harness stores it in the summary, whose speed table says which figure was measured which way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from monodistill.config import EvaluateConfig
from monodistill.evaluate.distil import AUTOCAST_DTYPES
from monodistill.evaluate.finetune import inference_batch, load_task_model
from monodistill.evaluate.machine import LoadProbe, machine
from monodistill.evaluate.tasks import Task

INFERENCE_ROUNDS = 5
"""Rounds of the interleaved inference measurement: each model's time is the median of as many passes."""


def time_interleaved(
    first: Callable[[], object],
    second: Callable[[], object],
    rounds: int = INFERENCE_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], list[float]]:
    """Seconds of each call of ``first`` and ``second``, taken in turns for ``rounds`` rounds after one
    untimed warm-up call each; the order flips every round (AB, BA, AB...), so neither always runs
    second, on a warmer cache or into a load that is rising."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    calls = (first, second)
    for round_index in range(rounds):
        for which in (0, 1) if round_index % 2 == 0 else (1, 0):
            start = clock()
            calls[which]()
            times[which].append(clock() - start)
    return times


def measure_inference(
    config: EvaluateConfig,
    labels: list[str],
    tokenizers: dict[str, Any],
    tasks: list[Task],
    tokenized: dict[tuple[Any, ...], Any],
    rounds: int = INFERENCE_ROUNDS,
) -> dict[str, Any]:
    """Each model's forward time on one batch of each task's test examples (evaluate.eval_batch_size of
    them, the same examples for every model), interleaved with the first model's (``time_interleaved``);
    medians, throughput and the speedup over the first model, with the machine and its load.

    Models are loaded with their task head (as fine-tuning starts them: the head's weights do not change
    the cost), one beside the first at a time, so memory holds two models at most.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    per_task: dict[str, Any] = {}
    with LoadProbe() as probe:
        for task in tasks:
            first = config.models[0]
            baseline, size = _forward_pass(first, tokenizers[first], task, config, tokenized, device)
            entries: dict[str, Any] = {}
            baseline_times: list[float] = []
            for model, label in zip(config.models[1:], labels[1:], strict=True):
                forward, _ = _forward_pass(model, tokenizers[model], task, config, tokenized, device)
                theirs, mine = time_interleaved(baseline, forward, rounds)
                baseline_times += theirs
                entries[label] = _timing_entry(mine, theirs, size)
            if not baseline_times:  # the first model alone: timed against itself
                baseline_times, _ = time_interleaved(baseline, baseline, rounds)
            entries = {labels[0]: _timing_entry(baseline_times, baseline_times, size), **entries}
            per_task[task.name] = {"batch_size": size, "models": entries}
    return {"method": "interleaved", "rounds": rounds, "machine": machine(), "load": probe.record(), "tasks": per_task}


def _forward_pass(
    model: str,
    tokenizer: Any,
    task: Task,
    config: EvaluateConfig,
    tokenized: dict[tuple[Any, ...], Any],
    device: torch.device,
) -> tuple[Callable[[], float], int]:
    """A call that runs ``model`` with its task head over one batch of test examples, and the batch's size."""
    network = load_task_model(model, task, device)
    batch = inference_batch(network, tokenizer, task, config, tokenized, device)
    dtype = AUTOCAST_DTYPES.get(config.mixed_precision)

    def forward() -> float:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = network(**batch).logits  # (B, C) or (B, T, C)
        return float(logits.float().sum().item())  # .item() waits for the device

    return forward, len(batch["input_ids"])


def _timing_entry(seconds: list[float], baseline_seconds: list[float], size: int) -> dict[str, Any]:
    median, baseline = statistics.median(seconds), statistics.median(baseline_seconds)
    return {
        "seconds": median,
        "baseline_seconds": baseline,
        "samples_per_second": size / median,
        "speedup": baseline / median,
        "values": seconds,
    }
