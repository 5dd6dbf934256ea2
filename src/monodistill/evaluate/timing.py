"""Inference timed interleaved, so that a speed ratio holds under a steady load.

Fine-tuning runs are made one after another (the teacher's, then each student's), minutes apart, so a
change of load between them moves their ratio; their records say the load each ran under
(``machine.py``). Inference is measured again once every model is fine-tuned (``measure_inference``):
the baseline and one other model take turns on the same batch for a few rounds (``time_interleaved``),
each turn repeating the pass for at least ``TURN_SECONDS``, and each model keeps its median; a load that
holds through a round slows both alike, so the ratio holds. On a CPU it runs on one thread
(``CPU_THREADS``, which says why). The harness stores it in the summary, whose speed table says which
figure was measured which way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from monodistill.config import EvaluateConfig
from monodistill.evaluate.distil import AUTOCAST_DTYPES
from monodistill.evaluate.finetune import inference_batch, load_task_model
from monodistill.evaluate.machine import LoadProbe, machine
from monodistill.evaluate.tasks import Task

INFERENCE_ROUNDS = 7
"""Rounds of the interleaved inference measurement: each model's time is the median of as many turns."""
CPU_THREADS = 1
"""torch threads of the interleaved measurement on a CPU. On a loaded 2-core machine, a 2-thread forward pass
of a tiny model took 20 to 850 ms (a thread barrier waits for a thread the scheduler took off its core) and the
ratio of two identical models read 0.5 to 1.25; on one thread it took 8 to 16 ms and read 0.94 to 1.13. One
thread measures the models' compute; with more, a large model gains more from parallel matrix products
than a small one, so its ratio to a student can differ."""
TURN_SECONDS = 0.2
"""A turn repeats its model's forward pass for at least this long: a pass of a few milliseconds, timed once,
varied 60-fold on a loaded 2-core machine (the scheduler's slices are longer than the pass)."""


def time_interleaved(
    first: Callable[[], object],
    second: Callable[[], object],
    rounds: int = INFERENCE_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
    turn_seconds: float = TURN_SECONDS,
) -> tuple[list[float], list[float]]:
    """Seconds per call of ``first`` and ``second``, timed in turns for ``rounds`` rounds after one untimed
    warm-up call each: a turn repeats its call for at least ``turn_seconds`` and keeps the mean. The order
    flips every round (AB, BA, AB...), so neither always runs second, on a warmer cache or into a rising load."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    calls = (first, second)
    for round_index in range(rounds):
        for which in (0, 1) if round_index % 2 == 0 else (1, 0):
            times[which].append(_turn(calls[which], clock, turn_seconds))
    return times


def _turn(call: Callable[[], object], clock: Callable[[], float], turn_seconds: float) -> float:
    """The mean seconds of ``call`` repeated for at least ``turn_seconds`` (once at least)."""
    count, start = 0, clock()
    while True:
        call()
        count += 1
        elapsed = clock() - start
        if elapsed >= turn_seconds:
            return elapsed / count


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
    the cost), one beside the first at a time, so memory holds two models at most. On a CPU they run on
    ``CPU_THREADS`` thread (the record says so).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    per_task: dict[str, Any] = {}
    with _threads(CPU_THREADS if device.type == "cpu" else torch.get_num_threads()), LoadProbe() as probe:
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
        where = machine()  # the threads it ran on
    return {"method": "interleaved", "rounds": rounds, "machine": where, "load": probe.record(), "tasks": per_task}


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block, as they were afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _forward_pass(
    model: str,
    tokenizer: Any,
    task: Task,
    config: EvaluateConfig,
    tokenized: dict[tuple[Any, ...], Any],
    device: torch.device,
) -> tuple[Callable[[], float], int]:
    """A call that runs ``model`` with its task head over one batch of test examples, and the batch's size."""
    network = load_task_model(model, task, device, tokenizer.pad_token_id)
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
