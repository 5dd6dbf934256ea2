"""``monodistill`` under torchrun with a fault injected on one rank, for the multi-process tests.

    torchrun --nproc_per_node 2 tests/distributed_faults.py distill ...

``FAULT=KIND:RANK:WHEN`` on that rank:
- ``sigterm``: sends SIGTERM as it starts the step after ``WHEN``;
- ``nan``: makes its ``WHEN``-th loss NaN;
- ``slowprep``: sleeps ``WHEN`` seconds before building the blocks cache (a slow corpus preparation);
- ``wedge``: sleeps 120 seconds as it starts the step after ``WHEN`` (a rank that hangs in training).

With ``PARTS_DIR`` set, every rank writes its own share of each step's loss parts (before they are
summed over ranks) to ``PARTS_DIR/rank-N.jsonl``. With ``WEIGHTS_DIR`` set, every rank writes its
student's final weights to ``WEIGHTS_DIR/rank-N.safetensors``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from monodistill import losses, recipe
from monodistill.cli import main
from monodistill.data import blocks
from monodistill.data.batches import BatchStream
from monodistill.distill import StudentRun

RANK = int(os.environ.get("RANK", "0"))


def at_step(when: int, action: Any) -> None:
    """Call ``action()`` as this rank starts the step after ``when`` steps."""
    original = BatchStream.step

    def step(self: BatchStream, index: int) -> Any:
        if index == when:
            action()
        return original(self, index)

    BatchStream.step = step  # type: ignore[method-assign]


def inject(fault: str) -> None:
    kind, rank, when = fault.split(":")
    if int(rank) != RANK:
        return
    if kind == "sigterm":
        at_step(int(when), lambda: os.kill(os.getpid(), signal.SIGTERM))
    elif kind == "wedge":
        at_step(int(when), lambda: time.sleep(120))
    elif kind == "slowprep":
        build = blocks._build_entry

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(float(when))
            return build(*args, **kwargs)

        blocks._build_entry = slow  # type: ignore[assignment]
    elif kind == "nan":
        real_sum = losses.MaskedLM.sum  # every objective computes the MLM term, once per micro-batch
        calls = {"count": 0}

        def poisoned(self: losses.MaskedLM, *args: Any, **kwargs: Any) -> Any:
            value = real_sum(self, *args, **kwargs)
            calls["count"] += 1
            return value * float("nan") if calls["count"] == int(when) else value

        losses.MaskedLM.sum = poisoned  # type: ignore[method-assign]


def record_parts(folder: Path) -> None:
    optimizer_step = StudentRun.optimizer_step

    def recorded(self: StudentRun) -> Any:
        mine = dict(self._parts)
        with open(folder / f"rank-{RANK}.jsonl", "a") as handle:
            handle.write(json.dumps({"step": self.step + 1, **mine}) + "\n")
        return optimizer_step(self)

    StudentRun.optimizer_step = recorded  # type: ignore[method-assign]


def record_weights(folder: Path) -> None:
    fit = recipe.fit

    def recorded(teacher: Any, stream: Any, runs: list[StudentRun]) -> None:
        fit(teacher, stream, runs)
        folder.mkdir(parents=True, exist_ok=True)
        state = runs[0].unwrapped_student().state_dict()
        save_file(
            {name: tensor.detach().clone() for name, tensor in state.items()}, folder / f"rank-{RANK}.safetensors"
        )

    recipe.fit = recorded  # type: ignore[assignment]


if __name__ == "__main__":
    if os.environ.get("PARTS_DIR"):
        record_parts(Path(os.environ["PARTS_DIR"]))
    if os.environ.get("WEIGHTS_DIR"):
        record_weights(Path(os.environ["WEIGHTS_DIR"]))
    if os.environ.get("FAULT"):
        inject(os.environ["FAULT"])
    sys.exit(main(sys.argv[1:]))
