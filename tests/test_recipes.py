"""The field's loss terms: relation (MiniLMv2), hidden and attention MSE (TinyBERT), logit MSE; composable,
read from every family's own modules, computed only where some student asks for them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertForMaskedLM

from monodistill.checkpoint import read_metrics
from monodistill.cli import main
from monodistill.config import LossConfig
from monodistill.data.batches import MaskedBatch
from monodistill.distill import StudentWithHead, TeacherPass
from monodistill.errors import MonodistillError
from monodistill.families import supported_families
from monodistill.internals import ProjectionHooks, capture_projections, num_layers
from monodistill.losses import (
    LossTerm,
    ModelOutputs,
    ModelSizes,
    Needs,
    attention_mse,
    attention_probabilities,
    build_terms,
    default_layer_map,
    hidden_mse,
    logit_mse,
    needs_of,
    relation_loss,
    step_count,
)

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
    # Each state normalised over its width (zero mean, unit variance) before the squared error.
    normed = [(x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt() for x in (a, b)]
    assert torch.isclose(hidden_mse(a, b), ((normed[0] - normed[1]) ** 2).mean(), atol=1e-6)
    assert hidden_mse(a, a.clone()).item() == 0
    logits, other = torch.randn(6, 11), torch.randn(6, 11)
    assert torch.isclose(logit_mse(logits, other), ((logits - other) ** 2).mean())
    qkv, other_qkv = states(3, width=8), states(4, width=8)
    probs = [attention_probabilities(x[0], x[1], 2) for x in (qkv, other_qkv)]
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, 2, 7))
    assert torch.isclose(attention_mse(qkv, other_qkv, 2), ((probs[0] - probs[1]) ** 2).mean())


@settings(max_examples=30, deadline=None)
@given(seed=seeds, scale=st.floats(min_value=0.5, max_value=1e3), shift=st.floats(min_value=-50, max_value=50))
def test_hidden_mse_ignores_the_scale_and_offset_of_a_layers_states(seed: int, scale: float, shift: float) -> None:
    """Each state is normalised before the error: scaling (or shifting) a layer's states, the student's or the
    teacher's, as a pre-LN model's growing residual stream does, leaves the term as it is."""
    student, teacher = states(seed)[:2]
    expected = hidden_mse(student, teacher)
    assert torch.isclose(hidden_mse(student * scale + shift, teacher), expected, rtol=1e-3, atol=1e-5)
    assert torch.isclose(hidden_mse(student, teacher * scale + shift), expected, rtol=1e-3, atol=1e-5)
    assert hidden_mse(student * scale, student).item() < 1e-5


def test_a_pre_ln_middle_layer_with_a_huge_norm_does_not_dominate_the_hidden_term() -> None:
    """A pre-LayerNorm model (ModernBERT) passes its raw residual stream between layers and norms only the
    last: a middle layer's states can be 100 times larger than the others'. Each mapped layer with the same
    relative error now weighs alike in the term; with the raw MSE the middle layer was all of it."""
    generator = torch.Generator().manual_seed(0)
    teacher = {layer: torch.randn(2, 7, 32, generator=generator) for layer in (1, 2, 3)}
    student = {layer: states + 0.3 * torch.randn(2, 7, 32, generator=generator) for layer, states in teacher.items()}
    for outputs in (teacher, student):
        outputs[2] = outputs[2] * 100  # the middle layer's residual stream, unnormalised
    terms = torch.stack([hidden_mse(student[layer], teacher[layer]) for layer in (1, 2, 3)])
    raw = torch.stack([((student[layer] - teacher[layer]) ** 2).mean() for layer in (1, 2, 3)])
    assert raw[1] / raw.sum() > 0.99  # what the term was before the normalisation
    assert 0.2 < terms[1] / terms.sum() < 0.5

    config = LossConfig(alpha_kl=0, alpha_mlm=0, alpha_hidden=1, hidden_layers="1:1,2:2,3:3")
    (hidden,) = [term for term in build_terms(config, ModelSizes(3, 3, 4, 4)) if term.name == "hidden"]
    logits, batch = torch.zeros(2, 120), masked_batch(2, 7)  # (N, V) at the batch's 2 masked positions
    part = hidden.sum(ModelOutputs(logits, student), ModelOutputs(logits, teacher), batch)
    assert torch.isclose(part / step_count(batch, hidden.count), terms.mean())


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


@pytest.mark.parametrize("family", supported_families("masked"))
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


def masked_batch(blocks: int, length: int = 9) -> MaskedBatch:
    ids = torch.randint(5, 120, (blocks, length), generator=torch.Generator().manual_seed(blocks))
    positions = torch.zeros(blocks, length, dtype=torch.bool)
    positions[:, 3] = True
    return MaskedBatch(ids, positions, ids[positions], blocks, blocks)


def test_a_compiled_teacher_reads_the_projections_after_a_pass_that_read_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """train.compile=true with the relation or attention term. torch.compile does not guard on module hooks: hooks
    installed per call were absent from the graph traced for a validation pass (which reads no projections), and
    every training step after it ran that graph and read none (the relation term then failed). Installed once,
    before the first forward, they run in every graph, and nothing recompiles from step to step."""
    compilations = []

    def counting(graph: torch.fx.GraphModule, example_inputs: object) -> object:
        compilations.append(graph)
        return graph.forward

    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **_: compile_module(self, backend=counting))
    torch._dynamo.reset()
    needs = Needs(teacher_projections=frozenset({2}))

    def two_layer_teacher() -> BertForMaskedLM:  # the tracing time grows with the layers
        torch.manual_seed(0)
        shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
        return BertForMaskedLM(BertConfig(vocab_size=120, **shape)).eval().requires_grad_(False)

    eager = TeacherPass(two_layer_teacher(), None, torch.device("cpu"))
    compiled = TeacherPass(two_layer_teacher(), None, torch.device("cpu"), True, [2])
    for _ in range(2):  # training steps, each followed by a validation pass over a smaller batch
        outputs, expected = compiled(masked_batch(4), needs), eager(masked_batch(4), needs)
        assert len(outputs.projections[2]) == 3
        assert all(map(torch.allclose, outputs.projections[2], expected.projections[2]))
        assert compiled(masked_batch(3), Needs(), outside_mass=True).projections == {}
    assert len(compilations) == 2  # one graph per batch shape, none per step
    with pytest.raises(MonodistillError, match=r"built to read the projections of layers \[2\], not of \[1\]"):
        compiled(masked_batch(4), Needs(teacher_projections=frozenset({1})))


def test_projection_hooks_keep_nothing_outside_a_capture() -> None:
    model = build_tiny_teacher("modernbert", 120, 0).eval()
    hooks = ProjectionHooks(model, [1, 3])
    ids = masked_batch(2).input_ids
    with torch.no_grad():
        model(input_ids=ids)  # outside a capture: nothing is held
        assert all(states == [] for states in hooks.captured.values())
        with hooks.capture() as captured:
            model(input_ids=ids)
    assert set(captured) == {1, 3} and all(len(qkv) == 3 and qkv[0].shape == (2, 9, 32) for qkv in captured.values())
    assert all(states == [] for states in hooks.captured.values())


def student_and_terms(
    config: LossConfig, width: int = 16, heads: int = 2, layers: int = 2
) -> tuple[StudentWithHead, list[LossTerm], TeacherPass]:
    teacher = build_tiny_teacher("bert", 120, 0).eval().requires_grad_(False)  # 4 layers, width 32, 4 heads
    from monodistill.config import StudentConfig
    from monodistill.student import build_student

    shape = {"num_layers": layers, "hidden_size": width, "intermediate_size": 2 * width, "num_heads": heads}
    student = build_student(StudentConfig(preset="custom", **shape), teacher)
    terms = build_terms(config, ModelSizes(num_layers(student), 4, heads, 4))
    return StudentWithHead(student, needs_of(terms), 32), terms, TeacherPass(teacher, None, torch.device("cpu"))


def test_each_term_trains_what_it_reads_and_nothing_else_is_computed() -> None:
    config = LossConfig(alpha_kl=0, alpha_mlm=0, alpha_relation=1, alpha_hidden=1)
    wrapped, terms, teacher = student_and_terms(config)
    needs = needs_of(terms)
    assert needs == Needs(
        teacher_hidden=frozenset({0, 2, 4}),
        student_hidden=frozenset({0, 1, 2}),
        teacher_projections=frozenset({4}),
        student_projections=frozenset({2}),
        projected_hidden=(0, 1, 2),
    )
    ids = torch.randint(5, 120, (3, 10), generator=torch.Generator().manual_seed(1))
    positions = torch.rand(3, 10, generator=torch.Generator().manual_seed(2)) < 0.3
    batch = MaskedBatch(ids, positions, ids[positions], int(positions.sum()), 3)
    scored, hidden, projections = wrapped(ids, positions)
    logits = wrapped.head.logits(scored)  # (N, V)
    assert set(hidden) == {0, 1, 2} and all(h.shape == (3, 10, 32) for h in hidden.values())  # projected
    student, outputs = ModelOutputs(logits, hidden, projections), teacher(batch, needs)
    parts = {term.name: term.sum(student, outputs, batch) / step_count(batch, term.count) for term in terms}
    assert set(parts) == {"mlm", "relation", "hidden"}  # no logit term at alpha_kl=0: no teacher logits read
    sum(term.weight * parts[term.name] for term in terms).backward()
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
        # Unused at alpha_hidden = alpha_attention = 0, but a map that cannot be is refused all the same.
        (["loss.hidden_layers=1:2,2:7"], "maps 2:7, but the student has 2 layers and the teacher 4"),
        # The teacher's layer 0 is its embeddings: no attention, and layers[0 - 1] would read its last layer.
        (
            ["loss.alpha_attention=1", "student.num_heads=4", "loss.hidden_layers=1:0,2:4"],
            "loss.hidden_layers='1:0,2:4' maps student layer 1 to teacher layer 0",
        ),
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
