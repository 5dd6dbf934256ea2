"""teacher-layers for a narrower student: every weight from the teacher, reduced; agreement with the teacher."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from monodistill.config import StudentConfig
from monodistill.data.masking import IGNORE_INDEX, mask_tokens
from monodistill.errors import MonodistillError
from monodistill.families import family_of, supported_families
from monodistill.student import build_student
from monodistill.student.narrow import stream_basis

from .conftest import build_tiny_teacher

BLOCK_LENGTH = 32
NARROW_FAMILIES = [name for name in supported_families("masked") if family_of(name).layer_roles is not None]
"""Families the narrow reduction knows (the others are refused a narrower teacher-layers student)."""


def narrow(init: str = "teacher-layers", hidden: int = 16, intermediate: int = 32, heads: int = 4) -> StudentConfig:
    return StudentConfig(
        preset="custom", num_layers=2, hidden_size=hidden, intermediate_size=intermediate, num_heads=heads, init=init
    )


def topic_blocks(count: int, generator: torch.Generator, vocab_size: int) -> torch.Tensor:
    """(count, T) blocks a tiny teacher learns in a few hundred steps: each block draws from one of 8 topics
    (16 ids each, Zipf-distributed), 70% of its tokens following the previous one by a fixed permutation,
    so a masked token is predictable from its context only."""
    topics = (5 + torch.randperm(vocab_size - 5, generator=torch.Generator().manual_seed(0))[:128]).view(8, 16)
    successor = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    zipf = 1.0 / torch.arange(1, 17).float()
    topic = torch.randint(8, (count,), generator=generator)
    columns = [torch.multinomial(zipf, count, replacement=True, generator=generator)]
    for _ in range(BLOCK_LENGTH - 3):
        fresh = torch.multinomial(zipf, count, replacement=True, generator=generator)
        follows = torch.rand(count, generator=generator) < 0.7
        columns.append(torch.where(follows, successor[columns[-1]], fresh))
    body = topics[topic[:, None], torch.stack(columns, dim=1)]
    return torch.cat([torch.full((count, 1), 2), body, torch.full((count, 1), 3)], dim=1)  # [CLS] ... [SEP]


@pytest.fixture(scope="module")
def trained(tiny_tokenizer: PreTrainedTokenizerFast) -> Iterator[tuple[PreTrainedModel, torch.Tensor, torch.Tensor]]:
    """The tiny BERT teacher after 300 MLM steps on topic blocks, its training blocks and held-out blocks."""
    generator = torch.Generator().manual_seed(0)
    vocab_size = len(tiny_tokenizer)
    train, held_out = topic_blocks(512, generator, vocab_size), topic_blocks(96, generator, vocab_size)
    teacher = build_tiny_teacher("bert", vocab_size, tiny_tokenizer.pad_token_id)
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0
    teacher = type(teacher)(teacher.config)
    special = torch.tensor(tiny_tokenizer.all_special_ids)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    # Ops this small are all overhead: one thread trains several times faster than two on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(300):
            ids = train[torch.randint(len(train), (16,), generator=generator)]
            masked, labels = mask_tokens(
                ids, torch.isin(ids, special), tiny_tokenizer.mask_token_id, vocab_size, 0.15, generator
            )
            teacher(input_ids=masked, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    yield teacher.eval().requires_grad_(False), train, held_out


def masked_predictions(
    model: PreTrainedModel, held_out: torch.Tensor, tokenizer: PreTrainedTokenizerFast
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 predictions at the masked positions of the held-out blocks (fixed masks), and the true ids."""
    special = torch.isin(held_out, torch.tensor(tokenizer.all_special_ids))
    generator = torch.Generator().manual_seed(1)
    masked, labels = mask_tokens(held_out, special, tokenizer.mask_token_id, len(tokenizer), 0.15, generator)
    positions = labels != IGNORE_INDEX
    with torch.inference_mode():
        predictions = model.eval()(input_ids=masked).logits[positions].argmax(dim=-1)
    return predictions, labels[positions]


def test_narrow_init_agrees_with_the_teacher_far_above_a_random_student(
    trained: tuple[PreTrainedModel, torch.Tensor, torch.Tensor], tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    # Measured here (435 masked positions; the teacher's accuracy 0.12): top-1 agreement of random students
    # 0.000-0.002, narrow with a sample 0.64, data-free 0.18; the 2-layer student as wide as the teacher 0.79.
    teacher, train, held_out = trained
    teacher_predictions, targets = masked_predictions(teacher, held_out, tiny_tokenizer)
    assert (teacher_predictions == targets).float().mean() > 0.08  # the teacher predicts something

    def agreement(student: PreTrainedModel) -> float:
        predictions, _ = masked_predictions(student, held_out, tiny_tokenizer)
        return float((predictions == teacher_predictions).float().mean())

    random_agreement = max(agreement(build_student(narrow("random"), teacher, seed=seed)) for seed in range(3))
    with_sample = agreement(build_student(narrow(), teacher, sample_ids=train[:64]))
    data_free = agreement(build_student(narrow(), teacher))
    assert with_sample > random_agreement + 0.3, (random_agreement, with_sample)
    assert data_free > random_agreement + 0.1, (random_agreement, data_free)


def test_each_student_head_is_its_teacher_head(trained: tuple[PreTrainedModel, torch.Tensor, torch.Tensor]) -> None:
    teacher, train, held_out = trained
    student = build_student(narrow(), teacher, sample_ids=train[:64]).eval()
    assert student.bert.encoder.layer[0].attention.self.attention_head_size == 4  # 16 / 4 heads, the teacher's 8
    attention = teacher.config._attn_implementation
    for model in (teacher, student):
        model.set_attn_implementation("eager")  # the only one that returns attention probabilities
    try:
        with torch.inference_mode():
            teacher_maps = teacher(input_ids=held_out[:32], output_attentions=True).attentions[0]
            student_maps = student(input_ids=held_out[:32], output_attentions=True).attentions[0]
    finally:
        teacher.set_attn_implementation(attention)
    # The first layers read the same (projected) embeddings: head h's attention is the teacher's head h's.
    flat = torch.cat([student_maps.transpose(0, 1).flatten(1), teacher_maps.transpose(0, 1).flatten(1)])
    correlation = torch.corrcoef(flat)[:4, 4:]  # (student head, teacher head)
    assert correlation.argmax(dim=1).tolist() == [0, 1, 2, 3]
    assert correlation.diagonal().min() > 0.9


@pytest.mark.parametrize("with_sample", [True, False], ids=["sample", "data-free"])
@pytest.mark.parametrize("name", NARROW_FAMILIES)
def test_narrow_student_takes_every_weight_from_the_teacher(
    name: str, with_sample: bool, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    teacher = build_tiny_teacher(name, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)  # 4L, 32H, 4 heads, 64I
    kept = torch.tensor([0, 1, 2, 3, 4, *range(10, 60)])
    sample = torch.randint(5, len(tiny_tokenizer), (8, 24), generator=torch.Generator().manual_seed(0))
    shape = narrow(hidden=24)  # not ELECTRA's embedding size 16, which would drop its embeddings_project
    built = [
        build_student(shape, teacher, vocab_ids=kept, seed=seed, sample_ids=sample if with_sample else None)
        for seed in (0, 1)
    ]
    # Nothing is left at its random initialisation: two seeds give the same student.
    first, second = (model.state_dict() for model in built)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    student = built[0]
    config = student.config
    field = family_of(name).intermediate_field
    assert (config.num_hidden_layers, config.hidden_size, getattr(config, field)) == (2, 24, 32)
    assert config.num_attention_heads == 4 and config.vocab_size == len(kept)
    shapes = {key: tuple(value.shape) for key, value in first.items()}
    query = next(key for key in shapes if key.endswith(("self.query.weight", "q_lin.weight")))
    ffn_in = next(key for key in shapes if key.endswith(("intermediate.dense.weight", "lin1.weight")))
    assert shapes[query] == (24, 24) and shapes[ffn_in] == (32, 24)
    embeddings = student.get_input_embeddings().weight
    if teacher.config.tie_word_embeddings:  # still tied (RemBERT's output embeddings are its own)
        assert student.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()
    if name == "electra":  # the factorised embeddings are the teacher's; the projection into the stream narrows
        assert torch.equal(embeddings, teacher.get_input_embeddings().weight[kept])
        assert student.electra.embeddings_project.weight.shape == (24, 16)
    decoder_bias = student.get_output_embeddings().bias
    assert torch.equal(decoder_bias, teacher.get_output_embeddings().bias[kept])  # sliced, as when as wide
    with torch.inference_mode():
        logits = student.eval()(input_ids=torch.randint(len(kept), (2, 12))).logits
    assert logits.shape == (2, 12, len(kept)) and torch.isfinite(logits).all()


def teacher_streams(
    teacher: PreTrainedModel, kept: torch.Tensor, sample: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What the reduction reads of the residual stream, computed here from its definition: (N, H_t) stream
    states (with a sample, the first layer's input and every layer's output on it; data-free, the kept
    word-embedding rows as they enter the stream) and, by teacher LayerNorm, (N, D) inputs of that norm
    (data-free: the same rows for every norm)."""
    rows = teacher.get_input_embeddings().weight.detach().double()[kept]
    project = family_of(teacher).stream_input(teacher)
    if project is not None:  # factorised embeddings (ELECTRA's, RemBERT's) enter the stream through a projection
        rows = rows @ project.weight.detach().double().T + project.bias.detach().double()
    norms = {name: module for name, module in teacher.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    if sample is None:
        return rows, dict.fromkeys(norms, rows)
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in norms}
    handles = [
        module.register_forward_pre_hook(lambda _, args, name=name: inputs[name].append(args[0].flatten(0, 1)))
        for name, module in norms.items()
    ]
    try:
        with torch.inference_mode():
            states = teacher.eval()(input_ids=sample, output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    assert len(states) == teacher.config.num_hidden_layers + 1  # the embeddings' output, then every layer's
    stream = torch.cat([state.flatten(0, 1) for state in states]).double()
    return stream, {name: torch.cat(values).double() for name, values in inputs.items() if values}


@pytest.mark.parametrize("with_sample", [True, False], ids=["sample", "data-free"])
@pytest.mark.parametrize("name", NARROW_FAMILIES)
def test_narrow_layernorms_are_the_teachers_reduced(
    name: str, with_sample: bool, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    """gamma_s[j] = s * sum_i P[i, j]^2 gamma_t[i] and beta_s = P^T beta_t (student.narrow), with
    s = r * sqrt(H_t / H_s), r^2 the mean share of the norm's centred input direction that P keeps; each
    computed here from the teacher's weights (and activations), checked on every student LayerNorm."""
    teacher = build_tiny_teacher(name, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)  # 4L, 32H, 4 heads, 64I
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # gains and shifts of their own: at (1, 0), P^T gamma and many wrong rules agree
        for module in teacher.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
    kept = torch.tensor([0, 1, 2, 3, 4, *range(10, 60)])
    sample = torch.randint(5, len(tiny_tokenizer), (8, 24), generator=generator) if with_sample else None
    student = build_student(narrow(hidden=24), teacher, vocab_ids=kept, sample_ids=sample)
    stream, norm_inputs = teacher_streams(teacher, kept, sample)
    basis = stream_basis(stream.T @ stream / len(stream), 24)  # P (32, 24)
    if family_of(teacher).stream_input(teacher) is None:  # P is the basis the student was built with: E P
        expected = teacher.get_input_embeddings().weight.detach().double()[kept] @ basis
        assert torch.allclose(student.get_input_embeddings().weight.double(), expected, atol=1e-5)
    modules = dict(teacher.named_modules())
    checked = 0
    for student_name, module in student.named_modules():
        if not isinstance(module, torch.nn.LayerNorm):
            continue
        # The 2-layer student takes the teacher's first and last layers.
        source = re.sub(r"\.layer\.(\d+)\.", lambda match: f".layer.{[0, 3][int(match[1])]}.", student_name)
        gamma, beta = modules[source].weight.detach().double(), modules[source].bias.detach().double()
        if gamma.shape != (32,):  # norms of factorised embeddings (16 wide) or RemBERT's output embedding (48)
            expected_gamma, expected_beta = gamma, beta
        else:
            inputs = norm_inputs[source]
            centred = inputs - inputs.mean(dim=-1, keepdim=True)
            direction = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # the padding row: none
            kept_share = torch.trace(basis.T @ (direction.T @ direction / len(direction)) @ basis)
            scale = (kept_share * 32 / 24).sqrt()
            expected_gamma, expected_beta = scale * (basis**2).T @ gamma, basis.T @ beta
        assert torch.allclose(module.weight.double(), expected_gamma, atol=1e-5), student_name
        assert torch.allclose(module.bias.double(), expected_beta, atol=1e-5), student_name
        checked += 1
    assert checked == 6  # the embeddings', two in each layer, the MLM head's


def test_a_narrower_feed_forward_alone_keeps_the_rest_exact(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    teacher = build_tiny_teacher("bert", len(tiny_tokenizer), 0)
    student = build_student(narrow(hidden=32, intermediate=48), teacher)  # teacher layers 0 and 3
    for student_layer, teacher_layer in enumerate([0, 3]):
        mine, theirs = student.bert.encoder.layer[student_layer], teacher.bert.encoder.layer[teacher_layer]
        assert torch.equal(mine.attention.self.query.weight, theirs.attention.self.query.weight)
        assert torch.equal(mine.output.LayerNorm.weight, theirs.output.LayerNorm.weight)
        # The kept neurons are whole rows of the input map and the same columns of the output map.
        kept = [
            next(row for row in range(64) if torch.equal(theirs.intermediate.dense.weight[row], weights))
            for weights in mine.intermediate.dense.weight
        ]
        assert kept == sorted(kept) and len(set(kept)) == 48
        assert torch.equal(mine.output.dense.weight, theirs.output.dense.weight[:, kept])


def test_stream_basis_is_orthonormal_and_commutes_with_layernorm_centring() -> None:
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(500, 32, generator=generator, dtype=torch.float64) @ torch.randn(
        32, 32, generator=generator, dtype=torch.float64
    )
    basis = stream_basis(states.T @ states / len(states), 12)  # (32, 12)
    assert torch.allclose(basis.T @ basis, torch.eye(12, dtype=torch.float64), atol=1e-10)
    projected = states @ basis
    # The student's LayerNorm centres P^T x over its 12 coordinates: the teacher's centring, projected.
    assert torch.allclose(
        projected - projected.mean(dim=-1, keepdim=True), (states - states.mean(dim=-1, keepdim=True)) @ basis
    )
    assert torch.equal(stream_basis(states.T @ states, 32), torch.eye(32, dtype=torch.float64))


@pytest.mark.parametrize(
    ("family", "shape", "message"),
    [
        ("bert", narrow(heads=2), r"needs the teacher's 4 attention heads .* student.num_heads is 2"),
        ("bert", narrow(hidden=32, intermediate=64, heads=8), "needs the teacher's 4 attention heads"),
        ("bert", narrow(hidden=64, intermediate=64), "student.hidden_size 64 is larger than the teacher's 32"),
        ("bert", narrow(hidden=16, intermediate=128), "student.intermediate_size 128 is larger than the teacher's 64"),
        ("deberta-v2", narrow(), "cannot narrow a deberta-v2 teacher .* teacher-embeddings or random"),
        ("electra", narrow(hidden=16), r"equal to the teacher's embedding size \(16\)"),
    ],
    ids=["fewer-heads", "more-heads", "wider", "wider-ffn", "deberta-v2", "electra-embedding-size"],
)
def test_teacher_layers_refuses_what_it_cannot_fill_in_one_line(
    family: str, shape: StudentConfig, message: str, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    teacher = build_tiny_teacher(family, len(tiny_tokenizer), 0)
    with pytest.raises(MonodistillError, match=message) as refused:
        build_student(shape, teacher)
    assert "\n" not in str(refused.value)
