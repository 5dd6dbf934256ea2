"""``monodistill cache-teacher``: build a teacher cache ahead of the runs that read it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from monodistill.config import DistillConfig
from monodistill.data.batches import BatchStream, Masking, NextToken
from monodistill.data.blocks import build_blocks
from monodistill.errors import MonodistillError
from monodistill.families import family_of
from monodistill.teacher import load_teacher
from monodistill.teacher_cache import open_teacher_cache
from monodistill.teacher_cache.build import cache_epochs


def cache_teacher(config: DistillConfig) -> Path:
    """Run the teacher once over the corpus's blocks into the cache folder ``config.output_dir`` (completing one
    begun there), for the runs with these settings to read (``teacher_cache: OUTPUT``); returns the folder.

    Raises:
        MonodistillError: for a missing corpus or output, a vocabulary to trim that was not built, or a folder
            that holds another cache.
    """
    if not config.output_dir:
        raise MonodistillError("cache-teacher needs --output DIR")
    if not config.data.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    if config.vocab.active and config.vocab.path is None:
        raise MonodistillError(
            "cache-teacher reads a trimmed vocabulary, it does not build one: build it with `monodistill vocab` and "
            "pass --vocab DIR"
        )
    config = replace(config, teacher_cache=config.output_dir)
    teacher, teacher_tokenizer = load_teacher(config.teacher)
    tokenizer, vocab_ids = teacher_tokenizer, None
    if config.vocab.path is not None:
        from monodistill.vocab import load_trimmed_vocab

        if not Path(config.vocab.path).is_dir():
            raise MonodistillError(f"--vocab {config.vocab.path} does not exist; build it with `monodistill vocab`")
        tokenizer, id_map = load_trimmed_vocab(Path(config.vocab.path), teacher_tokenizer)
        vocab_ids = torch.tensor(id_map, dtype=torch.long)
    objective = family_of(teacher).objective
    blocks = build_blocks(config.data, tokenizer, config.train.seed, objective)
    vocab_size = len(vocab_ids) if vocab_ids is not None else int(teacher.config.vocab_size)
    masking = Masking.of(tokenizer, vocab_size, config.data.mlm_probability) if objective == "masked" else NextToken()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stream = BatchStream(blocks, masking, config.train, device=device, static_masks=True)
    total_steps = stream.total_steps(config.train)
    # The bytes per position are said where shards are built (build.ensure_shards), not here a second time.
    epochs = cache_epochs(config.cache, objective, math.ceil(total_steps / stream.steps_per_epoch))
    print(
        f"teacher cache of {config.teacher.name_or_path} on {len(blocks.train):,} training blocks "
        f"({epochs} epoch{'s' if epochs > 1 else ''} of {'masks' if objective == 'masked' else 'next tokens'})"
    )
    cache = open_teacher_cache(config, teacher, tokenizer, vocab_ids, blocks, stream, total_steps, objective)
    return cache.folder
