"""Distillation with a trimmed student vocabulary: mapped teacher ids, sliced head, renormalised KL."""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from monodistill.checkpoint import read_metrics
from monodistill.config import DistillConfig, load_config
from monodistill.data.batches import BatchStream, MaskedBatch, Masking
from monodistill.data.blocks import Blocks
from monodistill.distill import StudentRun, TeacherPass, fit
from monodistill.losses import Needs
from monodistill.student import build_student

from .conftest import build_tiny_teacher


def make_run(
    tokenizer: PreTrainedTokenizerFast, run_dir: Path
) -> tuple[TeacherPass, BatchStream, StudentRun, torch.Tensor]:
    """A trimmed-vocabulary distillation on 24 random blocks: the teacher, the batch stream, the student run."""
    teacher = build_tiny_teacher("bert", len(tokenizer), tokenizer.pad_token_id).eval().requires_grad_(False)
    # Keep the five special tokens (same ids) and every third ordinary token.
    kept = torch.tensor([0, 1, 2, 3, 4, *range(5, len(tokenizer), 3)])
    config: DistillConfig = load_config(
        DistillConfig,
        overrides=[
            "student.preset=custom",
            "student.num_layers=1",
            "student.hidden_size=16",
            "student.intermediate_size=32",
            "student.num_heads=2",
            "train.batch_size=4",
            "train.max_steps=4",
            "train.eval_interval=2",
            "train.save_interval=4",
            "data.max_seq_length=24",
        ],
    )
    student = build_student(config.student, teacher, kept)
    ids = torch.randint(5, len(kept), (24, 24), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows = datasets.Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    blocks = Blocks(rows.select(range(16)), rows.select(range(16, 24)), cache_path=run_dir, corpus_digest="")
    masking = Masking(torch.tensor(tokenizer.all_special_ids), tokenizer.mask_token_id, len(kept), 0.15)
    stream = BatchStream(blocks, masking, config.train)
    run = StudentRun(config, run_dir, student, stream.total_steps(config.train), stream.global_batch, {})
    return TeacherPass(teacher, kept, torch.device("cpu")), stream, run, kept


def test_teacher_scores_only_kept_rows_at_mapped_ids(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    teacher, _, _, kept = make_run(tiny_tokenizer, tmp_path)
    student_ids = torch.randint(5, len(kept), (2, 24), generator=torch.Generator().manual_seed(1))
    positions = torch.rand(2, 24, generator=torch.Generator().manual_seed(2)) < 0.3
    batch = MaskedBatch(student_ids, positions, student_ids[positions], int(positions.sum()), 2)
    outputs = teacher(batch, Needs(), outside_mass=True)
    with torch.inference_mode():
        full = teacher.model(input_ids=kept[student_ids]).logits[positions]  # (N, V_teacher)
    assert outputs.logits.shape == (int(positions.sum()), len(kept))
    assert torch.allclose(outputs.logits, full[:, kept], atol=1e-5)
    # Softmax over the kept columns is the teacher renormalised over the kept vocabulary.
    renormalised = F.softmax(full, -1)[:, kept]
    outside = 1 - renormalised.sum(-1)
    renormalised = renormalised / renormalised.sum(-1, keepdim=True)
    assert torch.allclose(F.softmax(outputs.logits, -1), renormalised, atol=1e-5)
    assert outputs.outside_mass is not None and torch.allclose(outputs.outside_mass, outside, atol=1e-5)
    assert outputs.hidden == {}  # nothing that no loss asked for


def test_trimmed_run_logs_the_teacher_mass_outside_the_kept_vocabulary(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    teacher, stream, run, kept = make_run(tiny_tokenizer, tmp_path)
    assert run.unwrapped_student().config.vocab_size == len(kept)
    fit(teacher, stream, [run])
    assert run.final_metrics is not None
    outside = run.final_metrics["teacher_mass_outside_vocab"]
    # A random teacher spreads its mass nearly uniformly: about the share of dropped rows is outside.
    dropped_share = 1 - len(kept) / len(tiny_tokenizer)
    assert abs(outside - dropped_share) < 0.1
    records = [r for r in read_metrics(tmp_path) if r["split"] == "validation"]
    assert [r["step"] for r in records] == [2, 4]
    assert all("teacher_mass_outside_vocab" in r for r in records)
