"""The causal distillation step against the naive loop of the field: tokens/s and peak memory, one process each.

Naive (TRL's GKD and DistillKit's online mode): ``model(...).logits`` of teacher and student at every position,
(B, T, V) each over the full vocabulary, and the KL and cross-entropy in one piece. monodistill's production
step (``distill.train_step``: ``TeacherPass``, then ``StudentRun``'s forward, chunked logit terms, backward and
AdamW) on the same models and batches, untrimmed and with a trimmed vocabulary (the teacher's head sliced to the
kept rows, a student of that vocabulary). Each variant runs in a fresh process, which reports its tokens/s and its
peak resident memory (``ru_maxrss``), and that peak minus what it held before its first step (the models
loaded): the step's own memory (activations, logits, gradients, optimizer state), which the ratios compare.

    python benchmarks/causal_throughput.py                                   # clm-mini (32k tokens), CPU
    python benchmarks/causal_throughput.py --teacher qwen2.5-0.5b-shaped --steps 2 --warmup 1 --batch-size 4
    python benchmarks/causal_throughput.py --device cuda --teacher qwen2.5-0.5b-shaped   # GPU: peak allocated

``qwen2.5-0.5b-shaped`` is a Qwen2 decoder built in code with Qwen2.5-0.5B's shape (24 layers, hidden 896, 14
query and 2 key-value heads, feed-forward 4864, 151,936 tokens, tied embeddings; random weights: nothing is
downloaded). The trimmed vocabulary keeps ``--kept`` ids (default 8,495: what `monodistill vocab` keeps of
clm-mini's 32,000 for the Tagalog corpus); speed and memory do not depend on which ids.
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
from transformers import PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from monodistill.config import DistillConfig, TeacherConfig, load_config
from monodistill.distill.student_run import parameter_groups
from monodistill.losses import kl_divergence, masked_lm_loss
from monodistill.student import build_student
from monodistill.teacher import load_teacher
from production import ProductionStep, random_blocks

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
QWEN_SHAPED = "qwen2.5-0.5b-shaped"
VARIANTS = ("naive", "monodistill", "monodistill-trimmed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "clm-mini"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--kept", type=int, default=8495, help="the trimmed vocabulary's size")
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--student-hidden", type=int, default=128)
    parser.add_argument("--logit-chunk", type=int, help="train.logit_chunk (default: unset, 2^26 logits at once)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child process's variant
    return parser.parse_args()


def qwen_shaped() -> PreTrainedModel:
    """A frozen Qwen2 decoder of Qwen2.5-0.5B's shape, random weights (float32, eval mode)."""
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval().requires_grad_(False)


def run_variant(args: argparse.Namespace) -> dict[str, float]:
    """One variant, in this process: tokens/s over the timed steps and the step's extra peak memory in MiB."""
    teacher = qwen_shaped() if args.teacher == QWEN_SHAPED else load_teacher(TeacherConfig(args.teacher))[0]
    total = args.warmup + args.steps
    # As many query heads as the teacher has per key-value head (a student keeps that ratio), one key-value head.
    heads = teacher.config.num_attention_heads // getattr(teacher.config, "num_key_value_heads", 1)
    hidden = -(-args.student_hidden // (2 * heads)) * 2 * heads  # heads of an even width (rotary positions)
    student = {
        "preset": "custom",
        "num_layers": args.student_layers,
        "hidden_size": hidden,
        "intermediate_size": 3 * hidden,
        "num_heads": heads,
    }
    updates = {
        "student": student,
        "data": {"max_seq_length": args.seq_length},
        "train": {"batch_size": args.batch_size, "max_steps": total, "logit_chunk": args.logit_chunk},
    }
    config = load_config(DistillConfig, updates=updates)
    vocab = teacher.config.vocab_size
    vocab_ids = torch.arange(args.kept) if args.variant == "monodistill-trimmed" else None
    blocks = random_blocks(args.batch_size * total, args.seq_length, 0, args.kept if vocab_ids is not None else vocab)
    model = build_student(config.student, teacher, vocab_ids=vocab_ids, seed=0)
    production = ProductionStep([config], teacher, [model], blocks, [], None, vocab_ids)
    step_fn = production if args.variant != "naive" else naive_step(config, teacher, model, production)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB): models loaded
    for step in range(args.warmup):
        step_fn(step)
    started = time.perf_counter()
    for step in range(args.warmup, total):
        step_fn(step)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    production.close()
    return {
        "tokens_per_s": args.batch_size * args.seq_length * args.steps / elapsed,
        "peak_mib": peak,
        "held_mib": before,
    }


def naive_step(config: DistillConfig, teacher: PreTrainedModel, student: PreTrainedModel, production: ProductionStep):  # type: ignore[no-untyped-def]
    """The field's loop: both models' (B, T, V) logits, KL and cross-entropy over every position in one piece."""
    optimizer = torch.optim.AdamW(parameter_groups(student, 0.01), lr=5e-4, fused=True)
    loss_config = config.loss

    def step(number: int) -> None:
        for batch in production.stream.step(number):
            with torch.inference_mode():
                teacher_logits = teacher(input_ids=batch.input_ids).logits[:, :-1].clone()  # (B, T - 1, V)
            student_logits = student(input_ids=batch.input_ids).logits[:, :-1]
            kl = kl_divergence(student_logits.flatten(0, 1), teacher_logits.flatten(0, 1), loss_config.temperature)
            ce = masked_lm_loss(student_logits.flatten(0, 1), batch.input_ids[:, 1:].flatten())
            (loss_config.alpha_kl * kl + loss_config.alpha_mlm * ce).backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_memory(result: dict[str, float]) -> float:
    """MiB the steps added to the process's peak over the models it had loaded."""
    return result["peak_mib"] - result["held_mib"]


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    print(
        f"teacher {args.teacher}, student {args.student_layers} layers x {args.student_hidden}, batch "
        f"{args.batch_size} x {args.seq_length}, {args.steps} timed steps after {args.warmup}, logit_chunk "
        f"{args.logit_chunk}, trimmed to {args.kept:,} ids; torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    results = {}
    for variant in VARIANTS:
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--variant", variant], capture_output=True, text=True, check=True
        )
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
        result = results[variant]
        print(
            f"{variant:>20}: {result['tokens_per_s']:,.0f} tokens/s, peak {result['peak_mib']:,.0f} MiB "
            f"({step_memory(result):+,.0f} MiB over the models it loaded: the step's own)"
        )
    naive = results["naive"]
    for variant in VARIANTS[1:]:
        result = results[variant]
        print(
            f"ratio {variant}: {result['tokens_per_s'] / naive['tokens_per_s']:.2f}x tokens/s, "
            f"{step_memory(result) / max(step_memory(naive), 1.0):.2f}x the step's memory, "
            f"{result['peak_mib'] / naive['peak_mib']:.2f}x the process's peak"
        )


if __name__ == "__main__":
    main()
