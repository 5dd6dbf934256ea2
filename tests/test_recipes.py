"""The field's loss terms: relation (MiniLMv2), hidden and attention MSE (TinyBERT), logit MSE; composable,
read from every family's own modules, computed only where some student asks for them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from monodistill.checkpoint import read_metrics
from monodistill.cli import main
from monodistill.config import LossConfig
from monodistill.data.batches import MaskedBatch
from monodistill.distill import StudentWithHead, TeacherPass
from monodistill.internals import capture_projections, num_layers
from monodistill.losses import (
    ModelOutputs,
    Needs,
    Objective,
    attention_mse,
    attention_probabilities,
    default_layer_map,
    hidden_mse,
    logit_mse,
    relation_loss,
)
from monodistill.teacher import SUPPORTED_FAMILIES

from .conftest import build_tiny_teacher
from .test_distill import args

seeds = st.integers(min_value=0, max_value=10_000)


def states(seed: int, batch: int = 2, length: int = 7, width: int = 12) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, length, width, generator=generator) for _ in range(3)]


@settings(max_examples=30, deadline=None)
@given(seed=seeds, heads=st.sampled_from([1, 2, 3, 4]))
def test_relation_loss_is_zero_when_the_student_is_the_teacher(seed: int, heads: int) -> None:
    qkv = states(seed)
    assert relation_loss([x.clone() for x in qkv], qkv, heads).item() < 1e-6


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_relation_loss_ignores_a_permutation_of_units_inside_a_head(seed: int) -> None:
    """Relations are dot products within a head: reordering a head's units changes nothing."""
    student, teacher = states(seed), states(seed + 1, width=8)
    order = torch.cat([torch.randperm(3, generator=torch.Generator().manual_seed(seed)) + 3 * h for h in range(4)])
    permuted = [x[..., order] for x in student]
    assert torch.isclose(relation_loss(permuted, teacher, 4), relation_loss(student, teacher, 4), atol=1e-5)
    assert relation_loss(student, teacher, 4).item() > 1e-4  # and it is not zero for other states


def test_relation_loss_works_across_widths_and_matches_its_definition() -> None:
    student, teacher = states(0, width=6), states(1, width=12)
    value = relation_loss(student, teacher, 2)
    expected = 0.0
    for s, t in zip(student, teacher, strict=True):
        for head in range(2):
            sh, th = s[..., head * 3 : head * 3 + 3], t[..., head * 6 : head * 6 + 6]
            p = torch.softmax(th @ th.transpose(-1, -2) / 6**0.5, -1)
            q = torch.softmax(sh @ sh.transpose(-1, -2) / 3**0.5, -1)
            expected += (p * (p.log() - q.log())).sum(-1).mean() / 2 / 3
    assert torch.isclose(value, torch.as_tensor(expected), atol=1e-5)


def test_hidden_attention_and_logit_mse_are_their_definitions() -> None:
    a, b = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    assert torch.isclose(hidden_mse(a, b), ((a - b) ** 2).mean())
    assert hidden_mse(a, a.clone()).item() == 0
    logits, other = torch.randn(6, 11), torch.randn(6, 11)
    assert torch.isclose(logit_mse(logits, other), ((logits - other) ** 2).mean())
    qkv, other_qkv = states(3, width=8), states(4, width=8)
    probs = [attention_probabilities(x[0], x[1], 2) for x in (qkv, other_qkv)]
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, 2, 7))
    assert torch.isclose(attention_mse(qkv, other_qkv, 2), ((probs[0] - probs[1]) ** 2).mean())


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "electra", "distilbert"])
def test_attention_probabilities_from_the_projections_are_the_models_own(family: str) -> None:
    """For softmax-attention families, softmax(QK^T / sqrt(d)) of the hooked projections is what the model
    attends with (checked against its eager attention weights)."""
    model = build_tiny_teacher(family, 120, 0).eval()
    model.set_attn_implementation("eager")
    ids = torch.randint(5, 120, (2, 9), generator=torch.Generator().manual_seed(0))
    with capture_projections(model, [2]) as captured, torch.no_grad():
        output = model(input_ids=ids, output_attentions=True)
    heads = model.config.num_attention_heads if family != "distilbert" else model.config.n_heads
    ours = attention_probabilities(captured[2][0], captured[2][1], heads)
    assert torch.allclose(ours, output.attentions[1], atol=1e-5)


@pytest.mark.parametrize("family", SUPPORTED_FAMILIES)
def test_every_family_gives_the_teacher_pass_what_each_term_reads(family: str) -> None:
    teacher = build_tiny_teacher(family, 120, 0).eval().requires_grad_(False)
    teacher_pass = TeacherPass(teacher, None, torch.device("cpu"))
    ids = torch.randint(5, 120, (2, 9), generator=torch.Generator().manual_seed(0))
    positions = torch.zeros(2, 9, dtype=torch.bool)
    positions[:, 3] = True
    batch = MaskedBatch(ids, positions, ids[positions], 2, 2)
    nothing = teacher_pass(batch, Needs())
    assert nothing.hidden == {} and nothing.projections == {}  # nothing computed that no student reads
    outputs = teacher_pass(batch, Needs(teacher_hidden=frozenset({0, 4}), teacher_projections=frozenset({3})))
    assert set(outputs.hidden) == {0, 4} and set(outputs.projections) == {3}
    width = teacher.config.hidden_size if family != "distilbert" else teacher.config.dim
    assert all(x.shape == (2, 9, width) for x in outputs.projections[3])
    assert torch.allclose(outputs.logits, nothing.logits)


def student_and_objective(
    config: LossConfig, width: int = 16, heads: int = 2, layers: int = 2
) -> tuple[StudentWithHead, Objective, TeacherPass]:
    teacher = build_tiny_teacher("bert", 120, 0).eval().requires_grad_(False)  # 4 layers, width 32, 4 heads
    from monodistill.config import StudentConfig
    from monodistill.student import build_student

    shape = {"num_layers": layers, "hidden_size": width, "intermediate_size": 2 * width, "num_heads": heads}
    student = build_student(StudentConfig(preset="custom", **shape), teacher)
    objective = Objective(config, num_layers(student), 4, 4, heads)
    return StudentWithHead(student, objective, 32), objective, TeacherPass(teacher, None, torch.device("cpu"))


def test_each_term_trains_what_it_reads_and_nothing_else_is_computed() -> None:
    config = LossConfig(alpha_kl=0, alpha_mlm=0, alpha_relation=1, alpha_hidden=1)
    wrapped, objective, teacher = student_and_objective(config)
    assert objective.needs == Needs(
        teacher_hidden=frozenset({0, 2, 4}),
        student_hidden=frozenset({0, 1, 2}),
        teacher_projections=frozenset({4}),
        student_projections=frozenset({2}),
    )
    ids = torch.randint(5, 120, (3, 10), generator=torch.Generator().manual_seed(1))
    positions = torch.rand(3, 10, generator=torch.Generator().manual_seed(2)) < 0.3
    batch = MaskedBatch(ids, positions, ids[positions], int(positions.sum()), 3)
    logits, hidden, projections = wrapped(ids, positions)
    assert set(hidden) == {0, 1, 2} and all(h.shape == (3, 10, 32) for h in hidden.values())  # projected
    parts = objective(ModelOutputs(logits, hidden, projections), teacher(batch, objective.needs), batch)
    assert set(parts) == {"loss", "mlm", "relation", "hidden"}  # no logit term at alpha_kl=0: no teacher logits read
    parts["loss"].backward()
    last = wrapped.model.bert.encoder.layer[1].attention.self
    assert all(
        module.weight.grad is not None and module.weight.grad.abs().sum() > 0
        for module in (last.query, last.key, last.value)
    )
    assert all(p.grad is not None for p in wrapped.projections.parameters())  # the hidden projections learn too


def test_default_layer_map_is_tinyberts() -> None:
    # TinyBERT's uniform map g(m) = m * N / M, the embeddings (0) to the embeddings, where M divides N.
    assert default_layer_map(4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert default_layer_map(2, 4) == [(0, 0), (1, 2), (2, 4)]
    # Where it does not, the teacher layer nearest m * N / M, the last to the last. 4 from 6: 1.5, 3, 4.5,
    # 6; a tie goes to the even layer, so the map reads the same from either end (0, 2, 3, 4, 6), where
    # flooring (1, 3, 4, 6) or rounding half up (2, 3, 5, 6) would lean to one end, and TinyBERT's code,
    # N // M layers per block (1, 2, 3, 4), would leave the teacher's last two layers untaught.
    assert default_layer_map(4, 6) == [(0, 0), (1, 2), (2, 3), (3, 4), (4, 6)]
    assert default_layer_map(3, 4) == [(0, 0), (1, 1), (2, 3), (3, 4)]  # 1.33, 2.67, 4: no tie


TINY = ["student.hidden_size=16", "student.num_heads=2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["loss.alpha_relation=1", "loss.relation_teacher_layer=9"],
            "loss.relation_teacher_layer=9, but the model has 4",
        ),
        (
            ["loss.alpha_relation=1", "loss.relation_heads=3"],
            "loss.relation_heads=3 does not divide the student's width 16",
        ),
        (
            ["loss.alpha_hidden=1", "loss.hidden_layers=1:2,2:7"],
            "maps 2:7, but the student has 2 layers and the teacher 4",
        ),
        (["loss.alpha_attention=1"], "loss.alpha_attention needs the teacher's head count (4); the student has 2"),
    ],
)
def test_terms_the_models_cannot_serve_are_refused_in_one_line(
    extra: list[str],
    message: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*args(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir, 2), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "recipe",
    [
        ["loss.alpha_kl=0", "loss.alpha_mlm=0", "loss.alpha_relation=1"],  # TiME
        [
            "loss.alpha_kl=0",
            "loss.alpha_mlm=0",
            "loss.alpha_hidden=1",
            "loss.alpha_attention=1",
            "student.num_heads=4",
        ],  # TinyBERT
        ["loss.logit_loss=mse"],  # Gurgurov et al.
        ["loss.alpha_relation=1", "loss.alpha_hidden=0.5"],  # a combination on top of the paper's
    ],
)
def test_each_recipe_distils_end_to_end_and_logs_its_parts(
    recipe: list[str], tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = tmp_path / "run"
    assert main([*args(tiny_teacher_dir, corpus_file, run, cache_dir, 4, "train.learning_rate=3e-3"), *recipe]) == 0
    train = [r for r in read_metrics(run) if r["split"] == "train"]
    expected = {
        "relation": "alpha_relation=1",
        "hidden": "alpha_hidden",
        "attention": "alpha_attention",
        "mse": "logit_loss=mse",
    }
    for part, flag in expected.items():
        assert (part in train[-1]) == any(flag in item for item in recipe), part
    assert train[-1]["loss"] < train[0]["loss"]
    assert "projections" not in " ".join(
        (run / "student" / "model.safetensors").read_bytes()[:20000].decode("latin1").split()
    )


def test_a_narrow_teacher_layers_student_is_reduced_on_corpus_blocks_in_the_teachers_ids(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monodistill import recipe

    seen = []
    real = recipe.build_student

    def spy(*a: object, sample_ids: torch.Tensor | None = None, **k: object) -> object:
        seen.append(sample_ids)
        return real(*a, sample_ids=sample_ids, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(recipe, "build_student", spy)
    extra = ["student.init=teacher-layers", "student.num_heads=4", "vocab.enabled=true", "vocab.max_size=80"]
    assert main([*args(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir, 2), *extra]) == 0
    (sample,) = seen
    assert sample is not None and sample.shape[1] == 32 and 1 <= len(sample) <= 128
    assert int(sample.max()) >= 80  # teacher ids, not the 80 trimmed student ids
