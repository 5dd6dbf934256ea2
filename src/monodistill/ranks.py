"""The processes of a run, and the few collectives that every rank takes together.

A run is one process, or one of several under torchrun / accelerate launch. ``PartialState`` is a
singleton: the first call of ``process_state`` decides the backend and the collective timeout for
the whole process, so it is made as the ``Accelerator`` would make it.

The timeout bounds how long a rank waits for the others in any collective (the gradient all-reduce,
a checkpoint barrier): a rank that wedges fails the job after it, instead of holding the others for
hours. Work that one rank may do for much longer (packing an OSCAR-size corpus, trimming the
vocabulary) is never waited for in a collective: the ranks wait on the file lock of what is being
built (``data.blocks``, ``recipe.resolve_vocabulary``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

DEFAULT_TIMEOUT_MINUTES = 10.0
"""NCCL's own default: long enough for a checkpoint save on a slow disk, short enough to notice a hang."""


def process_state(timeout_minutes: float | None = None) -> PartialState:
    """This process's rank and world: one process, or one of several under torchrun/accelerate launch.

    Args:
        timeout_minutes: The collective timeout, used by the first call in a process (later calls
            return the state the first one made). ``None``: ``DEFAULT_TIMEOUT_MINUTES``.

    Without CUDA, a multi-process launch runs on CPU with gloo; Accelerate only picks that backend
    when asked for the CPU (``ACCELERATE_USE_CPU``, which ``accelerate launch --cpu`` sets), so it is
    asked here too, as the ``Accelerator`` would be.
    """
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
    minutes = DEFAULT_TIMEOUT_MINUTES if timeout_minutes is None else timeout_minutes
    return PartialState(cpu=cpu, timeout=timedelta(minutes=minutes))


@contextlib.contextmanager
def main_rank_output() -> Iterator[None]:
    """What the block prints to stdout (every line meant for the user) from the main rank only.

    Under torchrun every rank runs the whole command: without this, each line would appear once per
    rank. The other ranks' stdout goes nowhere for the block; stderr stays, so each rank's error still
    says what happened to it. The rank is read from the launcher's environment (``RANK``), as the process
    group does not exist yet when a command starts.
    """
    if os.environ.get("RANK", "0") == "0":
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _reduce(values: list[float], operation: str = "sum") -> list[float]:
    state = process_state()
    if state.num_processes == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=state.device)
    torch.distributed.all_reduce(
        tensor, op=torch.distributed.ReduceOp.SUM if operation == "sum" else torch.distributed.ReduceOp.MAX
    )
    return tensor.tolist()


def sum_over_ranks(values: list[float]) -> list[float]:
    """Each value summed over every rank (one collective for the whole list)."""
    return _reduce(values)


def mean_over_ranks(values: list[float]) -> list[float]:
    """Each value averaged over every rank (one collective for the whole list)."""
    processes = process_state().num_processes
    return [total / processes for total in _reduce(values)]


def ranks_where(flag: bool) -> list[int]:
    """The ranks on which ``flag`` holds; every rank gets the same answer."""
    state = process_state()
    flags = [0.0] * state.num_processes
    flags[state.process_index] = float(flag)
    return [rank for rank, value in enumerate(_reduce(flags)) if value > 0]


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank; every rank gets the same answer."""
    return _reduce([float(flag)], "max")[0] > 0


def job_id() -> int:
    """A number shared by every rank of this job and unlike any other job's (the main rank's pid)."""
    state = process_state()
    if state.num_processes == 1:
        return os.getpid()
    ids = [os.getpid()]
    torch.distributed.broadcast_object_list(ids, src=0)
    return int(ids[0])
