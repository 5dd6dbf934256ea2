"""Distillation throughput and MFU: the paper-style Trainer loop vs monodistill, full and trimmed vocabulary.

One run times three loops on the same mBERT-shaped teacher, built in code (BertForMaskedLM: 12
layers, hidden 768, 12 heads, intermediate 3072, 119,547 tokens, 512 positions, random weights; no
Hub needed):

- ``paper``: a ``transformers.Trainer`` subclass whose ``compute_loss`` takes teacher and student
  ``(...).logits`` at every position, KL at T=4 (times T^2) over every non-padding position and the
  MLM cross-entropy, weights 0.5/0.5, trained by ``trainer.train()``;
- ``full``: monodistill's production step (``distill.train_step``), full vocabulary;
- ``trimmed``: the same with the student's vocabulary trimmed to 20,000 tokens (the teacher head is
  restricted to the kept rows).

Each loop is timed for dBERT-Base and dBERT-Tiny, at seq 128 and 512, with SDPA attention, in bf16
(student autocast, teacher weights in bfloat16), with ``torch.compile`` off and on (``train.compile``;
the paper loop compiles teacher and student in place the same way). It prints tokens/s and MFU: model
FLOPs per step from ``monodistill.flops`` (teacher forward, student forward and backward, heads at
the masked positions, or at every position for the paper loop) over the device's bf16 dense peak.
A variant that runs out of GPU memory is reported as OOM and the run goes on.

Goals, for dBERT-Base at seq 128: monodistill (full vocabulary) >= 3x the paper loop's tokens/s, and
>= 45% MFU. The last lines are ``ratio: X.XX`` (monodistill full vocabulary / paper loop, tokens/s,
dBERT-Base at seq 128, compile on when measured) and, when a peak is known, ``mfu_dbert_base: X.X%``.

Without CUDA the defaults shrink to a smoke run on CPU: a 2-layer hidden-128 teacher with the real
vocabulary, batch 4 at seq 64 and 128, fp32, compile off (inductor on a few cores takes minutes),
tokens/s only unless ``--peak-tflops`` is given.

    python benchmarks/gpu_throughput.py                      # on an H100/H200/A100: the full grid
    python benchmarks/gpu_throughput.py --compile off --seq-lengths 128 --students dbert-base
    python benchmarks/gpu_throughput.py --peak-tflops 50     # CPU smoke run, with an MFU column
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from transformers import BertConfig, BertForMaskedLM, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

import production
from monodistill.config import DistillConfig, LossConfig, StudentConfig, load_config
from monodistill.data.masking import mask_tokens
from monodistill.flops import ModelShape, distillation_step_flops, paper_style_step_flops
from monodistill.losses import kl_divergence, masked_lm_loss
from monodistill.student import PRESETS, build_student, resolve_shape

# bf16 dense tensor-core peaks (TFLOP/s) by torch.cuda.get_device_name(). Other cards (H100/H200 NVL,
# GH200, ...) need --peak-tflops rather than a guess.
PEAK_TFLOPS = (
    (r"NVIDIA H100 80GB HBM3|NVIDIA H100 SXM.*", 989.0),
    (r"NVIDIA H200", 989.0),
    (r"NVIDIA H100 PCIe", 756.0),
    (r"NVIDIA A100.*", 312.0),
)
MBERT_SPECIAL_IDS = [0, 100, 101, 102, 103]  # [PAD] [UNK] [CLS] [SEP] [MASK]
MBERT_MASK_ID = 103
LOOPS = {"paper": "paper-style Trainer", "full": "monodistill full", "trimmed": "monodistill trimmed"}
MLM_PROBABILITY = 0.15


def parse_args() -> argparse.Namespace:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=choices(*PRESETS), default="dbert-base,dbert-tiny")
    parser.add_argument("--seq-lengths", type=lengths, default="128,512" if gpu else "64,128")
    parser.add_argument("--loops", type=choices(*LOOPS), default="paper,full,trimmed")
    parser.add_argument("--compile", type=choices("off", "on"), default="off,on" if gpu else "off")
    parser.add_argument("--batch-tokens", type=int, default=8192, help="tokens per batch: 64 x 128, 16 x 512")
    parser.add_argument("--batch-size", type=int, default=None if gpu else 4, help="blocks per batch (overrides)")
    parser.add_argument("--steps", type=int, default=10 if gpu else 4, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=3 if gpu else 2, help="untimed steps (compilation)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16" if gpu else "fp32")
    parser.add_argument("--trimmed-vocab", type=int, default=20_000)
    parser.add_argument("--peak-tflops", type=float, help="device bf16 dense peak; default from the device name")
    parser.add_argument("--teacher-layers", type=int, default=12 if gpu else 2)
    parser.add_argument("--teacher-hidden", type=int, default=768 if gpu else 128)
    parser.add_argument("--teacher-intermediate", type=int, default=3072 if gpu else 512)
    parser.add_argument("--teacher-heads", type=int, default=12 if gpu else 2)
    parser.add_argument("--teacher-vocab", type=int, default=119_547)
    args = parser.parse_args()
    if not len(MBERT_SPECIAL_IDS) < args.trimmed_vocab <= args.teacher_vocab - 1000 + len(MBERT_SPECIAL_IDS):
        parser.error(f"--trimmed-vocab must be in ({len(MBERT_SPECIAL_IDS)}, --teacher-vocab - 995]")
    return args


def choices(*allowed: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of ``allowed`` values."""

    def parse(text: str) -> list[str]:
        values = text.split(",")
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return values

    return parse


def lengths(text: str) -> list[int]:
    """An argparse type: comma-separated sequence lengths within the teacher's 512 positions."""
    values = [int(value) for value in text.split(",") if value.isdigit()]
    if len(values) != len(text.split(",")) or not all(8 <= value <= 512 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: sequence lengths must be integers in [8, 512]")
    return values


@dataclass
class Variant:
    """One timed configuration: a row of the table."""

    student: str
    seq_length: int
    batch_size: int
    compile: bool
    loop: str


def device_peak(args: argparse.Namespace) -> float | None:
    """The peak in TFLOP/s: the flag, else the table on GPU; None on CPU without the flag."""
    if args.peak_tflops is not None or not torch.cuda.is_available():
        return args.peak_tflops
    name = torch.cuda.get_device_name()
    for pattern, peak in PEAK_TFLOPS:
        if re.fullmatch(pattern, name):
            return peak
    sys.exit(f"gpu_throughput: error: no peak for device {name!r}; pass --peak-tflops")


def build_teacher(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> BertForMaskedLM:
    """An mBERT-shaped masked LM with random weights, frozen, as ``load_teacher`` leaves it."""
    config = BertConfig(
        vocab_size=args.teacher_vocab,
        hidden_size=args.teacher_hidden,
        num_hidden_layers=args.teacher_layers,
        num_attention_heads=args.teacher_heads,
        intermediate_size=args.teacher_intermediate,
        max_position_embeddings=512,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    with device:
        teacher = BertForMaskedLM(config)
    return teacher.to(dtype).eval().requires_grad_(False)


def trimmed_vocab_ids(args: argparse.Namespace) -> torch.Tensor:
    """Student id -> teacher id: the special tokens first (student ids 0-4), then a seeded sample."""
    generator = torch.Generator().manual_seed(0)
    others = 1000 + torch.randperm(args.teacher_vocab - 1000, generator=generator)[: args.trimmed_vocab - 5]
    return torch.cat([torch.tensor(MBERT_SPECIAL_IDS), others.sort().values])


def random_blocks(count: int, seq_length: int, low: int, high: int) -> datasets.Dataset:
    """Blocks of random ids without special tokens: speed does not depend on which tokens they are."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(low, high, (count, seq_length), generator=generator)
    return datasets.Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")


# --------------------------------------------------------------------------------- the paper loop


class PaperStyleTrainer(Trainer):
    """The straightforward loop: full logits of teacher and student, KL at every non-padding position."""

    def __init__(self, *args: Any, teacher: torch.nn.Module, loss_config: LossConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        self.loss_config = loss_config

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        labels = inputs.pop("labels")  # (B, T), -100 where not masked
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits  # (B, T, V)
        outputs = model(**inputs)
        keep = inputs["attention_mask"].bool()  # (B, T): every non-padding position
        # monodistill's loss at this config (the paper's, KL and MLM); only where the heads run differs.
        student_logits, config = outputs.logits[keep], self.loss_config  # (M, V)
        kl = kl_divergence(student_logits, teacher_logits[keep], config.temperature)
        loss = config.alpha_kl * kl + config.alpha_mlm * masked_lm_loss(student_logits, labels[keep])
        return (loss, outputs) if return_outputs else loss


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step after ``warmup``, synchronised with the device."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.last = 0.0
        self.seconds: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize()
        now = time.perf_counter()
        if state.global_step > self.warmup:
            self.seconds.append(now - self.last)
        self.last = now


def time_paper_loop(args: argparse.Namespace, variant: Variant, teacher: BertForMaskedLM) -> list[float]:
    """Seconds of each of ``args.steps`` steps of ``trainer.train()``, after ``args.warmup`` steps."""
    student = build_student(StudentConfig(preset=variant.student), teacher)
    if variant.compile:
        teacher.compile()
        student.compile()
    total = args.warmup + args.steps
    rows = random_blocks(variant.batch_size * total, variant.seq_length, 1000, args.teacher_vocab)
    generator = torch.Generator().manual_seed(0)
    special = torch.tensor(MBERT_SPECIAL_IDS)

    def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        # Masked on the CPU in the collator, as DataCollatorForLanguageModeling does.
        ids = torch.stack([example["input_ids"] for example in examples])
        masked, labels = mask_tokens(
            ids, torch.isin(ids, special), MBERT_MASK_ID, args.teacher_vocab, MLM_PROBABILITY, generator
        )
        return {"input_ids": masked, "attention_mask": torch.ones_like(masked), "labels": labels}

    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=variant.batch_size,
            max_steps=total,
            learning_rate=5e-4,
            weight_decay=0.01,
            max_grad_norm=1.0,
            optim="adamw_torch_fused",
            bf16=args.precision == "bf16",
            use_cpu=not torch.cuda.is_available(),
            logging_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_drop_last=True,
            seed=0,
        )
        trainer = PaperStyleTrainer(
            model=student,
            args=training_args,
            train_dataset=rows,
            data_collator=collate,
            callbacks=[timer],
            teacher=teacher,
            loss_config=LossConfig(),
        )
        trainer.remove_callback(PrinterCallback)  # it would print the run's summary dict
        trainer.train()
    return timer.seconds


# ----------------------------------------------------------------------------------- monodistill


def time_distiller(args: argparse.Namespace, variant: Variant, teacher: BertForMaskedLM) -> list[float]:
    """Seconds of each of ``args.steps`` production steps (``distill.train_step``), after ``args.warmup``."""
    total = args.warmup + args.steps
    # A dict, not dotted overrides: YAML would read train.mixed_precision=no as False.
    updates = {
        "student": {"preset": variant.student},
        "data": {"max_seq_length": variant.seq_length, "mlm_probability": MLM_PROBABILITY},
        "train": {
            "batch_size": variant.batch_size,
            "max_steps": total,
            "mixed_precision": "bf16" if args.precision == "bf16" else "no",
            "compile": variant.compile,
        },
    }
    config = load_config(DistillConfig, updates=updates)
    if variant.loop == "trimmed":
        vocab_ids: torch.Tensor | None = trimmed_vocab_ids(args)
        special_ids, mask_id, low = list(range(len(MBERT_SPECIAL_IDS))), MBERT_SPECIAL_IDS.index(MBERT_MASK_ID), 5
    else:
        vocab_ids, special_ids, mask_id, low = None, MBERT_SPECIAL_IDS, MBERT_MASK_ID, 1000
    student = build_student(config.student, teacher, vocab_ids)
    blocks = production.random_blocks(variant.batch_size * total, variant.seq_length, low, student.config.vocab_size)
    step = production.ProductionStep([config], teacher, [student], blocks, special_ids, mask_id, vocab_ids)
    seconds = []
    for index in range(total):
        started = time.perf_counter()
        step(index)  # synchronises: it reads the loss parts as floats
        synchronize()
        if index >= args.warmup:
            seconds.append(time.perf_counter() - started)
    step.close()
    return seconds


# ------------------------------------------------------------------------------------------ main


def step_flops(args: argparse.Namespace, variant: Variant, teacher_shape: ModelShape) -> int:
    """Model FLOPs of one step; the masked count is its expectation (random ids hold no special tokens)."""
    shape = resolve_shape(StudentConfig(preset=variant.student))
    student_shape = ModelShape(shape.num_layers, shape.hidden_size, shape.intermediate_size)
    batch, length = variant.batch_size, variant.seq_length
    if variant.loop == "paper":
        return paper_style_step_flops(
            teacher_shape, student_shape, batch, length, args.teacher_vocab, args.teacher_vocab
        )
    vocab = args.trimmed_vocab if variant.loop == "trimmed" else args.teacher_vocab
    masked = round(MLM_PROBABILITY * batch * length)
    return distillation_step_flops(teacher_shape, student_shape, batch, length, masked, vocab, vocab)


def run_variant(args: argparse.Namespace, variant: Variant) -> float:
    """Build a fresh teacher (compiling modifies it in place) and time one loop; returns seconds per step.

    The median step: robust to a step slowed by other work on a shared machine.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    teacher = build_teacher(args, device, dtype)
    timer = time_paper_loop if variant.loop == "paper" else time_distiller
    return statistics.median(timer(args, variant, teacher))


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def release_memory() -> None:
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    args = parse_args()
    peak = device_peak(args)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    teacher_shape = ModelShape(args.teacher_layers, args.teacher_hidden, args.teacher_intermediate)
    variants = [
        Variant(student, length, args.batch_size or max(1, args.batch_tokens // length), compile == "on", loop)
        for compile in args.compile
        for student in args.students
        for length in args.seq_lengths
        for loop in args.loops
    ]
    print(
        f"device {device_name}, torch {torch.__version__}, {args.precision}, SDPA, peak "
        + (f"{peak:.0f} TFLOP/s" if peak else "unknown (no MFU)")
    )
    print(
        f"teacher {args.teacher_layers}L/{args.teacher_hidden}H/{args.teacher_intermediate}I, vocab "
        f"{args.teacher_vocab:,}; trimmed vocab {args.trimmed_vocab:,}; "
        f"median of {args.steps} steps after {args.warmup}"
    )
    print(f"{'student':<11}{'seq':>5}{'batch':>6}  {'compile':<8}{'loop':<21}{'tokens/s':>10}{'ms/step':>9}", end="")
    print(f"{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}", flush=True)
    tokens_per_second: dict[tuple[str, int, bool, str], float] = {}
    mfu: dict[tuple[str, int, bool, str], float] = {}
    for variant in variants:
        label = f"{variant.student:<11}{variant.seq_length:>5}{variant.batch_size:>6}  "
        label += f"{'on' if variant.compile else 'off':<8}{LOOPS[variant.loop]:<21}"
        out_of_memory = False
        try:
            seconds = run_variant(args, variant)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True
        memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        release_memory()
        if out_of_memory:
            print(f"{label}{'OOM':>10}", flush=True)
            continue
        key = (variant.student, variant.seq_length, variant.compile, variant.loop)
        tokens_per_second[key] = variant.batch_size * variant.seq_length / seconds
        tflops = step_flops(args, variant, teacher_shape) / seconds / 1e12
        mfu_text = "-"
        if peak:
            mfu[key] = tflops / peak
            mfu_text = f"{100 * mfu[key]:.1f}%"
        memory_text = f"{memory:.1f}" if memory is not None else "-"
        print(
            f"{label}{tokens_per_second[key]:>10,.0f}{1000 * seconds:>9.0f}{tflops:>9.3g}"
            f"{mfu_text:>7}{memory_text:>10}",
            flush=True,
        )
    report_headline(tokens_per_second, mfu)


def report_headline(
    tokens_per_second: dict[tuple[str, int, bool, str], float], mfu: dict[tuple[str, int, bool, str], float]
) -> None:
    """The goals' figures, for dBERT-Base at seq 128: compile on when measured, else off."""
    for compiled in (True, False):
        full, paper = ("dbert-base", 128, compiled, "full"), ("dbert-base", 128, compiled, "paper")
        if full in tokens_per_second:
            print(
                f"headline: dbert-base, seq 128, compile {'on' if compiled else 'off'} (goals: ratio >= 3, MFU >= 45%)"
            )
            if paper in tokens_per_second:
                print(f"ratio: {tokens_per_second[full] / tokens_per_second[paper]:.2f}")
            if full in mfu:
                print(f"mfu_dbert_base: {100 * mfu[full]:.1f}%")
            return
    print("headline: dbert-base at seq 128 (monodistill full vocabulary) was not measured")


if __name__ == "__main__":
    main()
