"""The distributed process state, created once and shared with Accelerate.

Preparation that runs before the ``Accelerator`` exists (vocabulary trimming, corpus packing) needs
to know the ranks already, to run on the main process first. ``PartialState`` is a singleton: the
first construction decides the backend for the whole process, so it must be made as the
``Accelerator`` would make it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

PREPARATION_TIMEOUT = timedelta(hours=6)
"""How long ranks may wait for each other (in the longest case, for corpus preparation on the main rank)."""


def process_state() -> PartialState:
    """This process's rank and world: one process, or one of several under torchrun/accelerate launch.

    Without CUDA, a multi-process launch runs on CPU with gloo; Accelerate only picks that backend
    when asked for the CPU (``ACCELERATE_USE_CPU``, which ``accelerate launch --cpu`` sets), so it is
    asked here too, as the ``Accelerator`` would be.
    """
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
    # While the main rank packs an OSCAR-size corpus the others wait in a barrier: far longer than
    # the process group's default timeout (10 minutes with NCCL), so the group is given hours.
    return PartialState(cpu=cpu, timeout=PREPARATION_TIMEOUT)
