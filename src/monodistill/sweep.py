"""Which students can share a teacher pass, and whether they fit in memory together.

With a large teacher and small students the teacher's forward is most of a step, so a sweep that
runs its students one after another pays for it once per student. Students that see the same
batches share it instead (``recipe.distill_students``): the teacher is held once and runs once per
micro-batch, and each student keeps its own run folder, optimizer, schedule, checkpoints, metrics
and random stream, ending with the weights it would have had alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from monodistill.config import DistillConfig, config_to_dict, flatten
from monodistill.errors import MonodistillError

MAY_DIFFER = ("student.", "loss.", "output_dir") + tuple(
    f"train.{name}"
    for name in (
        "learning_rate",
        "weight_decay",
        "warmup_ratio",
        "max_grad_norm",
        "log_interval",
        "eval_interval",
        "save_interval",
        "keep_checkpoints",
        "share_teacher",
    )
)
"""Settings in which students of one group may differ: shape, init, loss, optimisation, cadence.
Everything else (teacher, vocabulary, corpus and data settings, batch, accumulation, seed, length,
precision) decides the batches, masks and teacher outputs, and must be the same."""


def group_settings(config: DistillConfig) -> dict[str, str]:
    """The settings that must be equal for students to share a teacher pass."""
    return {
        key: repr(value) for key, value in flatten(config_to_dict(config)).items() if not key.startswith(MAY_DIFFER)
    }


def shared_teacher_groups(configs: list[DistillConfig]) -> list[list[int]]:
    """Indices of ``configs`` in groups that can share a teacher pass, in the order of their first student.

    A student with ``train.share_teacher=false`` is a group of its own.
    """
    groups: dict[Any, list[int]] = {}
    for number, config in enumerate(configs):
        key: Any = tuple(sorted(group_settings(config).items())) if config.train.share_teacher else number
        groups.setdefault(key, []).append(number)
    return list(groups.values())


def check_groupable(configs: list[DistillConfig]) -> None:
    """Refuse students that would not see the same batches, or that share an output folder."""
    names = [config.student.name or str(config.output_dir) for config in configs]
    if any(not config.output_dir for config in configs) or len({c.output_dir for c in configs}) < len(configs):
        raise MonodistillError(f"students {', '.join(names)} need one output folder each (output_dir)")
    first = group_settings(configs[0])
    for name, config in zip(names[1:], configs[1:], strict=True):
        settings = group_settings(config)
        differing = sorted(key for key in first.keys() | settings.keys() if first.get(key) != settings.get(key))
        if differing:
            raise MonodistillError(
                f"students {names[0]!r} and {name!r} cannot share a teacher pass: they differ in "
                f"{', '.join(differing)}; distil them apart (train.share_teacher=false)"
            )


def available_bytes(device: torch.device) -> int:
    """Free memory where the students will train: the GPU's, else the machine's."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_group_fits(names: list[str], students: Sequence[nn.Module], device: torch.device) -> None:
    """Refuse a group whose students' weights, gradients and AdamW moments would not fit, saying how to split it.

    The estimate leaves out activations; a tenth of the free memory is kept for them.
    """
    # Built on the CPU: there the weights already take their room; on a GPU they still have to be moved.
    per_weight = 3 if device.type == "cpu" else 4
    needs = [per_weight * sum(p.numel() * p.element_size() for p in student.parameters()) for student in students]
    budget = int(0.9 * available_bytes(device))
    if sum(needs) <= budget:
        return
    # First fit, largest first: groups that would each fit, distilled one after another.
    groups: list[list[int]] = []
    loads: list[int] = []
    for number in sorted(range(len(students)), key=lambda n: -needs[n]):
        for group, load in enumerate(loads):
            if load + needs[number] <= budget:
                groups[group].append(number)
                loads[group] += needs[number]
                break
        else:
            groups.append([number])
            loads.append(needs[number])
    split = " + ".join("[" + ", ".join(names[n] for n in sorted(group)) + "]" for group in groups)
    raise MonodistillError(
        f"the {len(students)} students sharing a teacher pass need about {sum(needs) / 1e9:,.2f} GB for weights, "
        f"gradients and AdamW moments ({', '.join(f'{n}: {b / 1e9:,.2f}' for n, b in zip(names, needs, strict=True))}) "
        f"but {device.type} has {budget / 1e9:,.2f} GB to spare; split the group, e.g. {split}: run the parts as "
        "separate experiments, or give the students of all but one part the override train.share_teacher=false "
        "(they then run alone, one after another)"
    )
