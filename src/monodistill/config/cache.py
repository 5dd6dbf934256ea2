"""The cache section: how ``cache-teacher`` (and a run's ``teacher_cache``) summarises the teacher's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from monodistill.config.base import require as _require

CACHE_METHODS = ("sample", "topk")
CACHE_PRECISIONS = ("float16", "float32")


@dataclass
class CacheConfig:
    """A sparse summary of the teacher's distribution at every scored position, paid for once.

    ``sample`` (random-sampling KD, Anshumann et al. 2025): ``samples`` tokens drawn from the teacher's distribution at
    the loss's temperature, kept as distinct tokens with their counts: the counts over ``samples`` are an unbiased
    estimate of the distribution, and so the cross-entropy to them of the KL's gradient. ``topk``: the ``k`` most
    probable tokens and the mass of the rest, a biased summary (the student never learns the tail's shape) that is
    exact when ``k`` is the whole vocabulary.
    """

    section: ClassVar[str] = "cache"

    method: str = "sample"
    """sample (unbiased: drawn tokens with counts) or topk (the k most probable tokens and the rest's mass)."""
    samples: int = 64
    """sample: tokens drawn per position (with replacement; the distinct ones are stored, with counts)."""
    k: int = 64
    """topk: tokens kept per position (at most the vocabulary)."""
    validation_k: int = 1024
    """The validation blocks' summary: the k most probable tokens at T = 1, the rest spread evenly, and each target's
    own probability exactly (what validation's KL, agreement and teacher loss read)."""
    precision: str = "float16"
    """The stored probabilities: float16 (2 bytes) or float32 (4; what an exact comparison with the live teacher
    needs)."""
    epochs: int | None = None
    """Masked objective: the epochs of static masks to cache (each epoch masks every block anew); unset: as many as
    the run takes. The causal objective scores every position and caches one."""
    seed: int = 0
    """Seeds the sample method's draws (each shard's own stream: a resumed build draws what it would have)."""
    shard_blocks: int = 1024
    """Blocks per shard: the unit of building, checking and resuming."""
    batch_size: int = 32
    """Blocks per teacher forward while building."""

    def __post_init__(self) -> None:
        _require(
            self.method in CACHE_METHODS,
            f"cache.method must be one of {CACHE_METHODS}, got {self.method!r}",
            "cache.method",
        )
        _require(
            self.precision in CACHE_PRECISIONS,
            f"cache.precision must be one of {CACHE_PRECISIONS}, got {self.precision!r}",
            "cache.precision",
        )
        for name in ("samples", "k", "validation_k", "shard_blocks", "batch_size"):
            value = getattr(self, name)
            _require(value >= 1, f"cache.{name} must be >= 1, got {value}", f"cache.{name}")
        _require(self.samples <= 65_535, f"cache.samples must be <= 65535, got {self.samples}", "cache.samples")
        _require(
            self.epochs is None or self.epochs >= 1, f"cache.epochs must be >= 1, got {self.epochs}", "cache.epochs"
        )
