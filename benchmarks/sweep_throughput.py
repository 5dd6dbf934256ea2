"""Sweep throughput: students distilled one after another vs together with one teacher pass per batch.

Four dBERT-Tiny students (temperatures 1, 2, 4, 8) on the same batches and masks. Sequential: every
student pays for its own teacher forward, as separate runs do. Grouped: one teacher forward per
batch, then every student's forward, backward and AdamW step. Both are monodistill's production
step (``distill.train_step`` over ``StudentRun``s), given one student at a time or all four. Both
are timed for (a) the stand-in teacher from ../shared and (b) an mBERT-shaped teacher built in code
(12 layers, 768 hidden, 119,547-token vocabulary, random weights). Reported: total sweep tokens/s
(tokens seen by all students together per second), and the teacher's share of one student's step.
(c) repeats (b) with the students on a trimmed vocabulary (``--trimmed-vocab``, default 19,796: the
real mBERT vocabulary trimmed to the shared Tagalog corpus), the teacher's head sliced to the kept
rows as ``distill.TeacherPass`` slices it. Beside each measurement, the same figures predicted from
model FLOPs (``monodistill.flops``: the teacher forward once, each student's forward and backward).
The last line printed is ``ratio: X.XX`` (grouped / sequential tokens/s, (b): mBERT-shaped teacher,
full-vocabulary students).

    python benchmarks/sweep_throughput.py --steps 3 --batch-size 8       # CPU: ~3 min on 2 idle cores
    python benchmarks/sweep_throughput.py --batch-size 32 --steps 20    # on a CUDA machine
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedModel

from monodistill.config import DistillConfig, StudentConfig, TeacherConfig, load_config
from monodistill.evaluate.summary import encoder_counts
from monodistill.flops import ModelShape, masked_lm_forward_flops
from monodistill.losses import Needs
from monodistill.student import build_student
from monodistill.teacher import load_teacher
from production import ProductionStep, random_blocks

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "mmt-mini"), help="stand-in teacher")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant, interleaved")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--trimmed-vocab", type=int, default=19_796, help="(c): students' trimmed vocabulary size")
    return parser.parse_args()


def mbert_shaped_teacher() -> PreTrainedModel:
    """bert-base-multilingual-cased's shape with random weights: nothing is downloaded."""
    config = BertConfig(
        vocab_size=119_547,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    return BertForMaskedLM(config).eval().requires_grad_(False)


def measure(
    name: str,
    teacher: PreTrainedModel,
    mask_token_id: int,
    special_ids: list[int],
    args: argparse.Namespace,
    kept: torch.Tensor | None = None,
) -> float:
    """Time both variants on one teacher; prints the figures and returns grouped / sequential tokens/s.

    ``kept``: the teacher ids of a trimmed student vocabulary (special ids first, at their own ids).
    """
    vocab = teacher.config.vocab_size if kept is None else len(kept)
    total = args.warmup + args.steps
    configs = [
        load_config(
            DistillConfig,
            updates={
                "student": {"preset": "dbert-tiny"},
                "data": {"max_seq_length": args.seq_length},
                "loss": {"temperature": temperature},
                "train": {"batch_size": args.batch_size, "max_steps": total},
            },
        )
        for temperature in TEMPERATURES
    ]
    students = [build_student(StudentConfig(preset="dbert-tiny"), teacher, kept, seed=0) for _ in configs]
    # With a trimmed vocabulary the specials keep their ids (0-103 are kept first); other ids are any kept row.
    blocks = random_blocks(args.batch_size * total, args.seq_length, 1000 if kept is None else 104, vocab)
    production = ProductionStep(configs, teacher, students, blocks, special_ids, mask_token_id, kept)
    device = production.teacher.model.device

    def sequential(step: int) -> None:
        for run in production.runs:  # each student pays for its own teacher forward, as separate runs do
            production(step, [run])

    def grouped(step: int) -> None:
        production(step)

    def teacher_only(step: int) -> None:
        for batch in production.stream.step(step):
            production.teacher(batch, Needs())

    def timed(step_function: Callable[[int], None], step: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step_function(step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    variants = {"sequential": sequential, "grouped": grouped, "teacher": teacher_only}
    for step in range(args.warmup):
        for step_function in variants.values():
            step_function(step)
    # Interleaved step by step, so that a machine shared with other work slows every variant alike.
    seconds = dict.fromkeys(variants, 0.0)
    for step in range(args.warmup, args.warmup + args.steps):
        for variant, step_function in variants.items():
            seconds[variant] += timed(step_function, step) / args.steps
    tokens = args.batch_size * args.seq_length * len(students)  # tokens all students see per step
    sequential_time, grouped_time, teacher_time = seconds["sequential"], seconds["grouped"], seconds["teacher"]
    one_student_step = sequential_time / len(students)  # teacher + one student, as a single run pays
    ratio = sequential_time / grouped_time
    predicted_share, predicted_ratio = flop_prediction(teacher, students[0], vocab, args, len(students))
    print(
        f"{name}: {parameters(teacher) / 1e6:,.1f}M-parameter teacher, {len(students)} x "
        f"{parameters(students[0]) / 1e6:,.1f}M-parameter students\n"
        f"  sequential: {tokens / sequential_time:,.0f} tokens/s ({sequential_time:.3f} s per step of all students)\n"
        f"  grouped:    {tokens / grouped_time:,.0f} tokens/s ({grouped_time:.3f} s)\n"
        f"  teacher share of one student's step: {min(teacher_time / one_student_step, 1.0):.0%} "
        f"({teacher_time:.3f} s of {one_student_step:.3f} s)\n"
        f"  grouped / sequential: {ratio:.2f}\n"
        f"  predicted from model FLOPs: teacher share {predicted_share:.0%}, grouped / sequential {predicted_ratio:.2f}"
    )
    production.close()
    teacher.to("cpu")
    return ratio


def flop_prediction(
    teacher: PreTrainedModel, student: PreTrainedModel, vocab: int, args: argparse.Namespace, students: int
) -> tuple[float, float]:
    """The teacher's share of one student's step and the grouped / sequential ratio, from model FLOPs.

    The teacher runs forward once; a student forward and backward (3x forward); both heads score the
    15% masked positions onto ``vocab`` rows. Memory-bound work (embedding gradients, AdamW) counts 0.
    """
    sizes = (vocab, args.batch_size, args.seq_length, round(0.15 * args.batch_size * args.seq_length))
    teacher_flops = masked_lm_forward_flops(ModelShape.from_config(teacher.config), *sizes)
    student_flops = 3 * masked_lm_forward_flops(ModelShape.from_config(student.config), *sizes)
    share = teacher_flops / (teacher_flops + student_flops)
    ratio = students * (teacher_flops + student_flops) / (teacher_flops + students * student_flops)
    return share, ratio


def parameters(model: torch.nn.Module) -> int:
    """The encoder with its embeddings, heads aside: as the card, report and evaluation summary count."""
    return encoder_counts(model)["total"]


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    print(
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}), "
        f"batch {args.batch_size} x {args.seq_length} tokens, {args.steps} timed steps after {args.warmup} warm-up"
    )
    stand_in, tokenizer = load_teacher(TeacherConfig(name_or_path=args.teacher))
    measure(
        f"(a) stand-in teacher {Path(args.teacher).name}",
        stand_in,
        tokenizer.mask_token_id,
        tokenizer.all_special_ids,
        args,
    )
    del stand_in
    # mBERT's special ids: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
    mbert_specials = [0, 100, 101, 102, 103]
    mbert = mbert_shaped_teacher()
    ratio = measure("(b) mBERT-shaped teacher (random weights)", mbert, 103, mbert_specials, args)
    # A trimmed vocabulary keeps the special tokens at their ids; any other teacher rows stand in for
    # the kept tokens (the benchmark's text is random ids).
    kept = torch.cat([torch.arange(104), torch.arange(1000, 1000 + args.trimmed_vocab - 104)])
    measure(
        f"(c) mBERT-shaped teacher, students on a {args.trimmed_vocab:,}-token trimmed vocabulary",
        mbert,
        103,
        mbert_specials,
        args,
        kept,
    )
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
