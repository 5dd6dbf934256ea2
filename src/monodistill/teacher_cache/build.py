"""Building a teacher cache: what it is keyed by, which shards a run needs, and the teacher's pass over them.

One process builds a cache at a time, under the cache's file lock; another process that wants the same
cache waits for the lock and then finds its shards built. Shards are built in order and each is entered
in the manifest once written whole (``store``), so a killed build continues from its first missing
shard, and draws there what it would have drawn (each shard's sample draws have their own seed).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.config import CacheConfig, DistillConfig
from monodistill.data.batches import BatchStream
from monodistill.data.blocks import Blocks, tokenizer_fingerprint, waiting_lock
from monodistill.data.masking import stream_seed
from monodistill.distill.logits import chunk_slices
from monodistill.distill.teacher_pass import TeacherPass
from monodistill.errors import MonodistillError
from monodistill.losses import Needs
from monodistill.progress import progress_bar
from monodistill.teacher_cache.store import (
    FORMAT,
    LOCK,
    Shard,
    clear_staging,
    read_manifest,
    shard_name,
    shard_problem,
    write_manifest,
    write_shard,
)
from monodistill.teacher_cache.summary import Summary, sample_summary, topk_summary, validation_summary

SETTING_NAMES = {
    "teacher": "the teacher (its config and weight files)",
    "tokenizer": "the student's tokenizer (vocabulary)",
    "vocabulary": "the trimmed vocabulary's ids in the teacher's",
    "corpus": "the blocks (the corpus's content, its tokenisation and the data.* settings that pack it)",
}
"""How a refusal names the fingerprints; every other setting is named as a config spells it."""


@dataclass(frozen=True)
class ShardPlan:
    """One shard to have: blocks ``start`` to ``stop`` of ``split``, masked as ``epoch`` masks them."""

    split: str
    epoch: int
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return shard_name(self.split, self.epoch, self.index)


def cache_settings(
    config: DistillConfig,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    vocab_ids: torch.Tensor | None,
    blocks: Blocks,
    objective: str,
) -> dict[str, str]:
    """Everything the cache's contents depend on, as text: a cache serves a run only where all of it is equal."""
    cache = config.cache
    settings = {
        "format": FORMAT,
        "teacher": teacher_fingerprint(teacher),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "vocabulary": _digest(vocab_ids.tolist()) if vocab_ids is not None else "full",
        "corpus": blocks.cache_path.name,
        "data.data_fraction": str(config.data.data_fraction),
        "objective": objective,
        "loss.temperature": str(config.loss.temperature),
        "cache.method": cache.method,
        "cache.precision": cache.precision,
        "cache.validation_k": str(cache.validation_k),
        "cache.shard_blocks": str(cache.shard_blocks),
    }
    if config.data.data_fraction < 1.0:
        settings["train.seed"] = str(config.train.seed)  # picks the training blocks kept
    if objective == "masked":
        settings["data.mlm_probability"] = str(config.data.mlm_probability)
    if cache.method == "sample":  # the draws follow the seed and how positions are batched
        settings |= {"cache.samples": str(cache.samples), "cache.seed": str(cache.seed)}
        settings["cache.batch_size"] = str(cache.batch_size)
    else:
        settings["cache.k"] = str(cache.k)
    return settings


def cache_key(settings: dict[str, str]) -> str:
    return _digest(settings)[:20]


def teacher_fingerprint(model: PreTrainedModel) -> str:
    """The teacher's identity, whatever dtype or device it is loaded in: a local folder's config and weight files
    (their names, sizes, and first and last MiB), or a Hub id and the commit it was loaded from."""
    source = str(model.config._name_or_path)
    folder = Path(source)
    if not folder.is_dir():
        return _digest([source, getattr(model.config, "_commit_hash", None)])
    parts: list[Any] = []
    for file in sorted(folder.iterdir()):
        if file.suffix not in (".json", ".safetensors", ".bin", ".model") or not file.is_file():
            continue
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(1 << 20)
            handle.seek(max(0, size - (1 << 20)))
            tail = handle.read()
        parts.append([file.name, size, hashlib.sha256(head + tail).hexdigest()])
    return _digest(parts)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def check_settings(folder: Path, manifest: dict[str, Any], settings: dict[str, str]) -> None:
    """Refuse, in one line naming the first setting that differs, a cache built for other settings."""
    built = manifest["settings"]
    for name in sorted(built.keys() | settings.keys()):
        if built.get(name) == settings.get(name):
            continue
        if name in SETTING_NAMES:
            what = f"{SETTING_NAMES[name]} differs"
        else:
            what = f"it was built with {name}={built.get(name)}, this run has {name}={settings.get(name)}"
        raise MonodistillError(
            f"teacher cache {folder} does not fit this run: {what}; point teacher_cache at another folder "
            "(or `auto`, one cache per setting) to build one that does"
        )


def cache_epochs(config: CacheConfig, objective: str, run_epochs: int) -> int:
    """The epochs of training shards a run needs: one for the causal objective, whose epochs score the same
    positions; for the masked one, each epoch's static masks, ``cache.epochs`` of them (refused when too few)."""
    if objective == "causal":
        return 1
    if config.epochs is not None and config.epochs < run_epochs:
        raise MonodistillError(
            f"cache.epochs={config.epochs} caches the masks of fewer epochs than the run takes ({run_epochs}); "
            f"raise it or leave it unset"
        )
    return config.epochs or run_epochs


def plan_shards(blocks: Blocks, shard_blocks: int, epochs: int) -> list[ShardPlan]:
    """The validation shards, then each epoch's training shards."""
    plans = []
    for split, count, split_epochs in (("validation", len(blocks.validation), 1), ("train", len(blocks.train), epochs)):
        for epoch in range(split_epochs):
            for index in range(math.ceil(count / shard_blocks)):
                start = index * shard_blocks
                plans.append(ShardPlan(split, epoch, index, start, min(count, start + shard_blocks)))
    return plans


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the cache's lock: one builder at a time; the others wait, then read what it built."""
    folder.mkdir(parents=True, exist_ok=True)
    with waiting_lock(folder / LOCK, f"teacher cache {folder}"):
        clear_staging(folder)  # staging folders live only while their builder holds the lock
        yield


def missing_shards(folder: Path, manifest: dict[str, Any], plans: list[ShardPlan]) -> list[ShardPlan]:
    """The planned shards not built, or damaged (said, and dropped from the manifest to be built again)."""
    missing = []
    for plan in plans:
        entry = manifest["shards"].get(plan.name)
        if entry is None:
            missing.append(plan)
            continue
        problem = shard_problem(folder, plan.name, entry["files"])
        if problem is not None:
            print(f"teacher cache {folder}: {problem}; building the shard again")
            del manifest["shards"][plan.name]
            missing.append(plan)
    return missing


def new_manifest(settings: dict[str, str], config: CacheConfig, *, vocab_size: int, teacher: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "settings": settings,
        "teacher": teacher,
        "method": config.method,
        "samples": config.samples if config.method == "sample" else None,
        "vocab_size": vocab_size,
        "shard_blocks": config.shard_blocks,
        "shards": {},
    }


def bytes_per_position(config: CacheConfig, vocab_size: int) -> float:
    """The stored bytes per training position: exact for ``topk``, at most for ``sample`` (as many entries as
    draws; fewer where the teacher is sure)."""
    entries = min(config.k, vocab_size) if config.method == "topk" else config.samples
    id_bytes = 2 if vocab_size <= 65_536 else 4
    prob_bytes = 2 if config.precision == "float16" else 4
    extra = (1 if config.samples <= 255 else 2) if config.method == "sample" else 0
    per_position = _length_dtype(entries)().nbytes + (4 if config.method == "topk" else 0)
    return entries * (id_bytes + prob_bytes + extra) + per_position


def build_shards(
    folder: Path,
    manifest: dict[str, Any],
    plans: list[ShardPlan],
    teacher: TeacherPass,
    stream: BatchStream,
    config: CacheConfig,
    temperature: float,
) -> None:
    """Run the teacher over the blocks of ``plans`` and write each shard, entering it in the manifest."""
    total = sum(plan.stop - plan.start for plan in plans)
    with progress_bar(total, "caching the teacher", "block") as bar:
        for plan in plans:
            shard = summarise_shard(plan, teacher, stream, config, temperature, bar.update)
            files = write_shard(folder, plan.name, shard)
            manifest["shards"][plan.name] = {
                "files": files,
                "blocks": plan.stop - plan.start,
                "positions": int(shard.lengths.shape[0]),
                "entries": int(shard.ids.shape[0]),
                "bytes": shard.nbytes,
            }
            write_manifest(folder, manifest)


def summarise_shard(
    plan: ShardPlan,
    teacher: TeacherPass,
    stream: BatchStream,
    config: CacheConfig,
    temperature: float,
    advance: Any = None,
) -> Shard:
    """The teacher's summaries at every scored position of the shard's blocks."""
    validation = plan.split == "validation"
    seed = stream_seed(config.seed, plan.index, plan.epoch + (1 << 20 if validation else 0))
    generator = torch.Generator(device=stream.device).manual_seed(seed)
    summaries: list[Summary] = []
    outside: list[torch.Tensor] = []
    block_positions: list[torch.Tensor] = []
    for start in range(plan.start, plan.stop, config.batch_size):
        batch = stream.blocks_of(plan.split, list(range(start, min(plan.stop, start + config.batch_size))), plan.epoch)
        output = teacher(batch, Needs(teacher_logits=True), outside_mass=validation)
        logits = output.scored_logits()
        for piece in chunk_slices(batch.step_targets, teacher.logit_chunk):
            chunk = logits.at(piece).float()
            if validation:
                summaries.append(validation_summary(F.softmax(chunk, -1), batch.targets[piece], config.validation_k))
                mass = output.outside_mass_at(piece, chunk)
                if mass is not None:
                    outside.append(mass.float())
                continue
            probs = F.log_softmax(chunk / temperature, dim=-1).exp()  # as the live KL reads them (``kl_divergence``)
            if config.method == "sample":
                summaries.append(sample_summary(probs, config.samples, generator))
            else:
                summaries.append(topk_summary(probs, config.k))
        block_positions.append(batch.positions.sum(1))
        if advance is not None:
            advance(len(batch.input_ids))
    return to_shard(summaries, torch.cat(block_positions), outside, config, teacher_vocab(teacher), validation)


def teacher_vocab(teacher: TeacherPass) -> int:
    return int(teacher.head.weight.shape[0])


def _length_dtype(longest: int) -> type[np.unsignedinteger[Any]]:
    return np.uint16 if longest <= 65_535 else np.uint32


def to_shard(
    summaries: list[Summary],
    block_positions: torch.Tensor,
    outside: list[torch.Tensor],
    config: CacheConfig,
    vocab_size: int,
    validation: bool,
) -> Shard:
    """The summaries of a shard's positions as its arrays, each in the smallest type that holds it.

    Validation's probabilities stay float32 whatever ``cache.precision`` says: its teacher loss reads each true
    token's own, which a sure teacher often puts below float16's smallest subnormal (6e-8), where it would read as
    0 (an infinite loss) or, clamped, as 6e-8 (a loss too low). The validation blocks are few: it costs little.
    """
    lengths = torch.cat([summary.lengths for summary in summaries]).cpu()
    probs = torch.cat([summary.probs for summary in summaries]).cpu()
    half = config.precision == "float16" and not validation
    precision = np.float16 if half else np.float32
    if half and config.method == "sample":  # a drawn token's probability is not 0
        probs = probs.clamp_min(float(np.finfo(np.float16).smallest_subnormal))
    counts = [summary.counts for summary in summaries if summary.counts is not None]
    rests = [summary.rest for summary in summaries if summary.rest is not None]
    longest = int(lengths.max()) if lengths.numel() else 0
    return Shard(
        block_positions=block_positions.cpu().numpy().astype(np.int32),
        lengths=lengths.numpy().astype(_length_dtype(longest)),
        ids=torch.cat([summary.ids for summary in summaries])
        .cpu()
        .numpy()
        .astype(np.uint16 if vocab_size <= 65_536 else np.int32),
        probs=probs.numpy().astype(precision),
        counts=torch.cat(counts).cpu().numpy().astype(np.uint8 if config.samples <= 255 else np.uint16)
        if counts
        else None,
        rest=torch.cat(rests).cpu().numpy().astype(np.float32) if rests else None,
        outside=torch.cat(outside).cpu().numpy().astype(np.float32) if outside else None,
    )


def ensure_shards(
    folder: Path,
    settings: dict[str, str],
    plans: list[ShardPlan],
    make_teacher: Callable[[], TeacherPass],
    stream: BatchStream,
    config: CacheConfig,
    temperature: float,
    manifest_fields: dict[str, Any],
) -> dict[str, Any]:
    """Under the cache's lock: check the cache against ``settings``, build (or rebuild) what ``plans`` lack, and
    return its manifest. The teacher is put on the device (``make_teacher``) only when something is to be built.

    Args:
        manifest_fields: A new manifest's ``vocab_size`` and ``teacher`` (its name).
    """
    with locked(folder):
        manifest = read_manifest(folder)
        if manifest is None:
            manifest = new_manifest(settings, config, **manifest_fields)
            write_manifest(folder, manifest)
        check_settings(folder, manifest, settings)
        missing = missing_shards(folder, manifest, plans)
        if missing:
            per = bytes_per_position(config, int(manifest["vocab_size"]))
            bound = "" if config.method == "topk" else "at most "
            print(
                f"caching the teacher's {config.method} summaries into {folder}: {len(missing)} of {len(plans)} "
                f"shards to build, {bound}{per:.0f} bytes per training position"
            )
            build_shards(folder, manifest, missing, make_teacher(), stream, config, temperature)
        return manifest
