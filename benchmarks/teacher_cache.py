"""The teacher cache against the live teacher: teacher FLOPs and wall time of a multi-epoch run and of a sweep, and
the bytes per position of each summary.

Every run is the real command (``monodistill distill`` / ``cache-teacher``, one fresh process each, timed whole:
loading included) on the first ``--documents`` documents of the Tagalog corpus:

- (a) one student for ``--epochs`` epochs: live (``data.static_masks=true``: the masks a cache holds) against
  building the cache and distilling from it;
- (b) a sweep of ``--students`` students of different seeds (students of different seeds see other batches, so no
  group shares a teacher pass): each live, against the cache of (a) read by each.

Teacher FLOPs are counted (``monodistill.flops``: the layers over every token, the LM head at the scored positions)
from the blocks each way runs the teacher on: live, every step's blocks and every validation's; cached, each block
once per cached epoch (once in all for the causal objective, once per epoch of masks for the masked one) and the
validation blocks once. (c) builds one small cache per method and setting and reads its bytes per training position
from its manifest, against DistillKit's ~300 bytes per token.

    python benchmarks/teacher_cache.py                                  # clm-mini, causal: 47 min on 2 idle cores
    python benchmarks/teacher_cache.py --teacher ../shared/models/mmt-mini --bytes-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig

from monodistill.flops import ModelShape, masked_lm_forward_flops

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
STUDENT = [
    "student.preset=custom",
    "student.num_layers=2",
    "student.hidden_size=128",
    "student.intermediate_size=384",
    "student.num_heads=4",
]
BYTES_SETTINGS = [
    ("sample", "samples=16", "T=4"),
    ("sample", "samples=64", "T=4"),
    ("sample", "samples=256", "T=4"),
    ("sample", "samples=64", "T=1"),
    ("sample", "samples=64", "T=2"),
    ("topk", "k=16", "T=4"),
    ("topk", "k=64", "T=4"),
    ("topk", "k=256", "T=4"),
]
"""(method, its size, the loss's temperature): a flatter distribution (higher T) has more distinct tokens per draw."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "clm-mini"))
    parser.add_argument("--corpus", default=str(SHARED / "data" / "tl" / "corpus.txt"))
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--method", choices=["sample", "topk"], default="sample")
    parser.add_argument("--bytes-only", action="store_true", help="(c) alone")
    parser.add_argument("--work", help="folder for corpus, caches and runs (default: a temporary one)")
    return parser.parse_args()


def monodistill(*arguments: str) -> float:
    """Run one command in a fresh process; its wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "monodistill.cli", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"monodistill {' '.join(arguments[:1])} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def teacher_block_flops(teacher: str, seq_length: int, objective: str, probability: float = 0.15) -> float:
    """Forward FLOPs of the teacher on one block: its layers over every token, its head at the scored positions."""
    config = AutoConfig.from_pretrained(teacher)
    shape = ModelShape(config.num_hidden_layers, config.hidden_size, config.intermediate_size)
    scored = seq_length - 1 if objective == "causal" else round(probability * seq_length)
    return float(masked_lm_forward_flops(shape, config.vocab_size, 1, seq_length, scored))


def main() -> None:
    args = parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="teacher-cache-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    with open(args.corpus, encoding="utf-8") as source:
        corpus.write_text("".join(line for _, line in zip(range(args.documents), source, strict=False)))
    common = [
        "--teacher", args.teacher, "--corpus", str(corpus),
        f"data.cache_dir={work / 'cache'}", f"train.batch_size={args.batch_size}", "data.max_validation_blocks=50",
    ]  # fmt: skip
    objective = "causal" if "CausalLM" in str(AutoConfig.from_pretrained(args.teacher).architectures) else "masked"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"teacher {args.teacher} ({objective}), first {args.documents:,} documents of {args.corpus}")
    if not args.bytes_only:
        run_and_sweep(args, work, common, objective)
    bytes_per_position(args, work, common)


def run_and_sweep(args: argparse.Namespace, work: Path, common: list[str], objective: str) -> None:
    training = ["train.max_steps=null", f"train.epochs={args.epochs}", "train.eval_interval=0", *STUDENT]
    cache = work / f"cache-{args.method}"
    build = monodistill("cache-teacher", *common, *training, "--output", str(cache), f"cache.method={args.method}")
    manifest = json.loads((cache / "manifest.json").read_text())
    shards = manifest["shards"].values()
    train_blocks = sum(entry["blocks"] for name, entry in manifest["shards"].items() if name.startswith("train-e000"))
    validation_blocks = sum(entry["blocks"] for name, entry in manifest["shards"].items() if name.startswith("valid"))
    cached_blocks = sum(entry["blocks"] for entry in shards)
    steps = args.epochs * (train_blocks // args.batch_size)
    live_blocks = steps * args.batch_size + validation_blocks  # every step's blocks, one validation at the end
    per_block = teacher_block_flops(args.teacher, 128, objective)

    def distil(name: str, *extra: str) -> float:
        return monodistill("distill", *common, *training, "--output", str(work / name), "--overwrite", *extra)

    live = [distil(f"live-{seed}", "data.static_masks=true", f"train.seed={seed}") for seed in range(args.students)]
    cached = [distil(f"cached-{seed}", f"teacher_cache={cache}", f"train.seed={seed}") for seed in range(args.students)]
    print(f"\n(a) one student, {args.epochs} epochs of {train_blocks:,} blocks ({steps:,} steps of {args.batch_size})")
    print("| | teacher forward (blocks) | teacher TFLOPs | wall (s) |")
    print("|---|---|---|---|")
    print(f"| live | {live_blocks:,} | {live_blocks * per_block / 1e12:.2f} | {live[0]:.0f} |")
    print(
        f"| cached ({args.method}): build + run | {cached_blocks:,} | {cached_blocks * per_block / 1e12:.2f} | "
        f"{build:.0f} + {cached[0]:.0f} = {build + cached[0]:.0f} |"
    )
    print(f"ratio live / cached: FLOPs {live_blocks / cached_blocks:.2f}x, wall {live[0] / (build + cached[0]):.2f}x")
    n = args.students
    print(f"\n(b) a sweep of {n} students (seeds 0-{n - 1}: no shared teacher pass)")
    print("| | teacher forward (blocks) | teacher TFLOPs | wall (s) |")
    print("|---|---|---|---|")
    print(f"| live | {n * live_blocks:,} | {n * live_blocks * per_block / 1e12:.2f} | {sum(live):.0f} |")
    print(
        f"| cached: build + runs | {cached_blocks:,} | {cached_blocks * per_block / 1e12:.2f} | "
        f"{build:.0f} + {sum(cached):.0f} = {build + sum(cached):.0f} |"
    )
    ratio = (n * live_blocks) / cached_blocks
    print(f"ratio live / cached: FLOPs {ratio:.2f}x, wall {sum(live) / (build + sum(cached)):.2f}x")
    print(f"per student run: live {sum(live) / n:.0f} s, cached {sum(cached) / n:.0f} s")


def bytes_per_position(args: argparse.Namespace, work: Path, common: list[str]) -> None:
    print("\n(c) bytes per training position (DistillKit: ~300 per token)")
    print("| method | setting | temperature | bytes per position | distinct tokens per position |")
    print("|---|---|---|---|---|")
    small = ["train.max_steps=null", "train.epochs=1", "cache.epochs=1", "data.max_documents=500"]
    for method, size, temperature in BYTES_SETTINGS:
        folder = work / f"bytes-{method}-{size}-{temperature}"
        setting = [f"cache.method={method}", f"cache.{size}", f"loss.temperature={temperature[2:]}"]
        monodistill("cache-teacher", *common, *small, "--output", str(folder), *setting)
        manifest = json.loads((folder / "manifest.json").read_text())
        train = [entry for name, entry in manifest["shards"].items() if name.startswith("train")]
        positions = sum(entry["positions"] for entry in train)
        total = sum(entry["bytes"] for entry in train)
        entries = sum(entry["entries"] for entry in train)
        print(f"| {method} | {size} | {temperature} | {total / positions:.1f} | {entries / positions:.1f} |")


if __name__ == "__main__":
    main()
