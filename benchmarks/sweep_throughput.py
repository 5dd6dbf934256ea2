"""Sweep throughput: students distilled one after another vs together with one teacher pass per batch.

Four dBERT-Tiny students (temperatures 1, 2, 4, 8) on the same batches and masks. Sequential: every
student pays for its own teacher forward, as separate runs do. Grouped: one teacher forward per
batch, then every student's forward, backward and AdamW step (what ``monodistill.sweep`` does). Both
are timed for (a) the stand-in teacher from ../shared and (b) an mBERT-shaped teacher built in code
(12 layers, 768 hidden, 119,547-token vocabulary, random weights). Reported: total sweep tokens/s
(tokens seen by all students together per second), and the teacher's share of one student's step.
(c) repeats (b) with the students on a trimmed vocabulary (``--trimmed-vocab``, default 19,796: the
real mBERT vocabulary trimmed to the shared Tagalog corpus), the teacher's head sliced to the kept
rows as ``monodistill.distill`` slices it. Beside each measurement, the same figures predicted from
model FLOPs (``monodistill.flops``: the teacher forward once, each student's forward and backward).
The last line printed is ``ratio: X.XX`` (grouped / sequential tokens/s, (b): mBERT-shaped teacher,
full-vocabulary students).

    python benchmarks/sweep_throughput.py --steps 3 --batch-size 8       # CPU: ~3 min on 2 idle cores
    python benchmarks/sweep_throughput.py --device cuda --batch-size 32 --steps 20
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

from monodistill.config import LossConfig, StudentConfig, TeacherConfig
from monodistill.data.masking import IGNORE_INDEX, mask_tokens, step_generator
from monodistill.distill import StudentWithHead
from monodistill.flops import ModelShape, masked_lm_forward_flops
from monodistill.losses import distillation_loss
from monodistill.student import build_student
from monodistill.teacher import encoder, load_teacher, mlm_head

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "mmt-mini"), help="stand-in teacher")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant, interleaved")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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
    device = torch.device(args.device)
    teacher.to(device)
    vocab = teacher.config.vocab_size if kept is None else len(kept)
    special = torch.tensor(special_ids, device=device)
    teacher_encoder, teacher_head = encoder(teacher), mlm_head(teacher)
    vocab_ids = None if kept is None else kept.to(device)
    if vocab_ids is not None:
        teacher_head = teacher_head.restricted(vocab_ids)
    students = []
    for temperature in TEMPERATURES:
        model = build_student(StudentConfig(preset="dbert-tiny"), teacher, kept, seed=0).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cuda", "cpu"))
        students.append((StudentWithHead(model), optimizer, LossConfig(temperature=temperature)))

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=device).manual_seed(step)
        ids = torch.randint(1000, vocab, (args.batch_size, args.seq_length), generator=generator, device=device)
        masked, labels = mask_tokens(
            ids, torch.isin(ids, special), mask_token_id, vocab, 0.15, step_generator(0, step, 0, device)
        )
        return masked, labels, labels != IGNORE_INDEX

    def teacher_pass(masked: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            teacher_ids = vocab_ids[masked] if vocab_ids is not None else masked
            hidden = teacher_encoder(input_ids=teacher_ids).last_hidden_state  # (B, T, H)
            logits = teacher_head.logits(hidden[positions])  # (N, V)
        return logits.clone()

    def student_step(
        number: int, masked: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor
    ) -> None:
        wrapped, optimizer, loss_config = students[number]
        student_logits, _ = wrapped(masked, positions)
        distillation_loss(loss_config, student_logits, logits, labels[positions])["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sequential(step: int) -> None:
        masked, labels, positions = batch(step)
        for number in range(len(students)):
            student_step(number, masked, labels, positions, teacher_pass(masked, positions))

    def grouped(step: int) -> None:
        masked, labels, positions = batch(step)
        logits = teacher_pass(masked, positions)
        for number in range(len(students)):
            student_step(number, masked, labels, positions, logits)

    def teacher_only(step: int) -> None:
        masked, _, positions = batch(step)
        teacher_pass(masked, positions)

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
    predicted_share, predicted_ratio = flop_prediction(teacher, students[0][0].model, vocab, args, len(students))
    print(
        f"{name}: {parameters(teacher) / 1e6:,.1f}M-parameter teacher, {len(students)} x "
        f"{parameters(students[0][0]) / 1e6:,.1f}M-parameter students\n"
        f"  sequential: {tokens / sequential_time:,.0f} tokens/s ({sequential_time:.3f} s per step of all students)\n"
        f"  grouped:    {tokens / grouped_time:,.0f} tokens/s ({grouped_time:.3f} s)\n"
        f"  teacher share of one student's step: {min(teacher_time / one_student_step, 1.0):.0%} "
        f"({teacher_time:.3f} s of {one_student_step:.3f} s)\n"
        f"  grouped / sequential: {ratio:.2f}\n"
        f"  predicted from model FLOPs: teacher share {predicted_share:.0%}, grouped / sequential {predicted_ratio:.2f}"
    )
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
    return sum(parameter.numel() for parameter in model.parameters())


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    print(
        f"device {args.device} ({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}), "
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
