"""``monodistill`` under torchrun with a fault injected on one rank, for the multi-process tests.

    torchrun --nproc_per_node 2 tests/distributed_faults.py distill ...

``FAULT=sigterm:RANK:STEP`` sends SIGTERM to that rank as it starts the step after ``STEP``;
``FAULT=nan:RANK:CALL`` makes that rank's ``CALL``-th loss NaN. With ``PARTS_DIR`` set, every rank
writes the loss parts of each of its steps to ``PARTS_DIR/rank-N.jsonl`` before ranks are averaged.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from monodistill import distill as distill_module
from monodistill.cli import main

RANK = int(os.environ.get("RANK", "0"))


def inject(fault: str) -> None:
    kind, rank, when = fault.split(":")
    if int(rank) != RANK:
        return
    if kind == "sigterm":
        train_step = distill_module.train_step_together

        def signalled(distillers: list[distill_module.Distiller]) -> Any:
            if distillers[0].step == int(when):
                os.kill(os.getpid(), signal.SIGTERM)
            return train_step(distillers)

        distill_module.train_step_together = signalled
    elif kind == "nan":
        real_loss = distill_module.distillation_loss
        calls = {"count": 0}

        def poisoned(*args: Any, **kwargs: Any) -> Any:
            parts = real_loss(*args, **kwargs)
            calls["count"] += 1
            if calls["count"] == int(when):
                parts["loss"] = parts["loss"] * float("nan")
            return parts

        distill_module.distillation_loss = poisoned  # type: ignore[assignment]


def record_parts(folder: Path) -> None:
    train_step = distill_module.train_step_together

    def recorded(distillers: list[distill_module.Distiller]) -> Any:
        results = train_step(distillers)
        with open(folder / f"rank-{RANK}.jsonl", "a") as handle:
            handle.write(json.dumps({"step": distillers[0].step + 1, **results[0]}) + "\n")
        return results

    distill_module.train_step_together = recorded


if __name__ == "__main__":
    if os.environ.get("PARTS_DIR"):
        record_parts(Path(os.environ["PARTS_DIR"]))
    if os.environ.get("FAULT"):
        inject(os.environ["FAULT"])
    sys.exit(main(sys.argv[1:]))
