"""The FLOP formula against torch's FlopCounterMode on one real distillation step of tiny models."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import DebertaV2Config, DistilBertConfig

from monodistill.config import LossConfig, StudentConfig
from monodistill.data.masking import IGNORE_INDEX, mask_tokens
from monodistill.distill import StudentWithHead
from monodistill.flops import ModelShape, distillation_step_flops, encoder_forward_flops, paper_style_step_flops
from monodistill.losses import kl_divergence, masked_lm_loss
from monodistill.student import build_student
from monodistill.teacher import encoder, mlm_head

from .conftest import build_tiny_teacher

VOCAB, BATCH, SEQ = 300, 3, 24
MASK_ID = 4


def cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# The formula matches eager attention exactly. torch registers FLOP formulas for the CUDA attention
# kernels only: on CPU, SDPA without dropout (the teacher in eval mode) runs a fused kernel that the
# counter would count as 0; given torch's own SDPA formula it counts the same 4 T H per token as
# eager. The student trains with attention dropout, which SDPA on CPU runs as plain bmm calls. (On
# GPU the counter charges a FlashAttention backward 5 matmuls, 2.5x its forward: it recomputes the
# scores. The formula counts model FLOPs, 2x, as MFU does.)
CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}


def tiny_pair(attention: str) -> tuple[Any, Any]:
    """A 4-layer hidden-32 teacher and a 2-layer hidden-16 student (train mode, dropout on)."""
    teacher = build_tiny_teacher("bert", VOCAB, 0)
    teacher.set_attn_implementation(attention)
    teacher.eval().requires_grad_(False)
    shape = StudentConfig(preset="custom", num_layers=2, hidden_size=16, intermediate_size=48, num_heads=4)
    student = build_student(shape, teacher)
    assert student.config._attn_implementation == attention
    return teacher, student


def masked_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    masked, labels = mask_tokens(ids, torch.zeros_like(ids, dtype=torch.bool), MASK_ID, VOCAB, 0.15, generator)
    return masked, labels, labels != IGNORE_INDEX


def paper_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's loss, 0.5 T^2 KL + 0.5 MLM (``LossConfig``'s defaults): the losses add no matmul, the heads do."""
    config = LossConfig()
    kl = kl_divergence(student_logits, teacher_logits, config.temperature)
    return config.alpha_kl * kl + config.alpha_mlm * masked_lm_loss(student_logits, labels)


def shapes(teacher: Any, student: Any) -> tuple[ModelShape, ModelShape]:
    return ModelShape.from_config(teacher.config), ModelShape.from_config(student.config)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_masked_only_step_matches_flop_counter(attention: str) -> None:
    teacher, student = tiny_pair(attention)
    masked, labels, positions = masked_batch()
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        with torch.inference_mode():
            hidden = encoder(teacher)(input_ids=masked).last_hidden_state  # (B, T, H)
            teacher_logits = mlm_head(teacher).logits(hidden[positions])  # (N, V)
        wrapped = StudentWithHead(student)
        student_logits = wrapped.head.logits(wrapped(masked, positions)[0])  # (N, V) from the (N, H) scored states
        paper_loss(student_logits, teacher_logits.clone(), labels[positions]).backward()
    expected = distillation_step_flops(*shapes(teacher, student), BATCH, SEQ, int(positions.sum()), VOCAB, VOCAB)
    assert counter.get_total_flops() == expected


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_paper_style_step_matches_flop_counter(attention: str) -> None:
    teacher, student = tiny_pair(attention)
    masked, labels, _ = masked_batch()
    every = torch.ones_like(masked, dtype=torch.bool)
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        with torch.inference_mode():
            teacher_logits = teacher(input_ids=masked).logits  # (B, T, V)
        student_logits = student(input_ids=masked).logits  # (B, T, V)
        # Cross-entropy with ignored labels adds no matmul either.
        paper_loss(student_logits[every], teacher_logits[every].clone(), labels[every]).backward()
    expected = paper_style_step_flops(*shapes(teacher, student), BATCH, SEQ, VOCAB, VOCAB)
    assert counter.get_total_flops() == expected


def test_sdpa_on_cpu_without_the_formula_misses_only_the_attention() -> None:
    # Why the custom mapping above is needed, and that attention is the only part it changes.
    teacher, _ = tiny_pair("sdpa")
    masked, _, _ = masked_batch()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        encoder(teacher)(input_ids=masked)
    shape = ModelShape.from_config(teacher.config)
    attention = shape.num_layers * BATCH * SEQ * 4 * SEQ * shape.hidden_size
    assert counter.get_total_flops() == encoder_forward_flops(shape, BATCH, SEQ) - attention


def test_formula_by_hand_for_mbert_and_dbert_base() -> None:
    mbert, dbert_base = ModelShape(12, 768, 3072), ModelShape(6, 768, 3072)
    per_token_layer = 8 * 768**2 + 4 * 768 * 3072 + 4 * 128 * 768
    head = 2 * 768**2 + 2 * 768 * 119_547
    tokens, masked = 64 * 128, 1229
    expected = 12 * tokens * per_token_layer + masked * head + 3 * (6 * tokens * per_token_layer + masked * head)
    assert distillation_step_flops(mbert, dbert_base, 64, 128, masked, 119_547, 119_547) == expected
    paper = paper_style_step_flops(mbert, dbert_base, 64, 128, 119_547, 119_547)
    assert paper == expected + 4 * (tokens - masked) * head


def test_model_shape_reads_each_family() -> None:
    assert ModelShape.from_config(DistilBertConfig(n_layers=3, dim=48, hidden_dim=96, n_heads=4)) == ModelShape(
        3, 48, 96
    )
    deberta = DebertaV2Config(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4)
    assert ModelShape.from_config(deberta) == ModelShape(2, 32, 64)
