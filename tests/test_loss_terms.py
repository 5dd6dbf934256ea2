"""The loss terms' contract: which terms a config makes, what they read, and each part as a share of the step mean."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertForMaskedLM

from monodistill.checkpoint import read_metrics
from monodistill.cli import main
from monodistill.config import LossConfig
from monodistill.data.batches import MaskedBatch
from monodistill.distill import StudentWithHead
from monodistill.losses import (
    HiddenMSE,
    LogitKL,
    LossTerm,
    ModelOutputs,
    ModelSizes,
    Needs,
    build_terms,
    hidden_mse,
    needs_of,
    step_count,
)

from .test_distill import args

# Both models 8 wide with 2 heads (the cosine and attention terms need equal widths and heads); 2 and 4 layers.
SIZES = ModelSizes(student_layers=2, teacher_layers=4, student_heads=2, teacher_heads=2)
WIDTH, VOCAB, LENGTH = 8, 13, 6
EVERY_TERM = {"alpha_cosine": 0.3, "alpha_relation": 0.7, "alpha_hidden": 1.1, "alpha_attention": 5.0}

weights = st.sampled_from([0.0, 0.5])


@settings(max_examples=60, deadline=None)
@given(
    alphas=st.tuples(*[weights] * len(LossConfig.WEIGHTS)).filter(any),
    logit_loss=st.sampled_from(["kl", "mse"]),
)
def test_the_terms_of_a_config_are_the_parts_it_trains_and_the_mlm_it_logs(
    alphas: tuple[float, ...], logit_loss: str
) -> None:
    config = LossConfig(**dict(zip(LossConfig.WEIGHTS, alphas, strict=True)), logit_loss=logit_loss)
    terms = build_terms(config, SIZES)
    assert tuple(term.name for term in terms if term.weight > 0) == config.trained_parts()
    assert [term.name for term in terms if term.weight == 0] == ([] if config.alpha_mlm > 0 else ["mlm"])
    assert {term.weight for term in terms} <= {0.0, 0.5}


def test_the_needs_of_terms_are_what_each_reads_and_nothing_more() -> None:
    alone = build_terms(LossConfig(alpha_kl=0, alpha_mlm=1), SIZES)
    assert needs_of(alone) == Needs() and not needs_of(alone).teacher  # masked-LM alone: the teacher never runs
    terms = build_terms(LossConfig(**EVERY_TERM, hidden_layers="2:3,0:0"), SIZES)
    assert needs_of(terms) == Needs(
        teacher_hidden=frozenset({0, 3, 4}),  # the map's, and the last for the cosine
        student_hidden=frozenset({0, 2}),
        teacher_projections=frozenset({3, 4}),  # the attention map's, and the relations' last layer
        student_projections=frozenset({2}),
        teacher_logits=True,
        projected_hidden=(2, 0),  # in the map's order, which the projections are initialised in
    )
    for term in terms:
        assert needs_of([term]) | needs_of(terms) == needs_of(terms)


def outputs(seed: int, blocks: int, targets: int, layers: int) -> ModelOutputs:
    """Random outputs of a model with ``layers`` layers for ``blocks`` blocks with ``targets`` masked positions."""
    generator = torch.Generator().manual_seed(seed)
    return ModelOutputs(
        torch.randn(targets, VOCAB, generator=generator) * 3,
        {layer: torch.randn(blocks, LENGTH, WIDTH, generator=generator) for layer in range(layers + 1)},
        {
            layer: [torch.randn(blocks, LENGTH, WIDTH, generator=generator) for _ in range(3)]
            for layer in range(1, layers + 1)
        },
    )


def blocks_of(model: ModelOutputs, positions: torch.Tensor, start: int, end: int) -> ModelOutputs:
    """``model``'s outputs for blocks ``start`` to ``end`` (their masked positions' logits come in block order)."""
    first, last = int(positions[:start].sum()), int(positions[:end].sum())
    return ModelOutputs(
        model.logits[first:last],
        {layer: states[start:end] for layer, states in model.hidden.items()},
        {layer: [states[start:end] for states in qkv] for layer, qkv in model.projections.items()},
    )


def part(term: LossTerm, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
    """What the training step logs and weighs for ``term`` (``StudentRun.train_micro``)."""
    return term.sum(student, teacher, batch) / step_count(batch, term.count)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(1, 4), min_size=0, max_size=3, unique=True),
    logit_loss=st.sampled_from(["kl", "mse"]),
)
def test_parts_of_the_micro_batches_of_a_step_add_up_to_the_parts_of_the_whole_step(
    seed: int, cuts: list[int], logit_loss: str
) -> None:
    """A step of 5 blocks with unequal masked counts, cut into micro-batches (or ranks) anywhere: every term's
    parts add up to its part of the step as one batch, which is the mean over the step's targets, positions or
    blocks. Accumulation and data parallelism weight tokens, not micro-batches."""
    blocks = 5
    positions = torch.rand(blocks, LENGTH, generator=torch.Generator().manual_seed(seed)) < 0.4
    positions[0, 0] = True
    ids = torch.randint(0, VOCAB, (blocks, LENGTH), generator=torch.Generator().manual_seed(seed + 1))
    targets = int(positions.sum())
    student, teacher = outputs(seed, blocks, targets, 2), outputs(seed + 2, blocks, targets, 4)
    terms = build_terms(LossConfig(**EVERY_TERM, logit_loss=logit_loss), SIZES)
    assert len(terms) == 6  # every term, with the logit one that the config chooses

    def batch(start: int, end: int) -> MaskedBatch:
        return MaskedBatch(ids[start:end], positions[start:end], ids[start:end][positions[start:end]], targets, blocks)

    bounds = [0, *sorted(cuts), blocks]
    for term in terms:
        whole = part(term, student, teacher, batch(0, blocks))
        pieces = [
            part(term, blocks_of(student, positions, a, b), blocks_of(teacher, positions, a, b), batch(a, b))
            for a, b in itertools.pairwise(bounds)
        ]
        assert torch.isclose(torch.stack(pieces).sum(), whole, rtol=1e-5, atol=1e-6), term.name


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_the_published_terms_are_the_bits_of_the_means_they_replaced(temperature: float) -> None:
    """The KL part at the published temperatures (T^2 a power of two) is the mean of ``kl_divergence`` to the bit,
    and the hidden part over a power-of-two number of blocks the mean over layer pairs of each pair's mean: where
    the parts were means before the terms were objects, the students are the same."""
    blocks, targets = 4, 7
    student, teacher = outputs(0, blocks, targets, 2), outputs(1, blocks, targets, 4)
    positions = torch.zeros(blocks, LENGTH, dtype=torch.bool)
    positions.view(-1)[:targets] = True
    batch = MaskedBatch(torch.zeros(blocks, LENGTH, dtype=torch.long), positions, torch.zeros(targets), targets, blocks)
    log_probs = [F.log_softmax(model.logits / temperature, dim=-1) for model in (student, teacher)]
    kl_before = F.kl_div(*log_probs, log_target=True, reduction="sum") / targets * temperature**2
    assert torch.equal(part(LogitKL(1.0, temperature), student, teacher, batch), kl_before)
    hidden = HiddenMSE(1.0, ((0, 0), (1, 2), (2, 4)))
    pairs_before = [hidden_mse(student.hidden[s], teacher.hidden[t], "sum") / blocks for s, t in hidden.layers]
    assert torch.equal(part(hidden, student, teacher, batch), torch.stack(pairs_before).mean())


@pytest.mark.parametrize(("width", "projected"), [(16, ["2", "0", "1"]), (32, [])])
def test_the_student_projects_to_the_teachers_width_the_layers_its_terms_read_so(
    width: int, projected: list[str]
) -> None:
    shape = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 2 * width}
    student = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=width, **shape))
    config = LossConfig(alpha_hidden=1, alpha_cosine=1, hidden_layers="2:4,0:0,1:2")
    wrapped = StudentWithHead(student, needs_of(build_terms(config, SIZES)), teacher_width=32)
    assert list(wrapped.projections) == projected  # none where the widths are equal; in the map's order
    ids, positions = torch.randint(0, VOCAB, (2, LENGTH)), torch.ones(2, LENGTH, dtype=torch.bool)
    scored, hidden, projections = wrapped(ids, positions)
    assert wrapped.head.logits(scored).shape == (2 * LENGTH, VOCAB) and projections == {}
    assert set(hidden) == {0, 1, 2} and all(states.shape == (2, LENGTH, 32) for states in hidden.values())


def test_the_logged_loss_is_the_weighted_sum_of_the_logged_parts(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """The one formula of the step, read back from the log: loss = sum of weight x part, with every part logged."""
    weighed = {"kl": 0.5, "mlm": 0.25, "relation": 0.7, "hidden": 1.1, "attention": 30.0}
    extra = [
        "loss.alpha_mlm=0.25",
        "loss.alpha_relation=0.7",
        "loss.alpha_hidden=1.1",
        "loss.alpha_attention=30",
        "student.num_heads=4",  # the teacher's, for the attention term
        "train.gradient_accumulation_steps=2",
        "train.batch_size=2",
    ]
    assert main([*args(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir, 4), *extra]) == 0
    train = [record for record in read_metrics(tmp_path / "run") if record["split"] == "train"]
    assert [record["step"] for record in train] == [2, 4]
    for record in train:
        assert set(weighed) < set(record)
        expected = sum(weight * record[name] for name, weight in weighed.items())
        assert record["loss"] == pytest.approx(expected, rel=1e-5)
