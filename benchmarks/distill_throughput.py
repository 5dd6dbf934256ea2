"""Distillation-step throughput: LM heads at masked positions only vs at every position.

Same teacher, same student, same batches and masks, in one process. The naive step is what a
straightforward implementation does: ``model(...).logits`` gives (B, T, V) for teacher and student,
then the loss is taken at masked positions. The monodistill step applies both heads to the masked
positions only. The last line printed is ``ratio: X.XX`` (masked-only tokens/s / naive tokens/s).

    python benchmarks/distill_throughput.py                      # stand-in teacher from ../shared
    python benchmarks/distill_throughput.py --teacher bert-base-multilingual-cased --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from monodistill.config import LossConfig, StudentConfig, TeacherConfig
from monodistill.data.masking import IGNORE_INDEX, mask_tokens, step_generator
from monodistill.distill import StudentWithHead
from monodistill.losses import distillation_loss
from monodistill.student import build_student
from monodistill.teacher import encoder, load_teacher, mlm_head

DEFAULT_TEACHER = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(DEFAULT_TEACHER / "models" / "mmt-mini"))
    parser.add_argument("--student", default="dbert-tiny", help="student preset")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--teacher-dtype", default="auto")
    parser.add_argument("--bf16", action="store_true", help="student autocast in bf16")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    teacher, tokenizer = load_teacher(TeacherConfig(name_or_path=args.teacher, dtype=args.teacher_dtype))
    teacher.to(device)
    student = build_student(StudentConfig(preset=args.student), teacher).to(device)
    wrapped = StudentWithHead(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    loss_config = LossConfig()
    vocab = teacher.config.vocab_size
    special = torch.tensor(tokenizer.all_special_ids, device=device)
    teacher_head = mlm_head(teacher)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=device).manual_seed(step)
        ids = torch.randint(1000, vocab, (args.batch_size, args.seq_length), generator=generator, device=device)
        masked, labels = mask_tokens(
            ids, torch.isin(ids, special), tokenizer.mask_token_id, vocab, 0.15, step_generator(0, step, 0, device)
        )
        return masked, labels, labels != IGNORE_INDEX

    def masked_only(step: int) -> None:
        masked, labels, positions = batch(step)
        with torch.inference_mode():
            hidden = encoder(teacher)(input_ids=masked).last_hidden_state
            teacher_logits = teacher_head.logits(hidden[positions])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            student_logits, _ = wrapped(masked, positions)
        loss = distillation_loss(loss_config, student_logits, teacher_logits.clone(), labels[positions])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def all_positions(step: int) -> None:
        masked, labels, positions = batch(step)
        with torch.inference_mode():
            teacher_logits = teacher(input_ids=masked).logits  # (B, T, V)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            student_logits = student(input_ids=masked).logits  # (B, T, V)
        loss = distillation_loss(
            loss_config, student_logits[positions], teacher_logits[positions].clone(), labels[positions]
        )["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    tokens = args.batch_size * args.seq_length
    print(f"teacher {args.teacher} ({teacher.dtype}), student {args.student}, vocab {vocab:,}, device {device}")
    print(f"batch {args.batch_size} x {args.seq_length} tokens, {args.steps} timed steps after {args.warmup} warm-up")
    results = {}
    for name, step_fn in (("all positions (naive)", all_positions), ("masked positions only", masked_only)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for step in range(args.warmup):
            step_fn(step)
        _synchronize(device)
        started = time.perf_counter()
        for step in range(args.warmup, args.warmup + args.steps):
            step_fn(step)
        _synchronize(device)
        elapsed = time.perf_counter() - started
        results[name] = tokens * args.steps / elapsed
        memory = (
            f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
        )
        per_step = elapsed / args.steps * 1000
        print(f"{name:>24}: {results[name]:,.0f} tokens/s ({per_step:.0f} ms/step){memory}")
    print(f"ratio: {results['masked positions only'] / results['all positions (naive)']:.2f}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
