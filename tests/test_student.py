"""Student presets, shapes and the three init modes."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import pytest
import torch
from transformers import BertConfig, DebertaV2ForMaskedLM, PreTrainedModel, PreTrainedTokenizerFast

from monodistill.config import StudentConfig
from monodistill.errors import MonodistillError
from monodistill.families import supported_families
from monodistill.student import (
    PRESETS,
    build_student,
    resolve_shape,
    student_model_config,
    teacher_layer_indices,
)
from monodistill.teacher import parameter_counts

from .conftest import build_tiny_teacher

MBERT = BertConfig(vocab_size=119_547, hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
FAMILIES = supported_families("masked")
# DeBERTa-v2 with its head in the `lm_predictions` layout (config.legacy=False), as mdeberta-v3-base loads.
TEACHERS = [*FAMILIES, "deberta-v2-lm_predictions"]


def tiny_teacher(name: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    if name == "deberta-v2-lm_predictions":
        config = copy.deepcopy(build_tiny_teacher("deberta-v2", len(tokenizer), tokenizer.pad_token_id).config)
        config.legacy = False
        torch.manual_seed(0)
        return DebertaV2ForMaskedLM(config)
    return build_tiny_teacher(name, len(tokenizer), tokenizer.pad_token_id)


def test_paper_presets() -> None:
    assert PRESETS["dbert-base"] == resolve_shape(StudentConfig(preset="dbert-base"))
    assert tuple(vars(PRESETS["dbert-base"]).values()) == (6, 768, 3072, 12)
    assert tuple(vars(PRESETS["dbert-tiny"]).values()) == (4, 312, 1200, 12)


def test_dbert_tiny_on_mbert_has_about_42m_parameters_mostly_embeddings() -> None:
    # The paper's figure: ~42M parameters, ~37M of them the 119,547-token embedding matrix.
    from transformers import AutoModelForMaskedLM

    config = student_model_config(MBERT, PRESETS["dbert-tiny"], MBERT.vocab_size)
    with torch.device("meta"):
        model = AutoModelForMaskedLM.from_config(config)
    counts = parameter_counts(model)
    assert 41e6 < counts["total"] < 43e6
    assert counts["embedding"] > 37e6


def test_explicit_fields_override_the_preset_and_custom_needs_all() -> None:
    assert resolve_shape(StudentConfig(preset="dbert-tiny", num_layers=2)).num_layers == 2
    with pytest.raises(MonodistillError, match="needs student.num_layers"):
        resolve_shape(StudentConfig(preset="custom", hidden_size=64))
    with pytest.raises(MonodistillError, match="unknown student preset 'dbert-huge'"):
        resolve_shape(StudentConfig(preset="dbert-huge"))
    with pytest.raises(MonodistillError, match="not divisible"):
        resolve_shape(StudentConfig(preset="custom", num_layers=1, hidden_size=30, intermediate_size=8, num_heads=4))


def test_teacher_layer_indices_match_distilbert() -> None:
    assert teacher_layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    assert teacher_layer_indices(4, 2) == [0, 3]
    with pytest.raises(MonodistillError):
        teacher_layer_indices(2, 4)


def small(init: str, hidden: int = 32, layers: int = 2) -> StudentConfig:
    return StudentConfig(
        preset="custom", num_layers=layers, hidden_size=hidden, intermediate_size=64, num_heads=4, init=init
    )


@pytest.mark.parametrize("name", TEACHERS)
def test_student_keeps_the_teacher_family_and_vocabulary(name: str, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    teacher = tiny_teacher(name, tiny_tokenizer)
    student = build_student(small("random", hidden=16, layers=1), teacher)
    assert type(student) is type(teacher)
    assert getattr(student.config, "legacy", None) == getattr(teacher.config, "legacy", None)
    assert student.config.vocab_size == teacher.config.vocab_size
    assert student.config.num_hidden_layers == 1 and student.config.hidden_size == 16
    assert student.training and next(student.parameters()).dtype == torch.float32


def test_teacher_embeddings_copies_rows_and_stays_tied(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    teacher = build_tiny_teacher("bert", len(tiny_tokenizer), 0)
    kept = torch.tensor([0, 1, 2, 3, 4, 10, 20, 30])
    student = build_student(small("teacher-embeddings"), teacher, vocab_ids=kept)
    embeddings = student.get_input_embeddings().weight
    assert torch.equal(embeddings, teacher.get_input_embeddings().weight[kept])
    assert student.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()


def test_teacher_embeddings_project_onto_principal_components_when_narrower(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    teacher = build_tiny_teacher("bert", len(tiny_tokenizer), 0)
    # Teacher embeddings of rank 8: an 8-dim PCA projection keeps every distance up to one scale.
    generator = torch.Generator().manual_seed(0)
    low_rank = torch.randn(len(tiny_tokenizer), 8, generator=generator) @ torch.randn(8, 32, generator=generator)
    with torch.no_grad():
        teacher.get_input_embeddings().weight.copy_(low_rank)
    student = build_student(small("teacher-embeddings", hidden=8), teacher)
    projected = student.get_input_embeddings().weight.detach()
    source_distances = torch.pdist(low_rank)
    projected_distances = torch.pdist(projected)
    correlation = torch.corrcoef(torch.stack([source_distances, projected_distances]))[0, 1]
    assert correlation > 0.999
    random_student = build_student(small("random", hidden=8), teacher)
    assert abs(projected.std() - random_student.get_input_embeddings().weight.std()) < 0.01
    with pytest.raises(MonodistillError, match="larger than the teacher"):
        build_student(small("teacher-embeddings", hidden=64), teacher)


def test_teacher_layers_copies_evenly_spaced_layers(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    teacher = build_tiny_teacher("bert", len(tiny_tokenizer), 0)  # 4 layers, hidden 32
    student = build_student(small("teacher-layers"), teacher)  # 2 layers -> teacher layers 0 and 3
    for student_layer, teacher_layer in enumerate([0, 3]):
        assert torch.equal(
            student.bert.encoder.layer[student_layer].attention.self.query.weight,
            teacher.bert.encoder.layer[teacher_layer].attention.self.query.weight,
        )
    assert torch.equal(student.cls.predictions.transform.dense.weight, teacher.cls.predictions.transform.dense.weight)
    with pytest.raises(MonodistillError, match="student.hidden_size 64 is larger than the teacher's 32"):
        build_student(small("teacher-layers", hidden=64), teacher)


def test_distilbert_student_has_the_requested_shape_in_distilberts_fields(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    # DistilBERT names its sizes n_layers, dim, hidden_dim and n_heads; hidden_dim has no alias.
    teacher = build_tiny_teacher("distilbert", len(tiny_tokenizer), 0)
    shape = StudentConfig(preset="custom", num_layers=2, hidden_size=16, intermediate_size=48, num_heads=2)
    student = build_student(shape, teacher)
    config = student.config
    assert (config.n_layers, config.dim, config.hidden_dim, config.n_heads) == (2, 16, 48, 2)
    assert "intermediate_size" not in config.to_dict()
    layers = student.distilbert.transformer.layer
    assert len(layers) == 2
    assert layers[0].attention.q_lin.weight.shape == (16, 16)
    assert layers[0].ffn.lin1.weight.shape == (48, 16)
    assert teacher.config.hidden_dim == 64  # the teacher's config is copied, not changed
    narrower = build_student(replace(shape, hidden_size=32, num_heads=4, init="teacher-layers"), teacher)
    assert narrower.distilbert.transformer.layer[0].ffn.lin1.weight.shape == (48, 32)  # the 48 kept neurons
    with pytest.raises(MonodistillError, match="student.intermediate_size 96 is larger than the teacher's 64"):
        build_student(replace(shape, hidden_size=32, intermediate_size=96, num_heads=4, init="teacher-layers"), teacher)


@pytest.mark.parametrize("with_sample", [False, True], ids=["no-sample", "sample"])
@pytest.mark.parametrize("trimmed", [False, True], ids=["full-vocab", "trimmed-vocab"])
@pytest.mark.parametrize("name", TEACHERS)
def test_teacher_layers_copies_every_weight_from_evenly_spaced_layers(
    name: str, trimmed: bool, with_sample: bool, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    teacher = tiny_teacher(name, tiny_tokenizer)  # 4 layers
    kept = torch.tensor([0, 1, 2, 3, 4, 10, 20, 30]) if trimmed else None
    # As wide as the teacher, sample blocks change nothing: the weights are the teacher's, bit for bit.
    sample = torch.randint(5, len(tiny_tokenizer), (4, 16), generator=torch.Generator().manual_seed(0))
    student = build_student(  # 2 layers: teacher's 0 and 3
        small("teacher-layers"), teacher, vocab_ids=kept, sample_ids=sample if with_sample else None
    )
    teacher_state = teacher.state_dict()
    layer_weights = 0
    for key, value in student.state_dict().items():
        source_key = re.sub(r"\.(layers?)\.1\.", r".\1.3.", key)
        layer_weights += re.search(r"\.layers?\.0\.", key) is not None or source_key != key
        source = teacher_state[source_key]
        if kept is not None and source.shape[0] == teacher.config.vocab_size:
            source = source[kept]  # word embeddings, output projection and bias: kept rows only
        assert torch.equal(value, source), key
    assert layer_weights > 0
    assert student.config.vocab_size == (len(kept) if kept is not None else len(tiny_tokenizer))


def test_electra_student_keeps_the_factorised_embedding_size_only_for_teacher_layers(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    teacher = build_tiny_teacher("electra", len(tiny_tokenizer), 0)  # hidden 32, embedding size 16
    copied = build_student(small("teacher-layers"), teacher)
    assert copied.config.embedding_size == 16 and copied.config.hidden_size == 32
    assert torch.equal(copied.electra.embeddings_project.weight, teacher.electra.embeddings_project.weight)
    blank = build_student(small("random", hidden=16), teacher)
    assert blank.config.embedding_size == 16 and not hasattr(blank.electra, "embeddings_project")
    narrow = build_student(small("random", hidden=8), teacher)
    assert narrow.config.embedding_size == 8
