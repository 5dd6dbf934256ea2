"""Vocabulary trimming: selection, exact segmentation, both tokenizer kinds, teacher export, errors, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from monodistill.cli import main
from monodistill.config import DistillConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.families import supported_families
from monodistill.vocab import (
    build_trimmed_tokenizer,
    compare_segmentation,
    id_map_tensor,
    load_trimmed_vocab,
    run_vocab,
    select_ids,
    trim_teacher,
    trim_vocabulary,
)

from .conftest import build_tiny_teacher, make_lines, require_shared

UNIGRAM_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def mapped_ids(tokenizer: PreTrainedTokenizerFast, kept: list[int], texts: list[str]) -> list[list[int]]:
    """The student's ids for ``texts`` (special tokens included), translated into teacher ids."""
    return [[kept[i] for i in ids] for ids in tokenizer(texts)["input_ids"]]


def lines_split_differently(
    teacher: PreTrainedTokenizerFast, student: PreTrainedTokenizerFast, kept: list[int], lines: list[str]
) -> list[int]:
    """Indices of the lines whose student ids (special tokens included), mapped to teacher ids, differ."""
    full = unpadded(teacher).encode_batch_fast(lines)
    small = unpadded(student).encode_batch_fast(lines)
    return [index for index, (a, b) in enumerate(zip(full, small, strict=True)) if [kept[i] for i in b.ids] != a.ids]


def unpadded(tokenizer: PreTrainedTokenizerFast) -> Tokenizer:
    """A copy of the backend without padding or truncation, which a wrapper call may leave on a shared one."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def run_vocab_on(teacher: Path, corpus: Path, output: Path, *overrides: str) -> dict[str, Any]:
    """``monodistill vocab`` with default settings; returns its ``vocab_stats.json``."""
    config = load_config(
        DistillConfig, overrides=[f"teacher.name_or_path={teacher}", f"data.corpus={corpus}", *overrides]
    )
    run_vocab(config, output)
    return dict(json.loads((output / "vocab_stats.json").read_text()))


@pytest.fixture(scope="module")
def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style Unigram tokenizer with XLM-R's special tokens and post-processor."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=UNIGRAM_SPECIALS, unk_token="<unk>")
    tokenizer.train_from_iterator(make_lines(800, seed=3) + make_lines(200, seed=9), trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="module")
def mbert() -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(require_shared("data", "tokenizers", "bert-base-multilingual-cased"))


@pytest.fixture(scope="module")
def tagalog_lines() -> list[str]:
    lines = require_shared("data", "tl", "corpus.txt").read_text().splitlines()
    return [line for line in lines[:5000] if line.strip()]


# --- the real mBERT tokenizer on the shared Tagalog corpus ---


def test_mbert_without_limit_segments_the_corpus_exactly(
    mbert: PreTrainedTokenizerFast, tagalog_lines: list[str]
) -> None:
    trimmed = trim_vocabulary(mbert, tagalog_lines, max_size=None, coverage=None, min_count=1)
    assert 5_000 < len(trimmed.kept_ids) < 40_000  # a small part of mBERT's 119,547
    assert trimmed.coverage == 1.0 and trimmed.kept_ids == sorted(trimmed.kept_ids)
    student = build_trimmed_tokenizer(mbert, trimmed.kept_ids)
    assert mapped_ids(student, trimmed.kept_ids, tagalog_lines) == mbert(tagalog_lines)["input_ids"]
    for name in ("cls_token", "sep_token", "mask_token", "pad_token", "unk_token"):
        student_id = getattr(student, f"{name}_id")
        assert trimmed.kept_ids[student_id] == getattr(mbert, f"{name}_id")
        assert student.convert_ids_to_tokens(student_id) == getattr(mbert, name)


def test_mbert_with_a_size_limit_spells_words_out_instead_of_adding_unknowns(
    mbert: PreTrainedTokenizerFast, tagalog_lines: list[str]
) -> None:
    trimmed = trim_vocabulary(mbert, tagalog_lines, max_size=2_000, coverage=None, min_count=1)
    assert len(trimmed.kept_ids) == 2_000 and trimmed.coverage < 1.0
    student = build_trimmed_tokenizer(mbert, trimmed.kept_ids)
    stats = compare_segmentation(mbert, student, trimmed.kept_ids, tagalog_lines)
    # Every character of the corpus keeps its "x" and "##x" tokens: no word becomes UNK that was not already.
    assert stats.trimmed_unk_rate * stats.trimmed_tokens == pytest.approx(stats.teacher_unk_rate * stats.teacher_tokens)
    assert stats.identical_documents < 1.0 and stats.trimmed_tokens > stats.teacher_tokens


@pytest.mark.slow
def test_vocabulary_built_on_the_shared_tagalog_corpus_splits_every_line_as_mbert(tmp_path: Path) -> None:
    tokenizer_dir = require_shared("data", "tokenizers", "bert-base-multilingual-cased")
    corpus = require_shared("data", "tl", "corpus.txt")
    stats = run_vocab_on(tokenizer_dir, corpus, tmp_path / "vocab")
    teacher = AutoTokenizer.from_pretrained(tokenizer_dir)
    student, kept = load_trimmed_vocab(tmp_path / "vocab", teacher)
    lines = corpus.read_text(encoding="utf-8").splitlines()
    assert lines_split_differently(teacher, student, kept, lines) == []
    assert stats["counted_documents"] == len([line for line in lines if line.strip()])
    # The held-out measurement still uses a vocabulary built without those lines, so it sees new words.
    assert stats["held_out"]["kept_size"] < stats["kept_size"] and stats["held_out"]["identical_documents"] < 1.0
    # The figure README.md states is the one this builds.
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    stated = re.search(r"mBERT's 119,547 tokens shrink to ([\d,]+)", readme)
    assert stated is not None and int(stated.group(1).replace(",", "")) == stats["kept_size"]


# --- tiny tokenizers trained here: WordPiece (conftest) and Unigram ---


def test_unigram_without_limit_segments_exactly_and_keeps_its_specials(
    unigram_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    lines = make_lines(300, seed=3)
    trimmed = trim_vocabulary(unigram_tokenizer, lines, max_size=None, coverage=None, min_count=1)
    assert len(trimmed.kept_ids) < len(unigram_tokenizer)
    student = build_trimmed_tokenizer(unigram_tokenizer, trimmed.kept_ids)
    assert mapped_ids(student, trimmed.kept_ids, lines) == unigram_tokenizer(lines)["input_ids"]
    student.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(lines[:20])["input_ids"] == student(lines[:20])["input_ids"]
    tokens = reloaded.convert_ids_to_tokens(reloaded(f"ka ma {reloaded.mask_token}")["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and "<mask>" in tokens
    assert reloaded.model_input_names == ["input_ids", "attention_mask"]
    assert reloaded.convert_ids_to_tokens(reloaded.pad_token_id) == "<pad>"


def test_unigram_with_a_size_limit_falls_back_to_single_characters(
    unigram_tokenizer: PreTrainedTokenizerFast,
) -> None:
    lines = make_lines(300, seed=3)
    trimmed = trim_vocabulary(unigram_tokenizer, lines, max_size=None, coverage=None, min_count=1)
    small = trim_vocabulary(unigram_tokenizer, lines, max_size=trimmed.minimum_size + 5, coverage=None, min_count=1)
    student = build_trimmed_tokenizer(unigram_tokenizer, small.kept_ids)
    stats = compare_segmentation(unigram_tokenizer, student, small.kept_ids, lines)
    assert stats.trimmed_unk_rate == 0.0 and stats.trimmed_tokens > stats.teacher_tokens


def test_wordpiece_keeps_both_forms_of_each_character_and_the_most_frequent_tokens(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    lines = make_lines(300)
    full = trim_vocabulary(tiny_tokenizer, lines, None, None, 1)
    tokens = set(tiny_tokenizer.convert_ids_to_tokens(full.kept_ids))
    characters = {c for line in lines for c in line if not c.isspace()}
    for character in characters:
        assert {character, f"##{character}"} & set(tiny_tokenizer.get_vocab()) <= tokens
    size = full.minimum_size + 10
    small = trim_vocabulary(tiny_tokenizer, lines, max_size=size, coverage=None, min_count=1)
    forced = set(trim_vocabulary(tiny_tokenizer, lines, full.minimum_size, None, 1).kept_ids)
    assert len(small.kept_ids) == size and forced <= set(small.kept_ids)
    extra, dropped = set(small.kept_ids) - forced, set(full.kept_ids) - set(small.kept_ids)
    assert min(full.counts[i] for i in extra) >= max(full.counts[i] for i in dropped)
    covered = trim_vocabulary(tiny_tokenizer, lines, max_size=None, coverage=0.9, min_count=1)
    assert covered.coverage >= 0.9 and len(covered.kept_ids) < len(full.kept_ids)
    frequent = trim_vocabulary(tiny_tokenizer, lines, max_size=None, coverage=None, min_count=50)
    assert all(full.counts[i] >= 50 for i in set(frequent.kept_ids) - forced)


def test_trimmed_wordpiece_saves_pads_and_reloads(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    lines = make_lines(200)
    kept = trim_vocabulary(tiny_tokenizer, lines, None, None, 1).kept_ids
    student = build_trimmed_tokenizer(tiny_tokenizer, kept)
    student.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = reloaded(lines[:4], padding=True)
    teacher_batch = tiny_tokenizer(lines[:4], padding=True)
    assert [[kept[i] for i in ids] for ids in batch["input_ids"]] == teacher_batch["input_ids"]
    assert batch["attention_mask"] == teacher_batch["attention_mask"]
    decoded = reloaded.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert decoded == tiny_tokenizer.decode(teacher_batch["input_ids"][0], skip_special_tokens=True)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 50), min_size=8, max_size=40),
    forced_count=st.integers(0, 4),
    extra=st.integers(0, 10),
    coverage=st.one_of(st.none(), st.floats(0.05, 1.0)),
    min_count=st.integers(1, 5),
)
def test_selection_rules(
    counts: list[int], forced_count: int, extra: int, coverage: float | None, min_count: int
) -> None:
    array = np.array(counts, dtype=np.int64)
    forced = set(range(forced_count))
    max_size = forced_count + extra
    kept = select_ids(array, forced, max_size, coverage, min_count)
    added = [i for i in kept if i not in forced]
    assert forced <= set(kept) and kept == sorted(kept) and len(kept) <= max_size
    assert all(array[i] >= min_count for i in added)
    left = [i for i in range(len(counts)) if i not in kept and array[i] >= min_count]
    if added and left:  # nothing left out is more frequent than something added
        assert min(array[added]) >= max(array[left])
    covered = array[kept].sum()
    if coverage is not None and added:  # the last token added was needed to reach the coverage
        assert covered - min(array[added]) < coverage * array.sum()
    if left and len(kept) < max_size and coverage is not None:
        assert covered >= coverage * array.sum()
    unlimited = select_ids(array, forced, None, None, min_count)
    assert set(unlimited) == forced | {i for i in range(len(counts)) if array[i] >= min_count}


# --- errors ---


def test_bad_inputs_get_clear_errors(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(MonodistillError, match="UNK-dominated"):
        trim_vocabulary(tiny_tokenizer, ["日本語のテキスト 漢字 ひらがな"] * 20, None, None, 1)
    minimum = trim_vocabulary(tiny_tokenizer, make_lines(50), None, None, 1).minimum_size
    with pytest.raises(MonodistillError, match=f"single-character tokens this corpus needs: use at least {minimum}"):
        trim_vocabulary(tiny_tokenizer, make_lines(50), max_size=minimum - 1, coverage=None, min_count=1)

    def never_read() -> list[str]:
        raise AssertionError("the corpus was read before the size check")

    with pytest.raises(MonodistillError, match="below the 5 special tokens"):
        trim_vocabulary(tiny_tokenizer, iter(never_read, None), max_size=3, coverage=None, min_count=1)
    with pytest.raises(MonodistillError, match="strictly increasing"):
        build_trimmed_tokenizer(tiny_tokenizer, [0, 1, 2, 3, 4, 9, 7])
    with pytest.raises(MonodistillError, match="tokenizer kind WordLevel cannot be trimmed"):
        build_trimmed_tokenizer(word_level_tokenizer(), [0, 1])


def word_level_tokenizer() -> PreTrainedTokenizerFast:
    """A whole-word vocabulary: dropping a word would make it unknown, so it cannot be trimmed."""
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator(make_lines(50), trainers.WordLevelTrainer(special_tokens=["[UNK]", "[MASK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", mask_token="[MASK]")


def test_a_vocabulary_from_another_teacher_is_refused(
    tiny_tokenizer: PreTrainedTokenizerFast, unigram_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    kept = trim_vocabulary(tiny_tokenizer, make_lines(100), None, None, 1).kept_ids
    build_trimmed_tokenizer(tiny_tokenizer, kept).save_pretrained(tmp_path)
    (tmp_path / "id_map.json").write_text(json.dumps({"teacher": "tiny", "id_map": kept}))
    tokenizer, id_map = load_trimmed_vocab(tmp_path, tiny_tokenizer)
    assert id_map == kept and len(tokenizer) == len(kept)
    assert torch.equal(id_map_tensor(id_map), torch.tensor(kept))
    with pytest.raises(MonodistillError, match=r"not a subset of the teacher's: token '.*' \(student id \d+\)"):
        load_trimmed_vocab(tmp_path, unigram_tokenizer)
    (tmp_path / "id_map.json").write_text(json.dumps({"id_map": [k + 1 for k in kept]}))
    with pytest.raises(MonodistillError, match="not a subset of the teacher's: token '\\[PAD\\]' \\(student id 0\\)"):
        load_trimmed_vocab(tmp_path, tiny_tokenizer)
    (tmp_path / "id_map.json").write_text(json.dumps({"id_map": kept[:-1]}))
    with pytest.raises(MonodistillError, match="id map has"):
        load_trimmed_vocab(tmp_path, tiny_tokenizer)
    with pytest.raises(MonodistillError, match="does not exist"):
        load_trimmed_vocab(tmp_path / "missing", tiny_tokenizer)


# --- the teacher restricted to the kept rows ---


def tiny_masked_lm(family: str, vocab_size: int, pad_token_id: int) -> PreTrainedModel:
    if family == "deberta-v2-lm-predictions":  # DeBERTa-v2's non-legacy head: projection tied to embeddings
        torch.manual_seed(0)
        config = DebertaV2Config(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
            pad_token_id=pad_token_id,
            relative_attention=True,
            position_biased_input=False,
            legacy=False,
        )
        return DebertaV2ForMaskedLM(config)
    if family == "distilbert":
        torch.manual_seed(0)
        config = DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
        return DistilBertForMaskedLM(config)
    return build_tiny_teacher(family, vocab_size, pad_token_id)


def with_random_biases(model: PreTrainedModel) -> PreTrainedModel:
    """Fresh models have zero biases, under which a bias sliced to the wrong rows goes unseen."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


@pytest.mark.parametrize("family", [*supported_families("masked"), "deberta-v2-lm-predictions"])
def test_trimmed_teacher_gives_the_full_teachers_logits_at_kept_columns(
    family: str,
    tiny_tokenizer: PreTrainedTokenizerFast,
    unigram_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
) -> None:
    # RoBERTa-style models count positions from the padding id, which the unigram tokenizer keeps at 1 as they do.
    tokenizer = unigram_tokenizer if family in ("xlm-roberta", "camembert", "roberta") else tiny_tokenizer
    full = with_random_biases(tiny_masked_lm(family, len(tokenizer), tokenizer.pad_token_id)).eval()
    kept = trim_vocabulary(tokenizer, make_lines(100, seed=3), max_size=60, coverage=None, min_count=1).kept_ids
    trimmed = trim_teacher(with_random_biases(tiny_masked_lm(family, len(tokenizer), tokenizer.pad_token_id)), kept)
    trimmed.save_pretrained(tmp_path)
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert exported.config.vocab_size == len(kept) == exported.get_input_embeddings().num_embeddings
    student_ids = torch.randint(5, len(kept), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = full(input_ids=id_map_tensor(kept)[student_ids]).logits[..., kept]  # (2, 12, V_kept)
        logits = exported(input_ids=student_ids).logits
    assert logits.shape == expected.shape
    assert torch.allclose(logits, expected, atol=1e-5)


def test_a_roberta_padding_id_may_not_move(unigram_tokenizer: PreTrainedTokenizerFast) -> None:
    model = build_tiny_teacher("xlm-roberta", len(unigram_tokenizer), unigram_tokenizer.pad_token_id)
    with pytest.raises(MonodistillError, match="position ids"):
        trim_teacher(model, list(range(1, 40)))  # dropping <s> (id 0) would move <pad> from 1 to 0


# --- run_vocab and the CLI ---


def test_cli_vocab_writes_tokenizer_id_map_stats_and_teacher(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vocab"
    argv = ["vocab", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(out)]
    assert main([*argv, "--max-size", "60", "--export-teacher"]) == 0
    assert "kept 60 of" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "id_map.json",
        "teacher",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab_stats.json",
    ]
    teacher_tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    id_map = json.loads((out / "id_map.json").read_text())
    assert id_map["teacher"] == str(tiny_teacher_dir) and id_map["teacher_vocab_size"] == len(teacher_tokenizer)
    stats = json.loads((out / "vocab_stats.json").read_text())
    assert stats["kept_size"] == len(id_map["id_map"]) == 60 and stats["teacher_vocab_size"] == len(teacher_tokenizer)
    assert stats["held_out"]["documents"] == 8  # 2% of the fixture's 400 lines
    assert 0.0 < stats["coverage"] < 1.0 and stats["held_out_unk_rate"] == 0.0
    student, kept = load_trimmed_vocab(out, teacher_tokenizer)
    assert kept == id_map["id_map"] and len(student) == len(AutoTokenizer.from_pretrained(out / "teacher")) == 60
    exported = AutoModelForMaskedLM.from_pretrained(out / "teacher")
    assert exported.config.vocab_size == 60

    # Without a limit the corpus is split exactly as the teacher does.
    assert main([*argv[:-1], str(tmp_path / "all")]) == 0
    stats = json.loads((tmp_path / "all" / "vocab_stats.json").read_text())
    assert stats["coverage"] == 1.0 and stats["corpus_check"]["identical_documents"] == 1.0


def test_vocabulary_covers_every_line_including_the_held_out_ones(
    tiny_teacher_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # The last 2% (8 of 400 lines) come from another word list: tokens the first 392 lines never use.
    lines = make_lines(392) + make_lines(8, seed=7)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    seen_first = {i for ids in tiny_tokenizer(lines[:392])["input_ids"] for i in ids}
    assert {i for ids in tiny_tokenizer(lines[392:])["input_ids"] for i in ids} - seen_first
    stats = run_vocab_on(tiny_teacher_dir, corpus, tmp_path / "vocab")
    student, kept = load_trimmed_vocab(tmp_path / "vocab", tiny_tokenizer)
    assert lines_split_differently(tiny_tokenizer, student, kept, lines) == []
    assert stats["counted_documents"] == 400 and stats["coverage"] == 1.0 and stats["kept_size"] == len(kept)
    # Held-out statistics come from a vocabulary built without the last 8 lines, which splits them differently.
    held = stats["held_out"]
    assert held["documents"] == 8 and held["kept_size"] < len(kept)
    assert held["coverage"] < 1.0 and held["identical_documents"] < 1.0
    assert held["trimmed_tokens"] > held["teacher_tokens"]


def test_cli_reports_bad_inputs_on_stderr(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def vocab(teacher: Path, corpus: Path, output: Path, *extra: str) -> str:
        argv = ["vocab", "--teacher", str(teacher), "--corpus", str(corpus), "--output", str(output), *extra]
        assert main(argv) == 2
        return capsys.readouterr().err

    out = tmp_path / "out"
    assert "use at least" in vocab(tiny_teacher_dir, corpus_file, out, "--max-size", "20")
    japanese = tmp_path / "ja.txt"
    japanese.write_text("日本語のテキストです。\n漢字とひらがな。\n" * 50)
    assert "UNK-dominated" in vocab(tiny_teacher_dir, japanese, out)
    word_level_dir = tmp_path / "word-level"
    word_level_tokenizer().save_pretrained(word_level_dir)
    # The tokenizer is refused before the (missing) corpus is read.
    assert "tokenizer kind WordLevel cannot be trimmed" in vocab(word_level_dir, tmp_path / "missing.txt", out)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert "is not a trimmed vocabulary folder" in vocab(tiny_teacher_dir, corpus_file, tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert not out.exists()


def test_distillation_uses_a_vocabulary_built_by_run_vocab(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    overrides = [f"teacher.name_or_path={tiny_teacher_dir}", f"data.corpus={corpus_file}", "vocab.coverage=0.95"]
    vocab_dir = run_vocab(load_config(DistillConfig, overrides=overrides), tmp_path / "vocab")
    kept_size = len(json.loads((vocab_dir / "id_map.json").read_text())["id_map"])
    run = tmp_path / "run"
    shape = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16"]
    shape += ["student.intermediate_size=32", "student.num_heads=2", "student.init=teacher-embeddings"]
    argv = ["distill", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(run)]
    argv += ["--max-steps", "2", f"vocab.path={vocab_dir}", *shape, "data.max_seq_length=32", "train.batch_size=4"]
    assert main([*argv, f"data.cache_dir={cache_dir}"]) == 0
    assert AutoModelForMaskedLM.from_pretrained(run / "student").config.vocab_size == kept_size
    assert len(AutoTokenizer.from_pretrained(run / "student")) == kept_size


def test_stand_in_teacher_exported_on_tagalog_matches_the_full_teacher(
    tagalog_lines: list[str], tmp_path: Path
) -> None:
    teacher_dir = require_shared("models", "mmt-mini")
    corpus = tmp_path / "tl.txt"
    corpus.write_text("\n".join(tagalog_lines[:2000]) + "\n")
    overrides = [f"teacher.name_or_path={teacher_dir}", f"data.corpus={corpus}", "vocab.export_teacher=true"]
    out = run_vocab(load_config(DistillConfig, overrides=overrides), tmp_path / "vocab")
    full = AutoModelForMaskedLM.from_pretrained(teacher_dir).eval()
    exported = AutoModelForMaskedLM.from_pretrained(out / "teacher").eval()
    student_tokenizer = AutoTokenizer.from_pretrained(out / "teacher")
    kept = id_map_tensor(json.loads((out / "id_map.json").read_text())["id_map"])
    batch = student_tokenizer(tagalog_lines[-4:], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = full(input_ids=kept[batch["input_ids"]], attention_mask=batch["attention_mask"]).logits[..., kept]
        logits = exported(**batch).logits  # (4, T, V_kept)
    assert exported.config.vocab_size == len(kept) < full.config.vocab_size
    assert torch.allclose(logits, expected, atol=1e-4)


def test_a_teacher_folder_without_tokenizer_files_is_refused_not_blamed_on_the_corpus(
    tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path
) -> None:
    # transformers would hand the folder a 5-token stand-in, and the corpus would look UNK-dominated.
    teacher = tmp_path / "weights-only"
    build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id).save_pretrained(teacher)
    with pytest.raises(MonodistillError, match=rf"teacher folder {teacher} holds no tokenizer files"):
        run_vocab_on(teacher, corpus_file, tmp_path / "vocab")
    assert not (tmp_path / "vocab").exists()


def test_vocab_max_size_beside_vocab_path_is_refused_naming_both(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vocabulary in vocab.path is used as it was built: a size beside it would be ignored, so it is refused."""
    import yaml

    folder = tmp_path / "vocab"
    run = tmp_path / "run"
    argv = ["distill", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(run)]
    assert main([*argv, f"vocab.path={folder}", "vocab.max_size=500"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "vocab.max_size=500" in lines[0] and f"vocab.path={folder}" in lines[0], lines
    assert not run.exists()

    students = [{"name": "a"}, {"name": "b", "overrides": [f"vocab.path={folder}", "vocab.max_size=500"]}]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"teacher": {"name_or_path": str(tiny_teacher_dir)}, "students": students}))
    assert main(["distill", "--config", str(sweep), "--corpus", str(corpus_file), "--output", str(tmp_path / "x")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "student 'b': " in lines[0] and "vocab.max_size=500" in lines[0], lines
    assert f"vocab.path={folder}" in lines[0] and not (tmp_path / "x").exists()


def test_a_vocabulary_folder_without_tokenizer_json_is_named_in_one_line(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    kept = trim_vocabulary(tiny_tokenizer, make_lines(100), None, None, 1).kept_ids
    build_trimmed_tokenizer(tiny_tokenizer, kept).save_pretrained(tmp_path)
    (tmp_path / "id_map.json").write_text(json.dumps({"teacher": "tiny", "id_map": kept}))
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(MonodistillError) as error:
        load_trimmed_vocab(tmp_path, tiny_tokenizer)
    message = str(error.value)
    assert "\n" not in message and f"{tmp_path} holds no tokenizer.json" in message, message
    assert "sentencepiece" not in message.lower()
