"""Decoder teachers (causal LMs) of every family: loading, the LM head, q/k/v, trimming and student configs, each on
a tiny random model with a tokenizer of the kind the family really uses (``conftest.TINY_DECODERS``)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    BloomModel,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Model,
    LlamaModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from monodistill.cli import main
from monodistill.config import StudentConfig, TeacherConfig
from monodistill.config.base import ConfigError
from monodistill.errors import MonodistillError
from monodistill.families import family_of, student_families, supported_families
from monodistill.families.decoder import student_layer_types
from monodistill.internals import capture_projections
from monodistill.student import StudentShape, build_student, student_model_config
from monodistill.student.family import check_family_serves
from monodistill.teacher import encoder, load_teacher, max_positions, mlm_head
from monodistill.vocab.teacher import id_map_tensor, trim_teacher

from .conftest import TINY_DECODERS, build_tiny_decoder, decoder_tokenizer, save_decoder, save_teacher
from .test_causal import SHORT, STUDENT, distil
from .test_distill import args

FAMILIES = supported_families("causal")
NARROW = StudentShape(num_layers=2, hidden_size=16, intermediate_size=32, num_heads=2)
"""A student shape narrower than the tiny decoders in every dimension."""

Tokenizers = dict[str, PreTrainedTokenizerFast]


def saved_decoder(family: str, tokenizers: Tokenizers, folder: Path) -> Path:
    return save_decoder(family, decoder_tokenizer(family, tokenizers), folder / family)


def random_ids(vocab_size: int, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(seed))


def projection_widths(model: PreTrainedModel) -> list[int]:
    """The widths of q, k and v: the query heads', and the key-value heads' (fewer with grouped-query attention)."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    key_value_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return [config.num_attention_heads * head_dim, key_value_heads * head_dim, key_value_heads * head_dim]


def test_every_decoder_family_has_a_tiny_decoder_row() -> None:
    assert sorted(TINY_DECODERS) == sorted(FAMILIES)
    assert all(family_of(name).objective == "causal" for name in FAMILIES)


@pytest.mark.smoke
@pytest.mark.parametrize("family", FAMILIES)
def test_loads_frozen_in_eval_mode_with_the_requested_dtype(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    path = saved_decoder(family, decoder_tokenizers, tmp_path)
    model, tokenizer = load_teacher(TeacherConfig(name_or_path=str(path), dtype="bfloat16"))
    assert model.config.model_type == family
    assert type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16
    assert len(tokenizer) == model.config.vocab_size
    assert tokenizer.mask_token is None  # a decoder's tokenizer needs none


@pytest.mark.smoke
@pytest.mark.parametrize("family", FAMILIES)
def test_head_at_some_positions_equals_the_models_own_logits(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """Identity transform, then ``lm_head``, then Cohere's logit scale or Gemma-2's cap, as the model's forward."""
    model, tokenizer = load_teacher(
        TeacherConfig(name_or_path=str(saved_decoder(family, decoder_tokenizers, tmp_path)))
    )
    ids = random_ids(len(tokenizer), 20)
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, [3, 7]] = True
    positions[1, [0, 19]] = True
    head = mlm_head(model)
    with torch.inference_mode():
        full = model(input_ids=ids).logits[positions]  # (4, V)
        hidden = encoder(model)(input_ids=ids).last_hidden_state[positions]  # (4, H)
        assert torch.allclose(head.logits(hidden), full, atol=1e-5)
        rows = torch.tensor([0, 9, 17, 42, len(tokenizer) - 1])
        assert torch.allclose(head.restricted(rows).logits(hidden), full[:, rows], atol=1e-5)
        if head.scale != 1.0 or head.softcap is not None:  # the scaling is what makes them equal
            assert not torch.allclose(F.linear(hidden, head.weight, head.bias), full, atol=1e-3)
    assert head.weight is model.lm_head.weight


def test_the_logit_scale_and_cap_come_from_the_config(decoder_tokenizers: Tokenizers) -> None:
    cohere = mlm_head(build_tiny_decoder("cohere", decoder_tokenizer("cohere", decoder_tokenizers)))
    gemma = mlm_head(build_tiny_decoder("gemma2", decoder_tokenizer("gemma2", decoder_tokenizers)))
    llama = mlm_head(build_tiny_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers)))
    assert (cohere.scale, cohere.softcap) == (0.0625, None)
    assert (gemma.scale, gemma.softcap) == (1.0, 0.1)
    assert (llama.scale, llama.softcap) == (1.0, None)
    rows = torch.tensor([1, 2])
    assert (gemma.restricted(rows).softcap, cohere.restricted(rows).scale) == (0.1, 0.0625)


@pytest.mark.parametrize("family", FAMILIES)
def test_projections_are_queries_and_the_key_value_heads(family: str, decoder_tokenizers: Tokenizers) -> None:
    model = build_tiny_decoder(family, decoder_tokenizer(family, decoder_tokenizers)).eval()
    assert len(family_of(model).layers(model)) == model.config.num_hidden_layers == 4
    with capture_projections(model, [1, 4]) as captured, torch.inference_mode():
        model(input_ids=random_ids(model.config.vocab_size, 9))
    for layer in (1, 4):
        assert [tuple(states.shape) for states in captured[layer]] == [
            (2, 9, width) for width in projection_widths(model)
        ]
        assert not torch.equal(captured[layer][1], captured[layer][2])


def test_bloom_fused_projection_is_split_per_head_as_bloom_reads_it(decoder_tokenizers: Tokenizers) -> None:
    model = build_tiny_decoder("bloom", decoder_tokenizer("bloom", decoder_tokenizers)).eval()
    attention = model.transformer.h[0].self_attention
    hidden = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        query, key, value = attention._reshape(attention.query_key_value(hidden))  # (B, heads, T, d) each
        split = family_of(model).split_projection(attention.query_key_value(hidden), model.config)
    for ours, bloom in zip(split, (query, key, value), strict=True):
        assert torch.equal(ours, bloom.transpose(1, 2).flatten(-2))  # (B, T, heads * d)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_trimmed_decoder_gives_the_full_logits_at_the_kept_columns(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """Tied heads (re-tied to the sliced embeddings) and untied ones, saved and loaded again."""
    tokenizer = decoder_tokenizer(family, decoder_tokenizers)
    full = build_tiny_decoder(family, tokenizer).eval()
    specials = [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id]
    kept = sorted({*specials, *range(3, len(tokenizer), 3)})
    trimmed = trim_teacher(build_tiny_decoder(family, tokenizer).eval(), kept)
    assert trimmed.lm_head.weight.shape == (len(kept), full.config.hidden_size)
    tied = trimmed.lm_head.weight is trimmed.get_input_embeddings().weight
    assert tied == bool(full.config.tie_word_embeddings)
    assert trimmed.config.eos_token_id == kept.index(tokenizer.eos_token_id)
    trimmed.save_pretrained(tmp_path)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    student_ids = random_ids(len(kept))
    with torch.inference_mode():
        expected = full(input_ids=id_map_tensor(kept)[student_ids]).logits[..., kept]  # (2, 12, V_kept)
        assert torch.allclose(trimmed(input_ids=student_ids).logits, expected, atol=1e-5)
        assert torch.allclose(exported(input_ids=student_ids).logits, expected, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_student_config_at_a_narrower_shape_builds_that_shape(family: str, decoder_tokenizers: Tokenizers) -> None:
    teacher = build_tiny_decoder(family, decoder_tokenizer(family, decoder_tokenizers))
    adapter = family_of(teacher)
    # BLOOM's feed-forward is 4 x hidden, whatever the shape asks.
    shape = NARROW if family != "bloom" else StudentShape(2, 16, 64, 2)
    config = student_model_config(teacher.config, shape, vocab_size=100)
    student = AutoModelForCausalLM.from_config(config).eval()
    assert student.config.model_type == family
    assert len(adapter.layers(student)) == student.config.num_hidden_layers == 2
    assert (student.config.hidden_size, student.config.num_attention_heads) == (16, 2)
    assert adapter.intermediate_size(student.config) == shape.intermediate_size
    assert student.config.tie_word_embeddings == teacher.config.tie_word_embeddings
    if hasattr(teacher.config, "num_key_value_heads"):
        assert student.config.num_key_value_heads == 1  # the teacher's two query heads per key-value head
    if getattr(teacher.config, "layer_types", None):
        assert len(student.config.layer_types) == 2 and student.config.layer_types[-1] == "full_attention"
    with capture_projections(student, [1]) as captured, torch.inference_mode():
        logits = student(input_ids=random_ids(100, 6)).logits
    assert logits.shape == (2, 6, 100)
    assert [states.shape[-1] for states in captured[1]] == projection_widths(student)
    assert projection_widths(student)[0] == 16


def test_a_student_keeps_the_grouped_query_ratio_or_is_refused(decoder_tokenizers: Tokenizers) -> None:
    teacher = build_tiny_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers))  # 4 heads, 2 key-value
    assert student_model_config(teacher.config, StudentShape(2, 32, 64, 8), 100).num_key_value_heads == 4
    with pytest.raises(MonodistillError, match=r"student.num_heads 3 is not a multiple of 2, .*\(4 heads, 2 key-v"):
        student_model_config(teacher.config, StudentShape(2, 24, 64, 3), 100)


def test_a_bloom_student_with_another_feed_forward_width_is_refused(decoder_tokenizers: Tokenizers) -> None:
    teacher = build_tiny_decoder("bloom", decoder_tokenizer("bloom", decoder_tokenizers))
    with pytest.raises(MonodistillError, match=r"student.intermediate_size 32 cannot apply .*4 x hidden_size \(64\)"):
        student_model_config(teacher.config, NARROW, 100)


def test_layer_kinds_follow_the_teachers_pattern_over_the_students_depth(decoder_tokenizers: Tokenizers) -> None:
    local, full = "sliding_attention", "full_attention"
    assert student_layer_types([local, full] * 13, 5) == [local, full, local, full, local]  # Gemma-2
    assert student_layer_types(([local] * 5 + [full]) * 3, 4) == [local, local, local, full]  # Gemma-3, shallow
    assert student_layer_types(([local] * 5 + [full]) * 3, 7) == [local] * 5 + [full, local]
    assert student_layer_types([full] * 24, 3) == [full] * 3
    teacher = build_tiny_decoder("gemma3_text", decoder_tokenizer("gemma3_text", decoder_tokenizers))
    config = student_model_config(teacher.config, NARROW, 100)
    family_of(teacher).copied_layers_config(config, teacher.config, [0, 3])  # teacher-layers keeps each kind
    assert config.layer_types == [local, full]


def test_a_gemma_students_attention_scale_follows_its_head_width(decoder_tokenizers: Tokenizers) -> None:
    teacher = build_tiny_decoder("gemma2", decoder_tokenizer("gemma2", decoder_tokenizers))
    config = student_model_config(teacher.config, NARROW, 100)
    assert config.head_dim == config.query_pre_attn_scalar == 8


def test_position_limits(decoder_tokenizers: Tokenizers) -> None:
    def limit(family: str) -> int:
        return max_positions(build_tiny_decoder(family, decoder_tokenizer(family, decoder_tokenizers)).config)

    assert limit("gpt2") == limit("llama") == 64
    assert limit("bloom") >= 1 << 20  # ALiBi: no position embeddings to run out of


@pytest.mark.parametrize("bare_class", [LlamaModel, GPT2Model, BloomModel])
def test_a_bare_decoder_without_lm_head_is_refused_in_one_line(
    bare_class: type, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    tokenizer = decoder_tokenizers["byte-level"]
    config_class = bare_class.config_class
    model = bare_class(
        config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match=r"is a decoder without an LM head .*\*ForCausalLM") as error:
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
    assert "\n" not in str(error.value)


def test_an_untied_lm_head_missing_from_the_checkpoint_is_refused(
    decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    path = saved_decoder("llama", decoder_tokenizers, tmp_path)
    weights = load_file(path / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MonodistillError, match=r"no trained LM head \(missing \['lm_head.weight'\]\)") as error:
        load_teacher(TeacherConfig(name_or_path=str(path)))
    assert "\n" not in str(error.value)
    # A tied head is the embeddings, stored once: nothing is missing.
    tied = saved_decoder("qwen2", decoder_tokenizers, tmp_path)
    assert "lm_head.weight" not in load_file(tied / "model.safetensors")
    load_teacher(TeacherConfig(name_or_path=str(tied)))


# --- the tokenizers decoders ship ---


@pytest.mark.parametrize("kind", ["byte-level", "byte-fallback"])
def test_decoder_tokenizers_end_and_pad_and_spell_any_text(kind: str, decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizers[kind]
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    text = "kamusta ka? Ñoño — 字 🙂"  # characters the training text never had: bytes, never an unknown token
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    if kind == "byte-fallback":
        assert "<0xE5>" in tokenizer.convert_ids_to_tokens(ids) and ids[0] == tokenizer.bos_token_id


def test_the_byte_level_tokenizer_renders_chat_messages(decoder_tokenizers: Tokenizers, tmp_path: Path) -> None:
    tokenizer = decoder_tokenizers["byte-level"]
    messages = [{"role": "user", "content": "kamusta"}, {"role": "assistant", "content": "mabuti"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nkamusta<|im_end|>\n<|im_start|>assistant\nmabuti<|im_end|>\n"
    ids = tokenizer(text).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2  # one token each, never spelled out
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "chat_template" in saved or (tmp_path / "chat_template.jinja").is_file()


def test_a_rotary_students_odd_head_width_is_refused_in_one_line(
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast],
) -> None:
    teacher = build_tiny_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers))
    with pytest.raises(MonodistillError, match="heads of 9 dimensions; rotary positions pair"):
        student_model_config(teacher.config, StudentShape(2, 18, 32, 2), 100)


def test_a_teacher_layers_student_keeps_a_head_width_of_its_own() -> None:
    """Gemma's and Qwen3's heads are not hidden / heads wide (Gemma-3-270m: 256 at hidden 640): a student of the
    teacher's width copies the teacher's projections, so it keeps that width (it took hidden / heads and could not
    map them); a student of another width takes hidden / heads."""
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
    )
    teacher = Gemma3ForCausalLM(config).eval()
    shape = {"preset": "custom", "num_layers": 2, "intermediate_size": 64, "num_heads": 4}
    student = build_student(StudentConfig(**shape, hidden_size=32, init="teacher-layers"), teacher)
    assert student.config.head_dim == 16
    assert torch.equal(student.model.layers[1].self_attn.q_proj.weight, teacher.model.layers[3].self_attn.q_proj.weight)
    assert build_student(StudentConfig(**shape, hidden_size=24), teacher).config.head_dim == 6


# --- a Llama student of another family's teacher (student.family=llama) ---


def llama_of(init: str, hidden: int = 32) -> StudentConfig:
    shape = {"num_layers": 2, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_heads": 4}
    return StudentConfig(preset="custom", **shape, family="llama", init=init)


def test_llama_is_the_decoder_family_a_student_is_built_fresh_in() -> None:
    assert student_families("causal") == ("llama",) and "llama" in student_families()
    with pytest.raises(ConfigError, match="student.family must be one of"):
        StudentConfig(family="mistral")  # Llama's adapter serves Mistral, but builds Llama configs


@pytest.mark.parametrize("family", ["qwen2", "gpt2", "gemma3_text", "bloom", "cohere"])
def test_a_llama_student_of_another_decoder_takes_its_vocabulary_ids_and_embeddings(
    family: str, decoder_tokenizers: Tokenizers
) -> None:
    """Llama's defaults (every head its own keys and values) at the student's shape, over the teacher's vocabulary,
    special ids and position limit, tied as the teacher is; teacher-embeddings copies the word embeddings as they
    are at the teacher's width (Gemma's scale by sqrt(hidden) in its forward, not in the weights), projected below."""
    teacher = build_tiny_decoder(family, decoder_tokenizer(family, decoder_tokenizers)).eval()
    student = build_student(llama_of("teacher-embeddings"), teacher)
    assert type(student).__name__ == "LlamaForCausalLM" and student.config.num_key_value_heads == 4
    for field in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings"):
        assert getattr(student.config, field) == getattr(teacher.config, field), field
    assert student.config.max_position_embeddings == max_positions(teacher.config)
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    narrow = build_student(llama_of("teacher-embeddings", hidden=16), teacher)
    assert narrow.get_input_embeddings().weight.shape == (teacher.config.vocab_size, 16)
    with torch.inference_mode():
        assert torch.isfinite(narrow(input_ids=random_ids(teacher.config.vocab_size)).logits).all()
    with pytest.raises(MonodistillError, match=r"teacher-layers copies the teacher's own layers, but student.fam"):
        build_student(llama_of("teacher-layers"), teacher)


def test_a_llama_student_keeps_rotary_heads_of_an_even_width_and_pads_with_eos(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizer("gpt2", decoder_tokenizers)
    teacher = build_tiny_decoder("gpt2", tokenizer)
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token=tokenizer.eos_token)
    check_family_serves(llama_of("random"), teacher.config, no_pad)  # as GPT-2's own tokenizer: EOS pads
    odd = StudentConfig(
        preset="custom", num_layers=1, hidden_size=18, intermediate_size=32, num_heads=2, family="llama"
    )
    with pytest.raises(MonodistillError, match="heads of 9 dimensions; rotary positions pair"):
        build_student(odd, teacher)


@pytest.mark.parametrize(
    ("family", "init", "vocabulary"),
    [
        ("qwen2", "random", "full"),
        ("gpt2", "teacher-embeddings", "full"),
        ("gemma3_text", "teacher-embeddings", "trimmed"),
    ],
)
def test_a_llama_student_distils_from_a_decoder_of_another_family_and_loads(
    family: str, init: str, vocabulary: str, decoder_tokenizers: Tokenizers, corpus_file: Path, tmp_path: Path
) -> None:
    teacher = saved_decoder(family, decoder_tokenizers, tmp_path)
    run = tmp_path / "run"
    overrides = ["student.family=llama", f"student.init={init}", f"vocab.enabled={vocabulary == 'trimmed'}"]
    metrics = distil(teacher, corpus_file, run, tmp_path / "cache", 2, *overrides)
    assert all(math.isfinite(record["loss"]) for record in metrics if record["split"] == "train")
    student = AutoModelForCausalLM.from_pretrained(run / "student").eval()
    assert type(student).__name__ == "LlamaForCausalLM" and student.config.model_type == "llama"
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (2, 16)
    teacher_config = AutoConfig.from_pretrained(teacher)
    assert student.config.tie_word_embeddings == teacher_config.tie_word_embeddings
    assert (student.config.vocab_size < teacher_config.vocab_size) == (vocabulary == "trimmed")
    with torch.inference_mode():
        logits = student(input_ids=random_ids(student.config.vocab_size)).logits
        generated = student.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert logits.shape[-1] == student.config.vocab_size and torch.isfinite(logits).all()
    assert generated.shape[1] <= 6
    assert "| parameters (the decoder with its embeddings" in (run / "student" / "README.md").read_text()


def test_a_llama_student_of_a_masked_teacher_is_refused_in_one_line(
    tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "bert")
    capsys.readouterr()  # saving it draws a progress bar
    run = tmp_path / "run"
    assert main(args(teacher, corpus_file, run, tmp_path / "cache", 2, *STUDENT, *SHORT, "student.family=llama")) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and re.search(
        "student.family=llama is a causal language model .*, the teacher a mask", error[0]
    )
    assert not (run / "checkpoints").exists()
