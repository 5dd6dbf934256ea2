"""What a timing ran on and under what load, so a reader can weigh it.

A timing depends on what else the machine does: on a shared 2-core CPU, one student architecture
measured 1.08x its teacher's fine-tuning speed in one evaluation and 4.51x in another. So every timing
carries its context: the machine (``machine``: CPU model, CPUs, torch threads, device) and the
1-minute load average before, during and after it (``LoadProbe``). A timing is *busy* when that load
went above the threads the run used by more than ``BUSY_MARGIN``: other work then held CPUs the run's
threads wanted, and its time says as much about that work as about the model.
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

BUSY_MARGIN = 0.5
"""Load above the threads a run uses, in CPUs, beyond which the run counts as busy: an idle machine's
shell, logger and sampling thread stay below it."""
SAMPLE_INTERVAL = 5.0
"""Seconds between load samples during a timed block (the kernel updates the load average every 5 s)."""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What a timing ran on: CPU model, CPUs this process may use, torch's intra-op threads and the device."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu_model(),
        "cpus": cpus,
        "torch_threads": torch.get_num_threads(),
        "device": f"cuda ({torch.cuda.get_device_name()})" if cuda else "cpu",
    }


def describe_machine(record: dict[str, Any]) -> str:
    """``AMD EPYC, 2 CPUs, 2 torch threads, cpu``: a ``machine`` record in words."""
    return f"{record['cpu']}, {record['cpus']} CPUs, {record['torch_threads']} torch threads, {record['device']}"


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or None where the system has none (Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def is_busy(load: float | None, threads: int) -> bool | None:
    """Whether a 1-minute ``load`` means other work competed with a run of ``threads`` threads (None: unknown)."""
    return None if load is None else load > threads + BUSY_MARGIN


class LoadProbe:
    """The load average around a timed block: before, after, and the peak of its 1-minute figure, sampled
    every ``interval`` seconds in a background thread, so a load that came and went mid-run is seen."""

    def __init__(self, interval: float = SAMPLE_INTERVAL) -> None:
        self.interval = interval
        self.before: list[float] | None = None
        self.after: list[float] | None = None
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoadProbe:
        self.before = load_average()
        if self.before is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.after = load_average()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            load = load_average()
            if load is not None:
                self.samples.append(load[0])

    def record(self, threads: int | None = None) -> dict[str, Any]:
        """``before`` and ``after`` (1, 5 and 15-minute), ``peak`` (1-minute) and ``busy`` for a run of ``threads``."""
        threads = torch.get_num_threads() if threads is None else threads
        ones = [load[0] for load in (self.before, self.after) if load is not None] + self.samples
        peak = max(ones) if ones else None
        return {"before": self.before, "after": self.after, "peak": peak, "busy": is_busy(peak, threads)}
