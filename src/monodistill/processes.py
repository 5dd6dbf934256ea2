"""The distributed process state, created once and shared with Accelerate.

Preparation that runs before the ``Accelerator`` exists (vocabulary trimming, corpus packing) needs
to know the ranks already, to run on the main process first. ``PartialState`` is a singleton: the
first construction decides the backend for the whole process, so it must be made as the
``Accelerator`` would make it.
"""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state() -> PartialState:
    """This process's rank and world: one process, or one of several under torchrun/accelerate launch.

    Without CUDA, a multi-process launch runs on CPU with gloo; Accelerate only picks that backend
    when asked for the CPU (``ACCELERATE_USE_CPU``, which ``accelerate launch --cpu`` sets), so it is
    asked here too, as the ``Accelerator`` would be.
    """
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
    return PartialState(cpu=cpu)
