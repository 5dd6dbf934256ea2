"""How large each TinyBERT term is at step 0: the hidden-state and the attention MSE, as monodistill computes them.

The stand-in teacher ``../shared/models/mmt-mini`` (4 layers, hidden 256, 4 heads), a random
dBERT-Tiny-shaped student (4 layers, hidden 312, feed-forward 1200) with the teacher's 4 heads (the
attention term needs equal head counts), Tagalog blocks of 128 tokens from ``../shared/data/tl/corpus.txt``.
Each value is monodistill's own step-0 loss part (``distill.train_step``: TeacherPass, StudentRun and its
loss terms), for several student seeds and batches. For comparison, the same pairs scored as TinyBERT's
code scores them (``huawei-noah/Pretrained-Language-Model``, ``TinyBERT/general_distill.py``): the MSE of
the raw hidden states (the student's through the same projection) and of the attention scores before the
softmax, each summed over the mapped layers rather than averaged.

    python benchmarks/loss_scales.py                     # about a minute on 2 CPU cores
    python benchmarks/loss_scales.py --seeds 3 --batches 4
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from monodistill.config import DistillConfig, StudentConfig, TeacherConfig, load_config
from monodistill.data.blocks import Blocks
from monodistill.evaluate.machine import describe_machine, machine
from monodistill.internals import num_heads
from monodistill.losses import default_layer_map
from monodistill.student import build_student
from monodistill.teacher import load_teacher
from production import ProductionStep

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TINYBERT = {"alpha_kl": 0.0, "alpha_mlm": 0.0, "alpha_hidden": 1.0, "alpha_attention": 1.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="random students")
    parser.add_argument("--batches", type=int, default=4, help="batches per student")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=128)
    return parser.parse_args()


def corpus_blocks(tokenizer: object, count: int, length: int) -> Blocks:
    """The corpus's first lines, tokenised and packed into ``count`` blocks of ``length`` tokens."""
    ids: list[int] = []
    with open(SHARED / "data" / "tl" / "corpus.txt", encoding="utf-8") as corpus:
        for line in corpus:
            ids += tokenizer(line.strip(), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
            if len(ids) >= count * length:
                break
    rows = [ids[start : start + length] for start in range(0, count * length, length)]
    table = datasets.Dataset.from_dict({"input_ids": rows}).with_format("torch")
    return Blocks(train=table, validation=table.select(range(1)), cache_path=Path("."), corpus_digest="")


def tinybert_scoring(teacher: torch.nn.Module, run: object, input_ids: torch.Tensor) -> tuple[float, float]:
    """TinyBERT's hidden and attention terms of one unmasked batch: raw-state MSE and pre-softmax score MSE,
    each summed over the mapped layers (``general_distill.py``)."""
    student = run.unwrapped_student()  # type: ignore[attr-defined]
    projections = run.accelerator.unwrap_model(run.model).projections  # type: ignore[attr-defined]
    layers = default_layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)

    def states(model: torch.nn.Module) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        queries: list[torch.Tensor] = []
        keys: list[torch.Tensor] = []
        hooks = []
        for layer in model.base_model.encoder.layer:
            hooks.append(layer.attention.self.query.register_forward_hook(lambda m, i, o: queries.append(o)))
            hooks.append(layer.attention.self.key.register_forward_hook(lambda m, i, o: keys.append(o)))
        with torch.inference_mode():
            hidden = model.base_model(input_ids=input_ids, output_hidden_states=True).hidden_states
        for hook in hooks:
            hook.remove()
        heads = num_heads(model)
        scores = []
        for query, key in zip(queries, keys, strict=True):
            q = query.unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, R, T, d)
            k = key.unflatten(-1, (heads, -1)).transpose(1, 2)
            scores.append(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5)  # (B, R, T, T), no padding in packed blocks
        return hidden, scores

    student_hidden, student_scores = states(student)
    teacher_hidden, teacher_scores = states(teacher)
    hidden = 0.0
    attention = 0.0
    with torch.inference_mode():
        for s, t in layers:
            mine = student_hidden[s]
            if str(s) in projections:
                mine = projections[str(s)](mine)
            hidden += F.mse_loss(mine, teacher_hidden[t]).item()
            if s > 0:
                attention += F.mse_loss(student_scores[s - 1], teacher_scores[t - 1]).item()
    return hidden, attention


def main() -> None:
    args = parse_args()
    teacher, tokenizer = load_teacher(TeacherConfig(name_or_path=str(SHARED / "models" / "mmt-mini")))
    shape = StudentConfig(preset="dbert-tiny", num_heads=int(teacher.config.num_attention_heads))
    blocks = corpus_blocks(tokenizer, args.batch_size * args.batches, args.seq_length)
    updates = {
        "student": {"preset": "dbert-tiny", "num_heads": shape.num_heads},
        "data": {"max_seq_length": args.seq_length},
        "loss": TINYBERT,
        # Every step scores the student as it was initialised: AdamW at 1e-30 changes no float32 weight.
        "train": {"batch_size": args.batch_size, "max_steps": args.batches, "learning_rate": 1e-30},
    }
    config = load_config(DistillConfig, updates=updates)
    special = [int(i) for i in tokenizer.all_special_ids]
    print(
        f"{describe_machine(machine())}, torch {torch.__version__}; teacher mmt-mini, dBERT-Tiny-shaped students "
        f"with {shape.num_heads} heads, {args.seeds} seeds x {args.batches} batches of {args.batch_size} x "
        f"{args.seq_length} tokens, step 0"
    )
    values: dict[str, list[float]] = {
        name: [] for name in ("hidden", "attention", "tinybert hidden", "tinybert attention")
    }
    for seed in range(args.seeds):
        student = build_student(shape, teacher, seed=seed)
        production = ProductionStep([config], teacher, [student], blocks, special, int(tokenizer.mask_token_id))
        (run,) = production.runs
        for batch in range(args.batches):
            (masked,) = production.stream.step(batch)  # the batch, masked, that the step below scores
            raw_hidden, raw_attention = tinybert_scoring(teacher, run, masked.input_ids)
            values["tinybert hidden"].append(raw_hidden)
            values["tinybert attention"].append(raw_attention)
            metrics = production(batch)[run]
            values["hidden"].append(metrics["hidden"])
            values["attention"].append(metrics["attention"])
        production.close()
    for name, measured in values.items():
        print(
            f"{name:>20}: median {statistics.median(measured):.3g} (min {min(measured):.3g}, max {max(measured):.3g})"
        )
    ratio = statistics.median(values["hidden"]) / statistics.median(values["attention"])
    print(f"ratio: {ratio:.0f} (monodistill's hidden over attention term at step 0)")


if __name__ == "__main__":
    main()
