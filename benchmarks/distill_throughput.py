"""Distillation-step throughput: LM heads at masked positions only vs at every position.

Same teacher, same student shape and initialisation, same batches and masks, in one process. The
masked-only step is monodistill's production step (``distill.train_step``: ``TeacherPass``, then
``StudentRun`` forward, backward and AdamW). The naive step is what a straightforward implementation
does: ``model(...).logits`` gives (B, T, V) for teacher and student, then the same loss is taken at
the masked positions. The last line printed is ``ratio: X.XX`` (masked-only tokens/s / naive tokens/s).

    python benchmarks/distill_throughput.py                      # stand-in teacher from ../shared
    python benchmarks/distill_throughput.py --teacher bert-base-multilingual-cased --device cuda
    python benchmarks/distill_throughput.py --teacher mmbert-small-shaped --batch-size 8 --steps 3 --warmup 1

``mmbert-small-shaped`` is a ModernBERT teacher built in code with mmBERT-small's shape (22 layers, hidden
384, feed-forward 1152, 6 heads, global attention every third layer and a 128-token window in the others,
256,000 tokens; random weights, so nothing is downloaded); its students are ModernBERT too unless
``--student-family bert``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from monodistill.config import DistillConfig, TeacherConfig, load_config
from monodistill.distill.student_run import parameter_groups
from monodistill.losses import kl_divergence, masked_lm_loss
from monodistill.student import build_student
from monodistill.teacher import load_teacher
from production import ProductionStep, random_blocks

DEFAULT_TEACHER = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(DEFAULT_TEACHER / "models" / "mmt-mini"))
    parser.add_argument("--student", default="dbert-tiny", help="student preset")
    parser.add_argument("--student-family", help="student.family (default: the teacher's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--teacher-dtype", default="auto")
    parser.add_argument("--bf16", action="store_true", help="student autocast in bf16")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    total = args.warmup + args.steps
    # A dict, not dotted overrides: YAML would read train.mixed_precision=no as False.
    updates = {
        "teacher": {"name_or_path": args.teacher, "dtype": args.teacher_dtype},
        "student": {"preset": args.student, "family": args.student_family},
        "data": {"max_seq_length": args.seq_length},
        "train": {"batch_size": args.batch_size, "max_steps": total, "mixed_precision": "bf16" if args.bf16 else "no"},
    }
    config = load_config(DistillConfig, updates=updates)
    if args.teacher == MMBERT_SMALL_SHAPED:
        teacher, special_ids, mask_id = mmbert_small_shaped(), [0, 1, 2, 3, 4], 4
    else:
        teacher, tokenizer = load_teacher(TeacherConfig(name_or_path=args.teacher, dtype=args.teacher_dtype))
        special_ids, mask_id = tokenizer.all_special_ids, tokenizer.mask_token_id
    vocab = teacher.config.vocab_size
    blocks = random_blocks(args.batch_size * total, args.seq_length, 1000, vocab)
    masked_only = ProductionStep(
        [config],
        teacher,
        [build_student(config.student, teacher, seed=0)],
        blocks,
        special_ids,
        mask_id,
    )
    device = masked_only.teacher.model.device
    naive_student = build_student(config.student, teacher, seed=0).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(naive_student, 0.01), lr=5e-4, fused=True)

    def all_positions(step: int) -> None:
        for batch in masked_only.stream.step(step):
            with torch.inference_mode():
                teacher_logits = teacher(input_ids=batch.input_ids).logits  # (B, T, V)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                student_logits = naive_student(input_ids=batch.input_ids).logits  # (B, T, V)
            # The production step's loss (the paper's, at the default config), taken at the masked positions.
            student_masked, teacher_masked = student_logits[batch.positions], teacher_logits[batch.positions].clone()
            kl = kl_divergence(student_masked, teacher_masked, config.loss.temperature)
            loss = config.loss.alpha_kl * kl + config.loss.alpha_mlm * masked_lm_loss(student_masked, batch.targets)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(naive_student.parameters(), 1.0)
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
        for step in range(args.warmup, total):
            step_fn(step)
        _synchronize(device)
        elapsed = time.perf_counter() - started
        results[name] = tokens * args.steps / elapsed
        memory = (
            f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
        )
        per_step = elapsed / args.steps * 1000
        print(f"{name:>24}: {results[name]:,.0f} tokens/s ({per_step:.0f} ms/step){memory}")
    masked_only.close()
    print(f"ratio: {results['masked positions only'] / results['all positions (naive)']:.2f}")


MMBERT_SMALL_SHAPED = "mmbert-small-shaped"


def mmbert_small_shaped() -> ModernBertForMaskedLM:
    """A frozen ModernBERT masked LM of mmBERT-small's shape, random weights (float32, eval mode)."""
    config = ModernBertConfig(
        vocab_size=256_000,
        hidden_size=384,
        intermediate_size=1152,
        num_hidden_layers=22,
        num_attention_heads=6,
        local_attention=128,
        max_position_embeddings=8192,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
        cls_token_id=None,
        sep_token_id=None,
    )
    torch.manual_seed(0)
    return ModernBertForMaskedLM(config).eval().requires_grad_(False)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
