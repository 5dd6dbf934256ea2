"""Pay for the teacher once: a sparse summary of its outputs, cached on disk, read by every run after.

With a large teacher its forward pass is most of a distillation step, paid again every epoch, by every
student that cannot share a group, and by every re-run. A teacher cache runs it once over the packed
blocks and stores, at each scored position (the masked ones of each epoch's static masks for the masked
objective; every next token for the causal one), a sparse summary of its distribution over the student's
vocabulary (``cache.method``: ``sample``, unbiased, or ``topk``; ``summary``), in memory-mapped shards
with a manifest of checksums and the fingerprints of everything the summaries depend on (``store``,
``build``). Students then distil from it (``reader.CachedTeacher``) with no teacher on the device.

- ``open_teacher_cache``: the cache a run's ``teacher_cache`` names, built or completed first where needed.
- ``check_cacheable``: refuses, before anything is built, a loss the cache cannot serve.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import DistillConfig
from monodistill.data.batches import BatchStream
from monodistill.data.blocks import Blocks, default_cache_dir
from monodistill.distill.teacher_pass import TeacherPass
from monodistill.errors import MonodistillError
from monodistill.losses import ModelSizes, build_terms
from monodistill.teacher_cache.build import cache_epochs, cache_key, cache_settings, ensure_shards, plan_shards
from monodistill.teacher_cache.reader import CachedTeacher, TeacherCache
from monodistill.teacher_cache.store import is_cache

AUTO = "auto"
"""``teacher_cache: auto``: one cache per setting under ``data.cache_dir`` (``teacher/KEY``)."""

__all__ = ["AUTO", "CachedTeacher", "TeacherCache", "cache_folder", "check_cacheable", "open_teacher_cache"]


def check_cacheable(config: DistillConfig, sizes: ModelSizes, teacher_width: int, tokens: int) -> None:
    """Refuse a student whose loss reads what a cache does not hold (the teacher's hidden states or attention, or
    a divergence that needs its whole distribution), saying what caching those would take."""
    for term in build_terms(config.loss, sizes):
        if term.reads_cache or not term.needs.teacher:
            continue
        needs = term.needs
        if needs.teacher_hidden or needs.teacher_projections:
            widths = len(needs.teacher_hidden) + 3 * len(needs.teacher_projections)
            size = tokens * widths * teacher_width * 2  # float16
            raise MonodistillError(
                f"loss term {term.name!r} reads the teacher's hidden states or attention projections ({widths} vectors "
                f"of {teacher_width} per token: {size / 2**30:,.1f} GiB in float16 over these {tokens:,} tokens, "
                "per epoch), which a teacher cache does not hold; distil it from the live teacher (leave "
                "teacher_cache unset)"
            )
        raise MonodistillError(
            f"loss.logit_loss={config.loss.logit_loss} needs the teacher's whole distribution (or its logits) at every "
            "position, which a sparse teacher cache does not hold; use logit_loss=kl with the cache, or the live "
            "teacher (leave teacher_cache unset)"
        )


def cache_folder(config: DistillConfig, settings: dict[str, str]) -> Path:
    """The folder ``teacher_cache`` names: itself, or under ``auto`` the one for these settings."""
    assert config.teacher_cache is not None
    if config.teacher_cache == AUTO:
        root = Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()
        return root / "teacher" / cache_key(settings)
    folder = Path(config.teacher_cache)
    if folder.exists() and not folder.is_dir():
        raise MonodistillError(f"teacher_cache {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_cache(folder):
        raise MonodistillError(
            f"teacher_cache {folder} holds other files and no teacher cache (manifest.json); give an empty or new "
            "folder, or `auto`"
        )
    return folder


def open_teacher_cache(
    config: DistillConfig,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    vocab_ids: torch.Tensor | None,
    blocks: Blocks,
    stream: BatchStream,
    total_steps: int,
    objective: str,
) -> TeacherCache:
    """The teacher cache ``config.teacher_cache`` names, checked against this run, and completed (built, or its
    damaged shards rebuilt) with ``teacher`` where it lacks what the run reads.

    Raises:
        MonodistillError: for a cache built with other settings (naming the first), or one that caches fewer
            epochs of masks than the run takes.
    """
    settings = cache_settings(config, teacher, tokenizer, vocab_ids, blocks, objective)
    folder = cache_folder(config, settings)
    epochs = cache_epochs(config.cache, objective, math.ceil(total_steps / stream.steps_per_epoch))
    plans = plan_shards(blocks, config.cache.shard_blocks, epochs)
    moved = []

    def make_teacher() -> TeacherPass:
        moved.append(True)
        return TeacherPass(teacher, vocab_ids, stream.device, logit_chunk=config.train.logit_chunk)

    vocab_size = len(vocab_ids) if vocab_ids is not None else int(teacher.config.vocab_size)
    fields = {"vocab_size": vocab_size, "teacher": config.teacher.name_or_path}
    manifest = ensure_shards(
        folder, settings, plans, make_teacher, stream, config.cache, config.loss.temperature, fields
    )
    cache = TeacherCache(folder, manifest)
    built = [manifest["shards"][plan.name] for plan in plans if plan.split == "train"]
    positions = sum(entry["positions"] for entry in built)
    size = sum(entry["bytes"] for entry in built)
    print(
        f"teacher cache {folder}: {config.cache.method}, {size / max(positions, 1):.1f} bytes per position over "
        f"{positions:,} training positions ({size / 2**20:,.1f} MiB)"
    )
    if moved and stream.device.type != "cpu":
        nn.Module.to(teacher, torch.device("cpu"))  # its memory is no part of the steps that follow
    return cache
