"""Vocabulary trimming: selection rules, exact segmentation, both tokenizer kinds, export, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.config import DistillConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.vocab import (
    build_trimmed_tokenizer,
    load_trimmed_vocab,
    run_vocab,
    single_character_ids,
    trim_vocabulary,
)

from .conftest import build_tiny_teacher, make_lines, require_shared


def mapped(tokenizer: PreTrainedTokenizerFast, kept: list[int], texts: list[str]) -> list[list[int]]:
    return [[kept[i] for i in ids] for ids in tokenizer(texts)["input_ids"]]


@pytest.fixture(scope="module")
def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style Unigram tokenizer with XLM-R's special tokens, trained on the spot."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>")
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
    )


def test_real_mbert_tokenizer_segments_the_tagalog_corpus_exactly() -> None:
    tokenizer = AutoTokenizer.from_pretrained(require_shared("data", "tokenizers", "bert-base-multilingual-cased"))
    lines = require_shared("data", "tl", "corpus.txt").read_text().splitlines()[:5000]
    trimmed = trim_vocabulary(tokenizer, lines, max_size=None, coverage=None, min_count=1)
    assert 5_000 < len(trimmed.kept_ids) < 40_000  # a small part of mBERT's 119,547
    assert trimmed.coverage == 1.0
    student = build_trimmed_tokenizer(tokenizer, trimmed.kept_ids)
    assert mapped(student, trimmed.kept_ids, lines) == tokenizer(lines)["input_ids"]


def test_unigram_tokenizer_segments_exactly_and_keeps_its_specials(unigram_tokenizer: PreTrainedTokenizerFast) -> None:
    lines = make_lines(300, seed=3)
    trimmed = trim_vocabulary(unigram_tokenizer, lines, max_size=None, coverage=None, min_count=1)
    assert len(trimmed.kept_ids) < len(unigram_tokenizer)
    student = build_trimmed_tokenizer(unigram_tokenizer, trimmed.kept_ids)
    assert mapped(student, trimmed.kept_ids, lines) == unigram_tokenizer(lines)["input_ids"]
    encoded = student.convert_ids_to_tokens(student("ka ma")["input_ids"])
    assert encoded[0] == "<s>" and encoded[-1] == "</s>"
    assert student.convert_ids_to_tokens(student.mask_token_id) == "<mask>"


def test_selection_keeps_specials_single_characters_then_the_most_frequent(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    lines = make_lines(300)
    full = trim_vocabulary(tiny_tokenizer, lines, None, None, 1)
    singles = {i for i in single_character_ids(tiny_tokenizer) if full.counts[i] > 0}
    mandatory = set(tiny_tokenizer.all_special_ids) | singles
    size = len(mandatory) + 10
    small = trim_vocabulary(tiny_tokenizer, lines, max_size=size, coverage=None, min_count=1)
    assert len(small.kept_ids) == size and mandatory <= set(small.kept_ids)
    extra = set(small.kept_ids) - mandatory
    dropped = set(full.kept_ids) - set(small.kept_ids)
    assert min(full.counts[i] for i in extra) >= max(full.counts[i] for i in dropped)
    covered = trim_vocabulary(tiny_tokenizer, lines, max_size=None, coverage=0.9, min_count=1)
    assert covered.coverage >= 0.9 and len(covered.kept_ids) < len(full.kept_ids)
    frequent = trim_vocabulary(tiny_tokenizer, lines, max_size=None, coverage=None, min_count=50)
    assert all(full.counts[i] >= 50 for i in set(frequent.kept_ids) - mandatory)


def test_bad_inputs_get_clear_errors(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(MonodistillError, match="UNK-dominated"):
        trim_vocabulary(tiny_tokenizer, ["日本語のテキスト 漢字 ひらがな"] * 20, None, None, 1)
    with pytest.raises(MonodistillError, match=r"below the \d+ special and single-character tokens"):
        trim_vocabulary(tiny_tokenizer, make_lines(50), max_size=5, coverage=None, min_count=1)
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.train_from_iterator(make_lines(50), trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]", "[MASK]"]))
    with pytest.raises(MonodistillError, match="tokenizer kind BPE cannot be trimmed"):
        build_trimmed_tokenizer(PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]"), [0, 1])


def test_a_vocabulary_from_another_teacher_is_refused(
    tiny_tokenizer: PreTrainedTokenizerFast, unigram_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    lines = make_lines(100)
    kept = trim_vocabulary(tiny_tokenizer, lines, None, None, 1).kept_ids
    build_trimmed_tokenizer(tiny_tokenizer, kept).save_pretrained(tmp_path)
    (tmp_path / "id_map.json").write_text(json.dumps({"id_map": kept}))
    tokenizer, id_map = load_trimmed_vocab(tmp_path, tiny_tokenizer)
    assert id_map == kept and len(tokenizer) == len(kept)
    with pytest.raises(MonodistillError, match="not a subset of the teacher's"):
        load_trimmed_vocab(tmp_path, unigram_tokenizer)


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "deberta-v2"])
def test_exported_teacher_gives_the_full_teachers_logits_at_kept_rows(
    family: str, tiny_tokenizer: PreTrainedTokenizerFast, corpus_file: Path, tmp_path: Path
) -> None:
    teacher_dir = tmp_path / "teacher"
    model = build_tiny_teacher(family, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    model.save_pretrained(teacher_dir)
    tiny_tokenizer.save_pretrained(teacher_dir)
    config = load_config(
        DistillConfig,
        overrides=[f"teacher.name_or_path={teacher_dir}", f"data.corpus={corpus_file}", "vocab.export_teacher=true"],
    )
    out = run_vocab(config, tmp_path / "vocab")
    kept = json.loads((out / "id_map.json").read_text())["id_map"]
    exported = AutoModelForMaskedLM.from_pretrained(out / "teacher").eval()
    assert exported.config.vocab_size == len(kept) < len(tiny_tokenizer)
    student_ids = torch.randint(5, len(kept), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = model.eval()(input_ids=torch.tensor(kept)[student_ids]).logits[..., kept]
        small = exported(input_ids=student_ids).logits
    assert torch.allclose(small, full, atol=1e-5)


def test_cli_vocab_then_distill_with_the_trimmed_vocabulary(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vocab_dir = tmp_path / "vocab"
    common = ["--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file)]
    assert main(["vocab", *common, "--output", str(vocab_dir), "--max-size", "3"]) == 2
    assert "below the" in capsys.readouterr().err
    assert main(["vocab", *common, "--output", str(vocab_dir)]) == 0
    stats = json.loads((vocab_dir / "vocab_stats.json").read_text())
    assert stats["kept_size"] < stats["teacher_vocab_size"] and stats["coverage"] == 1.0
    assert 0.0 <= stats["held_out_trimmed_unk_rate"] < 0.05

    run = tmp_path / "run"
    shape = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16"]
    shape += ["student.intermediate_size=32", "student.num_heads=2", "student.init=teacher-embeddings"]
    argv = ["distill", *common, "--output", str(run), "--max-steps", "4", f"vocab.path={vocab_dir}", *shape]
    argv += ["data.max_seq_length=32", "train.batch_size=4", f"data.cache_dir={cache_dir}"]
    assert main(argv) == 0
    student = AutoModelForMaskedLM.from_pretrained(run / "student")
    assert student.config.vocab_size == stats["kept_size"]
    assert len(AutoTokenizer.from_pretrained(run / "student")) == stats["kept_size"]
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["split"] == "validation" and 0.0 <= final["teacher_mass_outside_vocab"] < 1.0
