"""ModernBERT (mmBERT's architecture) as teacher and as student, on tiny models built here (sdpa, CPU).

The tiny teacher (``conftest.build_tiny_teacher("modernbert", ...)``) alternates global and local attention
(window 8), so blocks of 32 tokens exercise both; its fused Wqkv projection feeds the relation term.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForMaskedLM,
    ModernBertForMaskedLM,
    ModernBertModel,
    PreTrainedTokenizerFast,
    pipeline,
)

from monodistill import cli
from monodistill.config import ExperimentConfig, StudentConfig, TeacherConfig, load_config
from monodistill.config.base import ConfigError
from monodistill.errors import MonodistillError
from monodistill.families import student_families
from monodistill.families.bert import BERT_MAX_POSITIONS
from monodistill.student import build_student, resolve_shape, student_model_config
from monodistill.teacher import encoder, load_teacher, mlm_head
from monodistill.vocab import compare_segmentation, id_map_tensor, load_trimmed_vocab, trim_teacher

from .bpe_tokenizers import multilingual, sentencepiece_bpe
from .conftest import REPO_ROOT, build_tiny_teacher, require_shared, write_keyword_task


def tiny_modernbert(tokenizer: PreTrainedTokenizerFast, **changes: object) -> ModernBertForMaskedLM:
    """The conftest teacher, with config fields changed and biases made random (a zero bias hides slicing bugs)."""
    config = build_tiny_teacher("modernbert", len(tokenizer), tokenizer.pad_token_id).config
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model = ModernBertForMaskedLM(config)
    with torch.no_grad():
        model.decoder.bias.normal_(generator=torch.Generator().manual_seed(7))
    return model.eval()


def save(model: ModernBertForMaskedLM | ModernBertModel, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --- teacher ---


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_head_equals_the_models_own_logits_tied_or_untied(
    tied: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save(tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied), tiny_tokenizer, tmp_path)
    model, _ = load_teacher(TeacherConfig(name_or_path=str(path)))
    assert (model.decoder.weight is model.model.embeddings.tok_embeddings.weight) == tied
    stored = load_file(path / "model.safetensors")
    assert ("decoder.weight" in stored) == (not tied)
    ids = torch.randint(5, len(tiny_tokenizer), (2, 32), generator=torch.Generator().manual_seed(0))
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, [3, 20]] = True
    positions[1, 31] = True
    with torch.inference_mode():
        full = model(input_ids=ids).logits[positions]  # (3, V)
        hidden = encoder(model)(input_ids=ids).last_hidden_state[positions]  # after final_norm
        head = mlm_head(model)
        assert torch.allclose(head.logits(hidden), full, atol=1e-5)
        rows = torch.tensor([0, 9, 17, 42])
        assert torch.allclose(head.restricted(rows).logits(hidden), full[:, rows], atol=1e-5)
    assert torch.equal(head.bias, stored["decoder.bias"])


def test_a_bare_encoder_is_refused_with_or_without_a_masked_lm_label(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    config = build_tiny_teacher("modernbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id).config
    path = save(ModernBertModel(config), tiny_tokenizer, tmp_path)
    with pytest.raises(MonodistillError, match="not a masked language model"):
        load_teacher(TeacherConfig(name_or_path=str(path)))
    config_file = path / "config.json"
    config_file.write_text(config_file.read_text().replace('"ModernBertModel"', '"ModernBertForMaskedLM"'))
    missing = r"no trained masked-LM head \(missing \['decoder.bias', 'head."
    with pytest.raises(MonodistillError, match=missing) as error:
        load_teacher(TeacherConfig(name_or_path=str(path)))
    assert "\n" not in str(error.value)


def test_embedding_rows_padded_beyond_the_tokenizer_are_accepted(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # mmBERT's tokenizer fills its 256,000 rows; English ModernBERT's 50,280 tokens sit in 50,368 rows.
    model = build_tiny_teacher("modernbert", len(tiny_tokenizer) + 88, tiny_tokenizer.pad_token_id)
    teacher, tokenizer = load_teacher(TeacherConfig(name_or_path=str(save(model, tiny_tokenizer, tmp_path))))
    assert teacher.config.vocab_size - len(tokenizer) == 88


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_trimmed_teacher_slices_embeddings_decoder_weight_and_bias(
    tied: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    full = tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied)
    kept = [0, 1, 2, 3, 4, *range(10, 60, 3)]
    trimmed = trim_teacher(tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied), kept)
    save(trimmed, tiny_tokenizer, tmp_path)
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert exported.config.vocab_size == len(kept) == exported.get_input_embeddings().num_embeddings
    assert exported.decoder.weight.shape[0] == exported.decoder.bias.shape[0] == len(kept)
    assert (exported.decoder.weight is exported.model.embeddings.tok_embeddings.weight) == tied
    assert json.loads((tmp_path / "config.json").read_text())["pad_token_id"] == 0
    student_ids = torch.randint(5, len(kept), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = full(input_ids=id_map_tensor(kept)[student_ids]).logits[..., kept]  # (2, 24, V_kept)
        logits = exported(input_ids=student_ids).logits
    assert torch.allclose(logits, expected, atol=1e-5)


# --- students: either family from either teacher ---

STUDENT = [
    "student.preset=custom",
    "student.num_layers=2",
    "student.hidden_size=16",
    "student.intermediate_size=32",
    "student.num_heads=2",
    "data.max_seq_length=32",
    "train.batch_size=4",
    "train.log_interval=1",
    "data.max_validation_blocks=4",
]


def distil(teacher: Path, corpus: Path, run: Path, cache: Path, *overrides: str, steps: int = 2) -> Path:
    """``monodistill distill`` of a tiny student for a few steps; returns its ``student`` folder."""
    return cli.distill(
        teacher=str(teacher),
        corpus=str(corpus),
        output=str(run),
        max_steps=steps,
        overrides=[*STUDENT, f"data.cache_dir={cache}", *overrides],
    )


def small(family: str | None = None, init: str = "random", layers: int = 2, hidden: int = 16) -> StudentConfig:
    """A student of ``hidden`` width; at 32, the tiny teacher's widths (feed-forward 64 included)."""
    return StudentConfig(
        preset="custom",
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_heads=4,
        init=init,
        family=family,
    )


def test_presets_map_to_each_familys_fields(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bert = build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id).config
    modernbert = build_tiny_teacher("modernbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id).config
    for teacher in (bert, modernbert):
        for preset in ("dbert-base", "dbert-tiny"):
            shape = resolve_shape(StudentConfig(preset=preset))
            for family in student_families():
                config = student_model_config(teacher, shape, teacher.vocab_size, family=family)
                assert config.model_type == family
                assert (config.num_hidden_layers, config.hidden_size) == (shape.num_layers, shape.hidden_size)
                assert (config.intermediate_size, config.num_attention_heads) == (
                    shape.intermediate_size,
                    shape.num_heads,
                )
                assert config.vocab_size == teacher.vocab_size and config.pad_token_id == tiny_tokenizer.pad_token_id
    # A BERT student of a ModernBERT teacher: BERT's learned positions, no more than the teacher's.
    assert student_model_config(modernbert, shape, 300, family="bert").max_position_embeddings == 64
    modernbert.max_position_embeddings = 8192
    assert student_model_config(modernbert, shape, 300, family="bert").max_position_embeddings == BERT_MAX_POSITIONS


def test_modernbert_attention_layout_comes_from_a_modernbert_teacher_else_mmberts(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    bert = build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    modernbert = build_tiny_teacher("modernbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    global_every_third = ["full_attention", "sliding_attention", "sliding_attention"] * 2
    assert modernbert.config.layer_types == global_every_third[:3] + ["full_attention"]
    from_bert = build_student(small("modernbert", layers=6), bert)
    assert isinstance(from_bert, ModernBertForMaskedLM)
    assert from_bert.config.layer_types == global_every_third and from_bert.config.local_attention == 128
    assert from_bert.config.classifier_pooling == "mean" and from_bert.config.cls_token_id is None
    from_modernbert = build_student(small(layers=6), modernbert)  # the teacher's family by default
    assert from_modernbert.config.layer_types == global_every_third and from_modernbert.config.local_attention == 8
    # teacher-layers: each copied layer keeps its attention (teacher layers 0, 2 and 3 for three layers).
    copied = build_student(small(init="teacher-layers", layers=3, hidden=32), modernbert)
    assert copied.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    assert torch.equal(copied.model.layers[1].attn.Wqkv.weight, modernbert.model.layers[2].attn.Wqkv.weight)
    bert_student = build_student(small("bert"), modernbert)
    assert type(bert_student).__name__ == "BertForMaskedLM"
    assert bert_student.config.vocab_size == modernbert.config.vocab_size


def test_a_trimmed_student_of_another_family_remaps_the_teachers_special_ids(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    teacher = build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    teacher.config.pad_token_id = 4  # [MASK] in the fixture; kept at student id 1 below
    kept = torch.tensor([2, 4, *range(10, 28)])
    student = build_student(small("modernbert", init="teacher-embeddings"), teacher, vocab_ids=kept)
    assert student.config.vocab_size == 20 and student.config.pad_token_id == 1


def test_teacher_layers_across_families_is_refused_in_one_line(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    for teacher_family, family in (("bert", "modernbert"), ("modernbert", "bert")):
        teacher = build_tiny_teacher(teacher_family, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
        with pytest.raises(MonodistillError, match=r"student.init=teacher-layers .*student.family") as error:
            build_student(small(family, init="teacher-layers", hidden=32), teacher)
        assert "\n" not in str(error.value)


def test_narrowing_a_modernbert_teacher_is_refused_saying_why(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    teacher = build_tiny_teacher("modernbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    with pytest.raises(MonodistillError, match="cannot narrow a modernbert teacher .*fused"):
        build_student(small(init="teacher-layers", hidden=16), teacher)  # narrower than the teacher's 32


def test_an_unknown_student_family_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="student.family must be one of") as error:
        StudentConfig(family="gpt2")
    assert error.value.fields == ("student.family",)


def test_a_tokenizer_without_padding_cannot_serve_another_family(
    tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path
) -> None:
    # Fine-tuning and fill-mask pad their batches: a student family needs the padding token there.
    unpadded = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer.backend_tokenizer,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    teacher = save(build_tiny_teacher("modernbert", len(unpadded), 0), unpadded, tmp_path / "teacher")
    for family in student_families("masked"):  # a decoder student pads with EOS (test_decoders.py)
        with pytest.raises(MonodistillError, match=rf"student.family={family}: .* no padding token") as error:
            distil(teacher, corpus_file, tmp_path / f"run-{family}", tmp_path / "cache", f"student.family={family}")
        assert "\n" not in str(error.value)
    assert not (tmp_path / "cache").exists()  # refused before the corpus was read


def test_attention_maps_of_a_modernbert_student_are_refused(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path
) -> None:
    overrides = ["student.family=modernbert", "loss.alpha_attention=1", "student.num_heads=4"]
    with pytest.raises(MonodistillError, match="loss.alpha_attention: modernbert attention"):
        distil(tiny_teacher_dir, corpus_file, tmp_path / "run", tmp_path / "cache", *overrides)


# --- end to end: vocab -> distill (both families) -> fill-mask -> evaluate -> export ---


@pytest.fixture(scope="module")
def modernbert_teacher_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    return save(tiny_modernbert(tiny_tokenizer), tiny_tokenizer, tmp_path_factory.mktemp("teacher") / "modernbert")


def test_a_modernbert_teacher_distils_both_families_which_fill_masks_fine_tune_and_export(
    modernbert_teacher_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    vocab = cli.vocab(
        teacher=str(modernbert_teacher_dir),
        corpus=str(corpus_file),
        output=str(tmp_path / "vocab"),
        max_size=80,
        export_teacher=True,
    )
    trimmed_teacher = AutoModelForMaskedLM.from_pretrained(vocab / "teacher")
    assert trimmed_teacher.config.model_type == "modernbert" and trimmed_teacher.decoder.bias.shape == (80,)
    # A BERT student over the full vocabulary; a ModernBERT one over the trimmed one, with the relation and
    # hidden-state terms, which read the teacher's fused Wqkv and its hidden states.
    bert = distil(modernbert_teacher_dir, corpus_file, tmp_path / "bert", cache, "student.family=bert")
    modernbert = distil(
        modernbert_teacher_dir,
        corpus_file,
        tmp_path / "modernbert",
        cache,
        f"vocab.path={vocab}",
        "loss.alpha_relation=1",
        "loss.alpha_hidden=1",
        "student.num_heads=4",
    )
    metrics = [json.loads(line) for line in (tmp_path / "modernbert" / "metrics.jsonl").read_text().splitlines()]
    assert any(record.get("relation", 0) > 0 and record.get("hidden", 0) > 0 for record in metrics)
    task = write_keyword_task(tmp_path, count=40)
    for student, architecture, vocab_size in (
        (bert, "BertForMaskedLM", len(tiny_tokenizer)),
        (modernbert, "ModernBertForMaskedLM", 80),
    ):
        model = AutoModelForMaskedLM.from_pretrained(student)
        assert type(model).__name__ == architecture and model.config.vocab_size == vocab_size
        fill = pipeline("fill-mask", model=str(student), top_k=3)
        assert len(fill(f"ka {fill.tokenizer.mask_token} ma.")) == 3
        results = cli.evaluate(
            models=[str(student)],
            tasks=[str(task)],
            output=str(tmp_path / f"eval-{architecture}"),
            overrides=["epochs=1", "max_length=16", "batch_size=8", "gradient_accumulation_steps=1"],
        )
        assert any(results.rglob("*.json"))
        onnx_path = cli.export(model=str(student), output=str(tmp_path / f"onnx-{architecture}"))
        record = json.loads((onnx_path.parent / "export.json").read_text())
        assert record["architecture"] == architecture and record["max_abs_logit_difference"] < 1e-4
        assert record["inputs"] == ["input_ids", "attention_mask"]


@pytest.mark.smoke
def test_a_modernbert_teacher_with_a_byte_fallback_bpe_goes_through_vocab_distill_evaluate_and_export(
    tmp_path: Path,
) -> None:
    """mmBERT's situation at tiny size: a ModernBERT teacher whose tokenizer is SentencePiece BPE with byte
    fallback (Gemma's kind), trained on the shared Tagalog corpus and other languages."""
    lines = [line for line in require_shared("data", "tl", "corpus.txt").read_text().splitlines() if line.strip()]
    tokenizer = sentencepiece_bpe(multilingual(lines))
    torch.manual_seed(0)
    teacher = save(build_tiny_teacher("modernbert", len(tokenizer), tokenizer.pad_token_id), tokenizer, tmp_path / "t")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines[:3_000]) + "\n")
    vocab = cli.vocab(teacher=str(teacher), corpus=str(corpus), output=str(tmp_path / "vocab"), export_teacher=True)
    student_tokenizer, kept = load_trimmed_vocab(vocab, tokenizer)
    assert len(kept) < len(tokenizer) and sum(token.startswith("<0x") for token in student_tokenizer.get_vocab()) == 256
    # Every line of the corpus segments exactly as the full tokenizer segments it.
    stats = compare_segmentation(tokenizer, student_tokenizer, kept, lines[:3_000])
    assert stats.documents == 3_000 and stats.identical_documents == 1.0
    cache, task = tmp_path / "cache", write_keyword_task(tmp_path, count=40)
    for family in ("bert", "modernbert"):
        student = distil(teacher, corpus, tmp_path / family, cache, f"vocab.path={vocab}", f"student.family={family}")
        model = AutoModelForMaskedLM.from_pretrained(student)
        assert model.config.model_type == family and model.config.vocab_size == len(kept)
        results = cli.evaluate(
            models=[str(student)],
            tasks=[str(task)],
            output=str(tmp_path / f"eval-{family}"),
            overrides=["epochs=1", "max_length=16", "batch_size=8", "gradient_accumulation_steps=1"],
        )
        assert any(results.rglob("seed-*.json"))
        onnx_path = cli.export(model=str(student), output=str(tmp_path / f"onnx-{family}"))
        assert json.loads((onnx_path.parent / "export.json").read_text())["max_abs_logit_difference"] < 1e-4


def test_export_of_a_modernbert_student_feeds_no_token_type_ids(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # A BERT tokenizer (the teacher's) makes token_type_ids; ModernBERT's third forward argument is position_ids.
    bert_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer.backend_tokenizer,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **{name: getattr(tiny_tokenizer, name) for name in ("unk_token", "pad_token", "cls_token", "sep_token")},
        mask_token=tiny_tokenizer.mask_token,
    )
    assert "token_type_ids" in bert_tokenizer("ka ma")
    student = save(tiny_modernbert(tiny_tokenizer), bert_tokenizer, tmp_path / "student")
    onnx_path = cli.export(model=str(student), output=str(tmp_path / "onnx"))
    record = json.loads((onnx_path.parent / "export.json").read_text())
    assert record["inputs"] == ["input_ids", "attention_mask"] and record["max_abs_logit_difference"] < 1e-4


def test_a_bert_student_of_a_modernbert_teacher_is_refused_beyond_its_positions(
    tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path
) -> None:
    teacher = save(tiny_modernbert(tiny_tokenizer, max_position_embeddings=1024), tiny_tokenizer, tmp_path / "t")
    overrides = ["student.family=bert", "data.max_seq_length=600"]
    with pytest.raises(MonodistillError, match="data.max_seq_length=600 is beyond the 512 positions of a student.f"):
        distil(teacher, corpus_file, tmp_path / "run", tmp_path / "cache", *overrides)


# --- the shipped experiment ---


def test_the_mmbert_experiment_config_loads_and_validates_without_the_hub() -> None:
    config = load_config(ExperimentConfig, REPO_ROOT / "configs" / "mmbert-small-tl.yaml")
    assert config.teacher.name_or_path == "jhu-clsp/mmBERT-small"
    modernbert, tiny = config.students
    assert (modernbert.family, modernbert.init, resolve_shape(modernbert).num_layers) == (
        "modernbert",
        "teacher-layers",
        6,
    )
    assert "vocab.enabled=true" in modernbert.overrides
    assert (tiny.family, tiny.preset) == ("bert", "dbert-tiny")
    assert config.data.hub_config == "unshuffled_deduplicated_tl"
    assert config.evaluate.tasks == ["hatespeech-filipino", "newsph-nli", "tlunified-ner"]
