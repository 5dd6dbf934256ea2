"""Shipping a causal student: saved for ``AutoModelForCausalLM`` and ``pipeline("text-generation")`` with a
generation config in its own (trimmed) token ids and its chat template, and described as a decoder by its card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast, pipeline

from monodistill.card import render_card
from monodistill.config import StudentConfig
from monodistill.recipe import save_student
from monodistill.student import build_student
from monodistill.student.generation import end_of_turn_id, generation_config
from monodistill.student.sentence import MODULES, POOLING_DIR
from monodistill.vocab import remap_special_ids, trim_teacher

from .conftest import build_tiny_decoder, decoder_tokenizer, save_decoder
from .test_causal import distil

Tokenizers = dict[str, PreTrainedTokenizerFast]
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", POOLING_DIR)


@pytest.fixture(scope="module")
def trimmed_run(tmp_path_factory: pytest.TempPathFactory, decoder_tokenizers: Tokenizers, corpus_file: Path) -> Path:
    """A Llama student distilled for 2 steps over a vocabulary trimmed to the corpus (ChatML tokens kept)."""
    folder = tmp_path_factory.mktemp("ship")
    teacher = save_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers), folder / "teacher")
    run = folder / "run"
    distil(teacher, corpus_file, run, folder / "cache", 2, "vocab.enabled=true", "data.language=tl")
    return run


def front_matter(card: str) -> dict[str, Any]:
    return yaml.safe_load(card.split("---")[1])  # type: ignore[no-any-return]


def test_a_distilled_decoder_loads_for_generation_in_its_own_trimmed_ids(trimmed_run: Path) -> None:
    student_dir = trimmed_run / "student"
    assert not [name for name in SENTENCE_FILES if (student_dir / name).exists()]  # no sentence-transformers
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    teacher_tokenizer = AutoTokenizer.from_pretrained(trimmed_run.parent / "teacher")
    assert len(tokenizer) < len(teacher_tokenizer)  # trimmed: the teacher's ids no longer hold
    model = AutoModelForCausalLM.from_pretrained(student_dir)
    assert model.config.vocab_size == len(tokenizer)
    saved = json.loads((student_dir / "generation_config.json").read_text())
    stops = [tokenizer.eos_token_id] + ([] if end_of_turn_id(tokenizer) is None else [end_of_turn_id(tokenizer)])
    assert saved["eos_token_id"] == (stops[0] if len(stops) == 1 else stops)
    assert (saved["bos_token_id"], saved["pad_token_id"]) == (tokenizer.bos_token_id, tokenizer.pad_token_id)
    config = json.loads((student_dir / "config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"]) == (tokenizer.eos_token_id, tokenizer.pad_token_id)

    generate = pipeline("text-generation", model=str(student_dir))
    generated = generate("ang bahay", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert isinstance(generated, str) and generated.startswith("ang bahay")
    tokens = model.generate(**tokenizer("ang bahay", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert int(tokens.max()) < len(tokenizer)


def test_a_trimmed_student_keeps_its_teachers_chat_template_and_stops_at_its_end_of_turn(trimmed_run: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trimmed_run / "student")
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    messages = [{"role": "user", "content": "kamusta"}, {"role": "assistant", "content": "mabuti"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert ids.count(end_of_turn) == 2 and end_of_turn_id(tokenizer) == end_of_turn
    saved = json.loads((trimmed_run / "student" / "generation_config.json").read_text())
    assert saved["eos_token_id"] == [tokenizer.eos_token_id, end_of_turn]


def test_the_decoders_card_says_how_it_generates_and_what_it_was_trained_on(trimmed_run: Path) -> None:
    saved = (trimmed_run / "student" / "README.md").read_text()
    for card in (saved, render_card(trimmed_run)):
        metadata = front_matter(card)
        assert metadata["pipeline_tag"] == "text-generation" and metadata["language"] == ["tl"]
        assert metadata["tags"] == ["monodistill", "knowledge-distillation", "causal-lm"]
        text = " ".join(card.split())
        assert "fill-mask" not in card and "masked-LM" not in text and "masked positions" not in text
        assert "SentenceTransformer" not in card
        assert 'pipeline("text-generation", model="PATH_OR_REPO")' in card
        assert 'AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")' in card
        assert (
            "0.5 x next-token T^2 x KL(teacher_T || student_T) at T = 4.0 at every position + 0.5 x the student's "
            "own next-token cross-entropy" in text
        )
        assert "| next-token cross-entropy (nats per token) |" in card and "| mlm loss |" not in card
        assert "| parameters (the decoder with its embeddings, an untied LM head aside) |" in card
        assert "the encoder" not in text
    assert render_card(trimmed_run) == saved  # `monodistill card` finds the objective in the student's config


def test_the_from_scratch_control_is_not_called_distilled_or_adapted(
    decoder_tokenizers: Tokenizers, corpus_file: Path, tmp_path: Path
) -> None:
    teacher = save_decoder("qwen2", decoder_tokenizer("qwen2", decoder_tokenizers), tmp_path / "teacher")
    run = tmp_path / "control"
    distil(teacher, corpus_file, run, tmp_path / "cache", 2, "loss.alpha_kl=0", "loss.alpha_mlm=1")
    card = (run / "student" / "README.md").read_text()
    metadata = front_matter(card)
    assert metadata["pipeline_tag"] == "text-generation" and "from-scratch" in metadata["tags"]
    text = " ".join(card.split())
    assert "distilled by" not in text and "adapted" not in text and "## Training" in card
    assert f"# control: trained without distillation, a control for {teacher}" in card
    assert "trained by monodistill from scratch (random weights)" in text and "the control" in text
    assert "| | student | teacher |" in card  # a student of its own shape, compared with the teacher
    assert "Loss: 1.0 x the student's own next-token cross-entropy." in text


@pytest.mark.parametrize("family", ["gemma2", "gpt2", "qwen2"])
def test_save_student_writes_a_generation_config_of_the_tokenizers_ids(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """Each tokenizer kind (byte-fallback: Gemma's ids, BOS first; byte-level with ChatML), through ``save_student``
    as distillation calls it; a config id outside the vocabulary (a stale teacher id) is replaced."""
    tokenizer = decoder_tokenizer(family, decoder_tokenizers)
    student = build_tiny_decoder(family, tokenizer)
    student.config.eos_token_id = [len(tokenizer) + 5]  # as a list of teacher ids left unmapped would be
    save_student(tmp_path / "student", student, tokenizer, "card\n")
    saved = json.loads((tmp_path / "student" / "generation_config.json").read_text())
    stops = [tokenizer.eos_token_id] + ([] if end_of_turn_id(tokenizer) is None else [end_of_turn_id(tokenizer)])
    assert saved["eos_token_id"] == (stops[0] if len(stops) == 1 else stops)
    assert (saved["bos_token_id"], saved["pad_token_id"]) == (tokenizer.bos_token_id, tokenizer.pad_token_id)
    assert json.loads((tmp_path / "student" / "config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id
    assert not (tmp_path / "student" / "modules.json").exists()
    assert AutoTokenizer.from_pretrained(tmp_path / "student").chat_template == tokenizer.chat_template
    assert len(stops) == (2 if tokenizer.chat_template else 1)  # ChatML's <|im_end|> on the byte-level one
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    with torch.inference_mode():
        out = loaded.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= 6


def test_special_ids_listed_in_a_config_follow_the_trimmed_vocabulary() -> None:
    """Gemma-3's, Qwen2.5's and Llama-3's configs stop at several ids (``eos_token_id: [1, 106]``): each becomes its
    student id, an id the trimming dropped is left out, a list stays a list, and one with no id kept becomes None
    (as a single dropped id does: a stale teacher id could point past the student's embeddings)."""
    config = LlamaConfig(bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0)
    remap_special_ids(config, [0, 1, 2, 50, 106])
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (2, [1, 4], 0)
    config = LlamaConfig(bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0)
    remap_special_ids(config, [0, 2, 106])
    assert config.eos_token_id == [2]
    remap_special_ids(config, [0, 1])  # the student's id 2 (the teacher's 106) is dropped in turn
    assert config.eos_token_id is None


def test_a_trimmed_decoder_stops_at_each_of_its_teachers_end_ids_in_its_own_ids(
    decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """A Gemma-3 teacher that ends a text at EOS or at its end of turn: the student built over a trimmed vocabulary
    and the trimmed teacher saved beside it (its config and its generation config) name both in their own ids."""
    tokenizer = decoder_tokenizer("gemma3_text", decoder_tokenizers)
    teacher = build_tiny_decoder("gemma3_text", tokenizer)
    stops = [tokenizer.eos_token_id, len(tokenizer) - 1]
    teacher.config.eos_token_id = teacher.generation_config.eos_token_id = stops
    kept = sorted({tokenizer.pad_token_id, tokenizer.bos_token_id, *stops, *range(4, 40)})
    shape = StudentConfig(preset="custom", num_layers=1, hidden_size=16, intermediate_size=32, num_heads=2)
    student = build_student(shape, teacher, vocab_ids=torch.tensor(kept))
    assert student.config.eos_token_id == [kept.index(stop) for stop in stops] == [1, len(kept) - 1]
    trim_teacher(teacher, kept).save_pretrained(tmp_path / "teacher")
    for name in ("config.json", "generation_config.json"):
        assert json.loads((tmp_path / "teacher" / name).read_text())["eos_token_id"] == [1, len(kept) - 1], name
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "teacher")
    with torch.inference_mode():
        assert loaded.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False).max() < len(kept)


def test_padding_falls_back_to_the_end_of_text_token(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizer("llama", decoder_tokenizers)
    student = build_tiny_decoder("llama", tokenizer)
    no_pad = PreTrainedTokenizerFast(  # as Llama's tokenizer: no padding token, no chat template
        tokenizer_object=tokenizer.backend_tokenizer, eos_token=tokenizer.eos_token, bos_token=tokenizer.bos_token
    )
    config = generation_config(student, no_pad)
    assert config.pad_token_id == no_pad.eos_token_id and end_of_turn_id(no_pad) is None


def test_encoder_students_keep_their_sentence_transformers_files(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM

    student = BertForMaskedLM(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2))
    tokenizer = _bert_tokenizer(tmp_path)
    save_student(tmp_path / "student", student, tokenizer, "card\n")
    assert json.loads((tmp_path / "student" / "modules.json").read_text()) == MODULES
    assert not (tmp_path / "student" / "generation_config.json").exists()


def _bert_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmno"]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab))
