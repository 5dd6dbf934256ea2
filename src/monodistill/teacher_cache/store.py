"""A teacher cache on disk: shards of memory-mapped arrays, and the manifest that vouches for them.

A cache folder holds ``manifest.json`` and one folder per shard, named by split, epoch and index
(``train-e000-00003``): the summaries of ``shard_blocks`` consecutive blocks, in block order and, within
a block, position order. A shard is a few ``.npy`` files, read memory-mapped:

- ``block_positions`` (b,) int32: each block's scored positions;
- ``lengths`` (P,) uint16: each position's entries;
- ``ids`` (E,) uint16 (a vocabulary of at most 65,536 tokens) or int32: the entries' tokens;
- ``probs`` (E,) float16 or float32 (``cache.precision``; float32 in validation shards): the teacher's probability
  of each (at the loss's temperature);
- ``counts`` (E,) uint8 or uint16 (``sample``): how often each was drawn;
- ``rest`` (P,) float32 (``topk``, validation): the teacher's probability of every token without an entry;
- ``outside`` (P,) float32 (validation, trimmed vocabulary): its probability outside the vocabulary.

A shard is written whole into a staging folder and renamed into place; only then is it entered in the
manifest, with each file's SHA-256, and the manifest replaced atomically. A shard the manifest does not
list (a build killed while writing it) or whose checksums fail (a damaged disk) is built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monodistill.checkpoint import atomic_write_text

FORMAT = "teacher-cache-v2"
"""v2: validation shards hold float32 probabilities (v1 held ``cache.precision``'s, biased where they are tiny)."""
MANIFEST = "manifest.json"
LOCK = "cache.lock"
STAGING = ".tmp-"
ARRAYS = ("block_positions", "lengths", "ids", "probs", "counts", "rest", "outside")


def shard_name(split: str, epoch: int, index: int) -> str:
    """The folder of shard ``index`` of ``split``'s epoch ``epoch``."""
    return f"{split}-e{epoch:03d}-{index:05d}"


@dataclass
class Shard:
    """One shard's arrays (numpy, in memory or memory-mapped)."""

    block_positions: np.ndarray
    lengths: np.ndarray
    ids: np.ndarray
    probs: np.ndarray
    counts: np.ndarray | None = None
    rest: np.ndarray | None = None
    outside: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: value for name in ARRAYS if (value := getattr(self, name)) is not None}

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays().values())


def is_cache(folder: Path) -> bool:
    """Whether ``folder`` holds a teacher cache (its manifest)."""
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The cache's manifest, or None where there is none yet."""
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_shard(folder: Path, name: str, shard: Shard) -> dict[str, str]:
    """Write ``shard`` into ``folder/name`` atomically (staged, synced, renamed); returns each file's SHA-256."""
    staging = folder / f"{STAGING}{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        digests = {}
        for array_name, array in shard.arrays().items():
            path = staging / f"{array_name}.npy"
            with open(path, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array))
                handle.flush()
                os.fsync(handle.fileno())
            digests[path.name] = file_digest(path)
        final = folder / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return digests
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def shard_problem(folder: Path, name: str, digests: dict[str, str]) -> str | None:
    """What is wrong with shard ``name`` against its manifest entry's checksums; None when it is whole."""
    for file, digest in digests.items():
        path = folder / name / file
        if not path.is_file():
            return f"{name}/{file} is missing"
        if file_digest(path) != digest:
            return f"{name}/{file} does not match its checksum"
    return None


def clear_staging(folder: Path) -> None:
    """Remove staging folders left by a killed builder (called under the cache lock)."""
    for leftover in folder.glob(f"{STAGING}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


class ShardReader:
    """One shard, memory-mapped, with the offsets that find a block's positions and a position's entries."""

    def __init__(self, path: Path) -> None:
        arrays = {file.stem: np.load(file, mmap_mode="r") for file in path.glob("*.npy")}
        self.shard = Shard(**arrays)
        self.block_offsets = np.concatenate([[0], np.cumsum(self.shard.block_positions, dtype=np.int64)])
        self.entry_offsets = np.concatenate([[0], np.cumsum(self.shard.lengths, dtype=np.int64)])

    def block(self, local: int) -> dict[str, torch.Tensor]:
        """Block ``local`` of the shard: its positions' ``lengths``, ``rest`` and ``outside`` and their entries'
        ``ids``, ``probs`` and ``counts`` (those the shard has), as tensors."""
        first, last = int(self.block_offsets[local]), int(self.block_offsets[local + 1])
        start, stop = int(self.entry_offsets[first]), int(self.entry_offsets[last])
        shard = self.shard
        read = {"lengths": shard.lengths[first:last], "ids": shard.ids[start:stop], "probs": shard.probs[start:stop]}
        for name, array, piece in (
            ("counts", shard.counts, slice(start, stop)),
            ("rest", shard.rest, slice(first, last)),
            ("outside", shard.outside, slice(first, last)),
        ):
            if array is not None:
                read[name] = array[piece]
        return {name: torch.from_numpy(np.array(values)) for name, values in read.items()}
