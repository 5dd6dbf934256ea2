"""Reading a teacher cache in place of the teacher: the summaries at a batch's scored positions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from monodistill.data.batches import MaskedBatch
from monodistill.distill.teacher_pass import TeacherOutputs
from monodistill.errors import MonodistillError
from monodistill.losses import Needs, SparseTargets
from monodistill.teacher_cache.store import ShardReader, shard_name


class TeacherCache:
    """A built cache's shards, opened as they are first read."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.vocab_size = int(manifest["vocab_size"])
        self.shard_blocks = int(manifest["shard_blocks"])
        self.samples = int(manifest.get("samples") or 1)
        self.causal = manifest["settings"]["objective"] == "causal"
        self.trimmed = manifest["settings"]["vocabulary"] != "full"
        self._shards: dict[str, ShardReader] = {}

    def shard(self, split: str, epoch: int, index: int) -> ShardReader:
        name = shard_name(split, epoch, index)
        if name not in self._shards:
            if name not in self.manifest["shards"]:
                raise MonodistillError(f"teacher cache {self.folder} has no shard {name}: build it (cache-teacher)")
            self._shards[name] = ShardReader(self.folder / name)
        return self._shards[name]

    def read(self, batch: MaskedBatch) -> tuple[SparseTargets, torch.Tensor | None]:
        """The summaries at ``batch``'s scored positions, in its order, and the validation's outside mass.

        Raises:
            MonodistillError: where a block's scored positions are not those the cache holds (masks drawn otherwise).
        """
        assert batch.block_ids is not None, "a batch read from a teacher cache names its blocks"
        epoch = 0 if self.causal or batch.split == "validation" else batch.epoch
        parts = []
        for row, block in enumerate(batch.block_ids.tolist()):
            index, local = divmod(block, self.shard_blocks)
            part = self.shard(batch.split, epoch, index).block(local)
            scored = int(batch.positions[row].sum())
            if part["lengths"].shape[0] != scored:
                raise MonodistillError(
                    f"teacher cache {self.folder} holds {part['lengths'].shape[0]} scored positions for {batch.split} "
                    f"block {block} of epoch {epoch}, this run scores {scored}: its masks are not the cache's"
                )
            parts.append(part)
        read = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
        probs = read["probs"].float()
        weights = read["counts"].float() / self.samples if "counts" in read else probs
        sparse = SparseTargets(read["lengths"].long(), read["ids"].long(), probs, weights, read.get("rest"))
        return sparse, read.get("outside")


class CachedTeacher:
    """The teacher pass read from a cache: what the loop and validation ask of a ``TeacherPass``, without it."""

    def __init__(self, cache: TeacherCache, device: torch.device) -> None:
        self.cache = cache
        self.device = device

    @property
    def trimmed(self) -> bool:
        return self.cache.trimmed

    def __call__(self, batch: MaskedBatch, needs: Needs, outside_mass: bool = False) -> TeacherOutputs:
        if needs.teacher_hidden or needs.teacher_projections:
            raise MonodistillError("a teacher cache holds the teacher's distributions only, not its hidden states")
        sparse, outside = self.cache.read(batch)
        mass = outside.to(self.device) if outside_mass and outside is not None else None
        return TeacherOutputs(
            torch.zeros(0), sparse=sparse.to(self.device), outside_mass=mass, vocab_size=self.cache.vocab_size
        )
