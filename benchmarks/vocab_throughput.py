"""Distillation throughput and peak memory: trimmed vs full student vocabulary, same run.

Both variants run the production step (``distill.train_step``: teacher forward at the mapped
ids, student forward and backward, AdamW) on the same teacher and the same blocks of text. The
trimmed variant keeps the tokens seen in the Tagalog corpus; its teacher head is sliced to the kept
rows once. Each variant runs in its own process so that peak memory (max RSS on CPU, max allocated
on GPU) is its own. The last line printed is ``ratio: X.XX`` (trimmed tokens/s / full tokens/s).

    python benchmarks/vocab_throughput.py
    python benchmarks/vocab_throughput.py --teacher bert-base-multilingual-cased --student dbert-base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from monodistill.config import DistillConfig, load_config
from monodistill.evaluate.summary import encoder_counts
from monodistill.student import build_student
from monodistill.teacher import load_teacher
from monodistill.vocab import trim_vocabulary
from production import ProductionStep, random_blocks

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "mmt-mini"))
    parser.add_argument("--corpus", default=str(SHARED / "data" / "tl" / "corpus.txt"))
    parser.add_argument("--student", default="dbert-tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variant", choices=["full", "trimmed"], help=argparse.SUPPRESS)
    return parser.parse_args()


def run_variant(args: argparse.Namespace) -> dict[str, float]:
    """Time the production step for one variant; returns tokens/s, peak memory and sizes."""
    config = load_config(
        DistillConfig,
        overrides=[
            f"teacher.name_or_path={args.teacher}",
            f"student.preset={args.student}",
            f"train.batch_size={args.batch_size}",
            f"data.max_seq_length={args.seq_length}",
            f"train.max_steps={args.warmup + args.steps}",
        ],
    )
    teacher, tokenizer = load_teacher(config.teacher)
    vocab_ids = None
    if args.variant == "trimmed":
        lines = Path(args.corpus).read_text().splitlines()
        kept = trim_vocabulary(tokenizer, lines, max_size=None, coverage=None, min_count=1).kept_ids
        vocab_ids = torch.tensor(kept, dtype=torch.long)
    vocab_size = len(vocab_ids) if vocab_ids is not None else teacher.config.vocab_size
    student = build_student(config.student, teacher, vocab_ids)
    # Random blocks of student ids: speed does not depend on which tokens they are.
    low = 1000 if vocab_ids is None else 10
    blocks = random_blocks(args.batch_size * (args.warmup + args.steps), args.seq_length, low, vocab_size)
    special_ids, mask_id = tokenizer.all_special_ids, tokenizer.mask_token_id
    if vocab_ids is not None:  # the same tokens under their student ids
        student_id = {int(teacher_id): number for number, teacher_id in enumerate(vocab_ids)}
        special_ids, mask_id = [student_id[i] for i in special_ids], student_id[mask_id]
    step = ProductionStep([config], teacher, [student], blocks, special_ids, mask_id, vocab_ids)
    for index in range(args.warmup):
        step(index)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.steps):
        step(index)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    step.close()
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "tokens_per_second": args.batch_size * args.seq_length * args.steps / elapsed,
        "peak_memory_gib": peak,
        "vocab_size": vocab_size,
        "student_parameters": encoder_counts(student)["total"],  # the encoder with its embeddings, heads aside
    }


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    results = {}
    for variant in ("full", "trimmed"):
        command = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    memory = "GPU max allocated" if torch.cuda.is_available() else "CPU max RSS (whole process)"
    print(f"teacher {args.teacher}, student {args.student}, batch {args.batch_size} x {args.seq_length}, {memory}")
    for variant, result in results.items():
        print(
            f"{variant:>8}: vocab {result['vocab_size']:>7,}  "
            f"student {result['student_parameters'] / 1e6:6.1f}M params (encoder, heads aside)  "
            f"{result['tokens_per_second']:8,.0f} tokens/s  peak {result['peak_memory_gib']:.2f} GiB"
        )
    print(f"ratio: {results['trimmed']['tokens_per_second'] / results['full']['tokens_per_second']:.2f}")


if __name__ == "__main__":
    main()
