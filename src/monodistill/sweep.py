"""Sweeps: several students distilled together, with one teacher forward per batch for all of them.

With a large teacher and small students the teacher's forward is most of a step, so a sweep that
runs its students one after another pays for it once per student. Students that see the same
batches (``shared_teacher_groups``) are distilled in one process instead (``run_distillation_group``):
the teacher is held once and runs once per micro-batch, and each student keeps its own run folder,
optimizer, schedule, checkpoints, metrics and random stream, ending with the weights it would have
had alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.card import build_model_card
from monodistill.config import DistillConfig, config_to_dict, save_config
from monodistill.data.blocks import build_blocks, tokenizer_fingerprint
from monodistill.data.corpus import corpus_digest
from monodistill.distill import capture_rng, fit_together
from monodistill.errors import MonodistillError
from monodistill.processes import process_state
from monodistill.recipe import (
    _check_compatible,
    _check_same_data,
    _distill,
    _float32_weights,
    _is_done,
    _prepare_run_folder,
    build_distiller,
    resolve_vocabulary,
    run_distillation,
    save_student,
)
from monodistill.student import build_student, resolve_shape
from monodistill.teacher import load_teacher, parameter_counts

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
    return {key: value for key, value in _flatten(config_to_dict(config)).items() if not key.startswith(MAY_DIFFER)}


def shared_teacher_groups(configs: list[DistillConfig]) -> list[list[int]]:
    """Indices of ``configs`` in groups that can share a teacher pass, in the order of their first student.

    A student with ``train.share_teacher=false`` is a group of its own.
    """
    groups: dict[Any, list[int]] = {}
    for number, config in enumerate(configs):
        key: Any = tuple(sorted(group_settings(config).items())) if config.train.share_teacher else number
        groups.setdefault(key, []).append(number)
    return list(groups.values())


def run_distillation_group(configs: list[DistillConfig], resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Distil compatible students with one teacher pass per batch, each into its own run folder.

    Each folder is prepared, resumed and finished exactly as ``run_distillation`` does for one
    student; finished students are not redone. One student is simply ``run_distillation``.

    Returns:
        The folders of the saved students, in the order of ``configs``.

    Raises:
        MonodistillError: when the students cannot share batches, under several processes, when the
            group does not fit in memory, or after training when a student stopped on a non-finite
            loss (the others are saved first).
    """
    if len(configs) == 1:
        return [run_distillation(configs[0], resume=resume, overwrite=overwrite)]
    _check_groupable(configs)
    run_dirs = [Path(config.output_dir or "") for config in configs]
    with ExitStack() as stack:
        for run_dir in run_dirs:
            stack.enter_context(runfolder.claim(run_dir))
        latests = [
            _prepare_run_folder(config, run_dir, resume, overwrite)
            for config, run_dir in zip(configs, run_dirs, strict=True)
        ]
        results: dict[int, Path] = {}
        pending = []
        for number, (config, run_dir, latest) in enumerate(zip(configs, run_dirs, latests, strict=True)):
            if _is_done(config, run_dir, latest):
                results[number] = run_dir / ckpt.STUDENT_DIR
                print(f"{run_dir} is already complete; the student is in {results[number]}")
            else:
                pending.append(number)
        if len(pending) == 1:
            number = pending[0]
            results[number] = _distill(configs[number], run_dirs[number], latests[number])
        elif pending:
            folders = _distill_group(
                [configs[n] for n in pending], [run_dirs[n] for n in pending], [latests[n] for n in pending]
            )
            results.update(zip(pending, folders, strict=True))
        return [results[number] for number in range(len(configs))]


def _check_groupable(configs: list[DistillConfig]) -> None:
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
    if process_state().num_processes > 1:
        raise MonodistillError(
            "students sharing a teacher pass are distilled in one process; launch the sweep without "
            "torchrun/accelerate launch, or set train.share_teacher=false to distil them one after another"
        )


def _distill_group(configs: list[DistillConfig], run_dirs: list[Path], latests: list[Path | None]) -> list[Path]:
    lead = configs[0]
    if not lead.data.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    names = [config.student.name or run_dir.name for config, run_dir in zip(configs, run_dirs, strict=True)]
    shapes = [resolve_shape(config.student) for config in configs]
    set_seed(lead.train.seed)

    teacher, teacher_tokenizer = load_teacher(lead.teacher)
    for name, config, shape in zip(names, configs, shapes, strict=True):
        try:
            _check_compatible(config, teacher, shape)
        except MonodistillError as error:
            raise MonodistillError(f"student {name!r}: {error}") from None
    vocabularies = [
        resolve_vocabulary(config, teacher_tokenizer, run_dir)
        for config, run_dir in zip(configs, run_dirs, strict=True)
    ]
    tokenizer, vocab_ids = vocabularies[0]
    if len({tokenizer_fingerprint(other) for other, _ in vocabularies}) > 1:
        raise MonodistillError(f"students {', '.join(names)} have different vocabularies; distil them apart")
    blocks = build_blocks(lead.data, tokenizer, lead.train.seed)
    fingerprints = {"corpus": corpus_digest(lead.data), "tokenizer": tokenizer_fingerprint(tokenizer)}
    for config, latest in zip(configs, latests, strict=True):
        if latest is not None:
            _check_same_data(config, latest, fingerprints)

    # Each student starts from the random state it would have alone: the one after the shared
    # preparation, then its own build (which seeds its initialisation).
    device = process_state().device
    shared_state = capture_rng(device)
    students, streams = [], []
    for config in configs:
        torch.set_rng_state(shared_state["cpu"])
        if "cuda" in shared_state:
            torch.cuda.set_rng_state(shared_state["cuda"])
        students.append(
            build_student(config.student, _float32_weights(config, teacher), vocab_ids, seed=config.train.seed)
        )
        streams.append(capture_rng(device))
    check_group_fits(names, students, device)

    distillers = []
    for config, run_dir, latest, student, stream in zip(configs, run_dirs, latests, students, streams, strict=True):
        distiller = build_distiller(
            config, run_dir, teacher, student, tokenizer, blocks, vocab_ids, fingerprints, latest
        )
        distiller.rng_state = stream
        save_config(config, run_dir / "config.yaml")
        ckpt.write_environment(run_dir, {"blocks_cache": str(blocks.cache_path), "train_blocks": len(blocks.train)})
        distillers.append(distiller)
    print(
        f"distilling {len(configs)} students ({', '.join(names)}) with one teacher pass of "
        f"{lead.teacher.name_or_path} on {len(blocks.train):,} blocks of {lead.data.max_seq_length} tokens "
        f"for {distillers[0].total_steps:,} steps"
    )
    saved: list[Path] = []
    failures: list[str] = []
    try:
        outcomes = fit_together(distillers, latests)
        for name, config, run_dir, student, distiller, outcome in zip(
            names, configs, run_dirs, students, distillers, outcomes, strict=True
        ):
            if isinstance(outcome, MonodistillError):
                failures.append(f"{name}: {outcome}")
                continue
            counts = parameter_counts(student), parameter_counts(teacher)
            card = build_model_card(config, outcome, *counts, len(blocks.train))
            save_student(run_dir / ckpt.STUDENT_DIR, distiller.unwrapped_student(), tokenizer, card)
            saved.append(run_dir / ckpt.STUDENT_DIR)
    finally:
        for distiller in distillers:
            for tracker in distiller.accelerator.trackers:
                tracker.finish()
    if failures:
        kept = f"; the others were saved: {', '.join(map(str, saved))}" if saved else ""
        raise MonodistillError(f"{len(failures)} of {len(configs)} students stopped: " + " | ".join(failures) + kept)
    return saved


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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> {"section.field": repr(value)}, lists and None included."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = repr(value)
    return flat
