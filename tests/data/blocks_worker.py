"""Build (or read) the blocks once and print one JSON line about it; run by tests/data/test_blocks_cache.py.

Run under torchrun, or several times side by side, on one cache folder:
``python blocks_worker.py CORPUS TOKENIZER_DIR CACHE_DIR``. The line gives this process's rank, whether
it built the blocks itself, and a digest of each split's ``input_ids``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

from accelerate import PartialState
from transformers import AutoTokenizer

from monodistill.config import DataConfig
from monodistill.data import blocks as blocks_module


def main(corpus: str, tokenizer_dir: str, cache_dir: str) -> None:
    builds: list[str] = []
    build_entry = blocks_module._build_entry

    def counting_build(*args: Any, **kwargs: Any) -> None:  # a spy: the real build, counted
        builds.append("built")
        build_entry(*args, **kwargs)

    blocks_module._build_entry = counting_build
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = DataConfig(corpus=corpus, max_seq_length=32, cache_dir=cache_dir)
    blocks = blocks_module.build_blocks(config, tokenizer, seed=0)
    digests = {
        name: hashlib.sha256(split[:]["input_ids"].numpy().tobytes()).hexdigest()
        for name, split in (("train", blocks.train), ("validation", blocks.validation))
    }
    print(json.dumps({"rank": int(os.environ.get("RANK", "0")), "built": bool(builds), **digests}), flush=True)
    PartialState().destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
