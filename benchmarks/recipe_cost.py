"""The cost of each loss term: step time of the production step with a term on, as a ratio to the paper's.

One process, one mBERT-shaped teacher built in code (12 layers, hidden 768, 12 heads, 119,547 tokens,
random weights, so nothing is downloaded), one dBERT-Tiny student per recipe (4 layers, hidden 312,
12 heads), the same batches and masks. Each step is monodistill's production step
(``distill.train_step``): the teacher computes what that recipe's objective declares (hidden states,
Q/K/V of one layer), the student runs forward and backward with its terms, then AdamW. Recipes are
timed step by step in turn, so that other load on the machine slows them alike. The last line is
``ratio: X.XX``: relation + hidden terms on top of the paper's, over the paper's step time.

    python benchmarks/recipe_cost.py --steps 3 --batch-size 8          # CPU: a few minutes on 2 cores
    python benchmarks/recipe_cost.py --steps 20 --batch-size 32        # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from monodistill.config import DistillConfig, StudentConfig, load_config
from monodistill.student import build_student
from production import ProductionStep, random_blocks

RECIPES = {
    "paper (KL + MLM)": {},
    "+ relation": {"alpha_relation": 1.0},
    "+ hidden MSE": {"alpha_hidden": 1.0},
    "+ relation + hidden": {"alpha_relation": 1.0, "alpha_hidden": 1.0},
    "+ attention MSE": {"alpha_attention": 1.0},
    "TinyBERT (hidden + attention)": {"alpha_kl": 0.0, "alpha_mlm": 0.0, "alpha_hidden": 1.0, "alpha_attention": 1.0},
    "TiME (relation only)": {"alpha_kl": 0.0, "alpha_mlm": 0.0, "alpha_relation": 1.0},
}
MBERT_SPECIAL_IDS, MBERT_MASK_ID = [0, 100, 101, 102, 103], 103


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per recipe, interleaved")
    parser.add_argument("--warmup", type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    teacher = BertForMaskedLM(
        BertConfig(vocab_size=119_547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12)
    ).eval()
    teacher.requires_grad_(False)
    total = args.warmup + args.steps
    configs = [
        load_config(
            DistillConfig,
            updates={
                "student": {"preset": "dbert-tiny"},
                "data": {"max_seq_length": args.seq_length},
                "loss": loss,
                "train": {"batch_size": args.batch_size, "max_steps": total},
            },
        )
        for loss in RECIPES.values()
    ]
    students = [build_student(StudentConfig(preset="dbert-tiny"), teacher, seed=0) for _ in configs]
    blocks = random_blocks(args.batch_size * total, args.seq_length, 1000, 119_547)
    production = ProductionStep(configs, teacher, students, blocks, MBERT_SPECIAL_IDS, MBERT_MASK_ID)
    device = production.teacher.model.device
    print(
        f"device {device} ({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}), "
        f"mBERT-shaped teacher, dBERT-Tiny students, batch {args.batch_size} x {args.seq_length}, "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    seconds = dict.fromkeys(RECIPES, 0.0)
    for step in range(total):
        for name, run in zip(RECIPES, production.runs, strict=True):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            production(step, [run])  # this recipe alone: its own teacher pass, with what it needs
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                seconds[name] += (time.perf_counter() - started) / args.steps
    paper = seconds["paper (KL + MLM)"]
    for name, value in seconds.items():
        print(f"{name:>32}: {value:.3f} s/step, {value / paper:.2f}x the paper's step")
    production.close()
    print(f"ratio: {seconds['+ relation + hidden'] / paper:.2f}")


if __name__ == "__main__":
    main()
