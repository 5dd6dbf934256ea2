"""Encoding and word alignment: truncation that keeps head, tail or both, and scoring that cannot drift."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from monodistill.config import EvaluateConfig
from monodistill.evaluate.encode import Encoder, align_labels, share_budget, word_predictions
from monodistill.evaluate.metrics import token_metrics
from monodistill.evaluate.scoring import coverage_report, score
from monodistill.evaluate.splits import tokenize_task
from monodistill.evaluate.tasks import Task

from ..bpe_tokenizers import byte_level_bpe, sentencepiece_bpe
from ..conftest import make_lines, shared_dir

ZWSP = "\u200b"
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# Zero-width spaces stand as words of their own, as they do in scraped text: the tokenizer gives them no piece.
SENTENCES = [
    (["Ako", ZWSP, "si", "Juan", "dela", "Cruz"], ["O", "O", "O", "B-PER", "I-PER", "I-PER"]),
    (["Pumunta", "si", "Maria", ZWSP, "sa", "Maynila", "."], ["O", "O", "B-PER", "O", "O", "B-LOC", "O"]),
    ([ZWSP, "Taga", "Cebu", ZWSP, ZWSP, "si", "Jose", "Rizal"], ["O", "O", "B-LOC", "O", "O", "O", "B-PER", "I-PER"]),
]


@pytest.fixture(params=["mbert", "fixture"])
def word_tokenizer(request: pytest.FixtureRequest, tiny_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerBase:
    """The real mBERT tokenizer where ../shared has it, and always the fixture one (its normaliser drops U+200B)."""
    if request.param == "fixture":
        return tiny_tokenizer
    folder = shared_dir() / "data" / "tokenizers" / "bert-base-multilingual-cased"
    if not folder.is_dir():
        pytest.skip(f"shared tokenizer {folder} is absent (set MONODISTILL_SHARED to its folder)")
    return AutoTokenizer.from_pretrained(folder)


def ner_task(sentences: list[tuple[list[str], list[str]]]) -> Task:
    index = {label: i for i, label in enumerate(NER_LABELS)}
    rows = {"tokens": [words for words, _ in sentences], "tags": [[index[t] for t in tags] for _, tags in sentences]}
    split = datasets.Dataset.from_dict(rows)
    return Task("ner", "token-classification", NER_LABELS, "entity-f1", split, split)


def gold_logits(labels: list[list[int]], num_labels: int) -> np.ndarray:
    """Logits that predict each first piece's gold label and a wrong one everywhere else, padded like the Trainer's."""
    logits = np.full((len(labels), max(map(len, labels)), num_labels), -100.0)
    for row, sentence in enumerate(labels):
        for position, label in enumerate(sentence):
            logits[row, position] = 0.0
            logits[row, position, label if label != -100 else 1] = 1.0
    return logits


def test_mbert_gives_a_zero_width_space_no_piece(word_tokenizer: PreTrainedTokenizerBase) -> None:
    encoded = Encoder(word_tokenizer, 64)([["Ako", ZWSP, "si", "Juan"]], words=True)
    assert 1 not in encoded["word_ids"][0] and encoded["words_without_pieces"] == [1]
    if word_tokenizer.vocab_size > 100_000:  # the real mBERT: exactly the case reported
        assert encoded["word_ids"][0] == [None, 0, 2, 3, None]


def test_gold_predictions_score_perfectly_around_words_without_pieces(word_tokenizer: PreTrainedTokenizerBase) -> None:
    task = ner_task(SENTENCES)
    data = tokenize_task(task, word_tokenizer, max_length=64)
    labels = [list(row) for row in data["test"]["labels"]]
    word_ids = list(data["test"]["word_ids"])
    scores = score(task, gold_logits(labels, len(NER_LABELS)), task.test, word_ids)
    assert scores["accuracy"] == 1.0 and scores["entity_f1"] == 1.0
    report = coverage_report(task, data, task.test)
    assert report["words"] == {"scored": 21, "cut_by_truncation": 0, "without_pieces": 5}

    # The old scorer read predictions by position among first pieces: every word after a lost one shifted.
    positional = []
    for prediction, row, (_, tags) in zip(
        gold_logits(labels, len(NER_LABELS)).argmax(-1), labels, SENTENCES, strict=True
    ):
        first_pieces = [NER_LABELS[i] for i in prediction[: len(row)][np.asarray(row) != -100]]
        positional.append(first_pieces + ["O"] * (len(tags) - len(first_pieces)))
    assert token_metrics(positional, [tags for _, tags in SENTENCES], "entity-f1")["entity_f1"] < 0.5


def test_words_cut_by_truncation_are_counted_and_scored_with_the_fill_label(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    words = make_lines(1, seed=3)[0].split() * 4  # longer than 12 pieces
    task = ner_task([(words, ["B-LOC"] + ["O"] * (len(words) - 1))])
    data = tokenize_task(task, tiny_tokenizer, max_length=12)
    kept_words = {w for w in data["test"]["word_ids"][0] if w is not None}
    report = coverage_report(task, data, task.test)
    assert report["truncated_share"] == {"train": 1.0, "test": 1.0}
    assert report["words"]["cut_by_truncation"] == len(words) - len(kept_words) > 0
    labels = [list(row) for row in data["test"]["labels"]]
    scores = score(task, gold_logits(labels, len(NER_LABELS)), task.test, list(data["test"]["word_ids"]))
    assert scores["accuracy"] == 1.0  # the cut words are all "O", which is the fill label


def test_word_predictions_read_first_pieces_through_word_ids() -> None:
    # [CLS] Ako (zero-width space: no piece) si Ju ##an [SEP]
    assert word_predictions([9, 1, 2, 3, 4, 9], [None, 0, 2, 3, 3, None], num_words=4, fill=0) == [1, 0, 2, 3]
    # head+tail can put pieces of one word on both sides of the seam: its first piece counts, once.
    assert word_predictions([9, 1, 2, 3, 9], [None, 0, 1, 1, None], num_words=3, fill=7) == [1, 2, 7]
    assert align_labels([None, 0, 1, 1, 1, None], [5, 6]) == [-100, 5, 6, -100, -100, -100]


def pieces(tokenizer: PreTrainedTokenizerBase, rows: dict[str, list[Any]], index: int = 0) -> list[str]:
    return tokenizer.convert_ids_to_tokens(rows["input_ids"][index])


def test_truncation_keeps_the_head_the_tail_or_both(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    document = " ".join(["ka", "ma", "ta", "pa", "la", "sa", "na", "ba", "ga", "ng", "bi", "ko"] * 3)  # 36 pieces
    full = tiny_tokenizer.tokenize(document)
    assert len(full) == 36
    head = Encoder(tiny_tokenizer, 10, "head")([document])
    assert pieces(tiny_tokenizer, head) == ["[CLS]", *full[:8], "[SEP]"] and head["truncated"] == [True]
    tail = Encoder(tiny_tokenizer, 10, "tail")([document])
    assert pieces(tiny_tokenizer, tail) == ["[CLS]", *full[-8:], "[SEP]"]
    both = Encoder(tiny_tokenizer, 10, "head+tail")([document])
    assert pieces(tiny_tokenizer, both) == ["[CLS]", *full[:2], *full[-6:], "[SEP]"]  # a quarter, three quarters
    assert Encoder(tiny_tokenizer, 64, "head+tail")([document])["truncated"] == [False]


def test_a_long_news_article_is_cut_from_its_end_by_default(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    article = " ".join(make_lines(80, seed=2))  # some 700 words
    config = EvaluateConfig()
    assert config.truncation == "head"
    rows = Encoder(tiny_tokenizer, config.max_length, config.truncation)([article, "maikli"])
    assert len(rows["input_ids"][0]) == 512 and rows["truncated"] == [True, False]
    assert pieces(tiny_tokenizer, rows)[1:6] == tiny_tokenizer.tokenize(article)[:5]
    with pytest.raises(ValueError, match="evaluate.truncation must be head, tail or head\\+tail, got 'middle'"):
        EvaluateConfig(truncation="middle")


@pytest.mark.parametrize("truncation", ["tail", "head+tail"])
def test_pairs_share_the_budget_longest_first(tiny_tokenizer: PreTrainedTokenizerFast, truncation: str) -> None:
    premise, hypothesis = " ".join(make_lines(6, seed=4)), "ka ma ta"
    rows = Encoder(tiny_tokenizer, 16, truncation)([premise], [hypothesis])
    tokens = pieces(tiny_tokenizer, rows)
    assert len(tokens) == 16 and tokens[-5:] == ["[SEP]", "ka", "ma", "ta", "[SEP]"]  # the short hypothesis is whole
    premise_pieces = tiny_tokenizer.tokenize(premise)
    kept = premise_pieces[-10:] if truncation == "tail" else premise_pieces[:2] + premise_pieces[-8:]
    assert tokens[1:11] == kept


def test_head_truncation_is_what_transformers_does(word_tokenizer: PreTrainedTokenizerBase) -> None:
    lines = make_lines(40, seed=6) + ["Maganda ang Maynila sa gabi" * 9]
    pairs = lines[1:] + lines[:1]
    words = [line.split() for line in lines]
    for max_length in (8, 13, 24, 64):
        encoder = Encoder(word_tokenizer, max_length)
        for ours, theirs in (
            (encoder(lines), word_tokenizer(lines, truncation=True, max_length=max_length)),
            (encoder(lines, pairs), word_tokenizer(lines, pairs, truncation=True, max_length=max_length)),
            (
                encoder(words, words=True),
                word_tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length),
            ),
        ):
            assert {key: ours[key] for key in theirs} == dict(theirs)
        word_ids = encoder(words, words=True)["word_ids"]
        reference = word_tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        assert word_ids == [reference.word_ids(i) for i in range(len(words))]


def test_share_budget_matches_longest_first() -> None:
    assert share_budget(30, None, 10) == (10, None)
    assert share_budget(3, 4, 10) == (3, 4)
    assert share_budget(3, 40, 10) == (3, 7)  # only the longer gives up pieces
    assert share_budget(40, 30, 11) == (6, 5)  # both long: halves, the extra piece to the longer


# --- word tasks see each word's pieces as running text has them, for every tokenizer kind ---


def unigram_tokenizer(lines: list[str]) -> PreTrainedTokenizerFast:
    """XLM-R style: SentencePiece Unigram, ``▁`` marking a word start through the Metaspace pre-tokenizer."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    unigram.train_from_iterator(
        lines, trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    )
    unigram.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=unigram, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip


@pytest.fixture(
    scope="module", params=["wordpiece", "unigram", "byte-level", "sentencepiece", "sentencepiece-no-prefix"]
)
def any_tokenizer(request: pytest.FixtureRequest, tiny_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Each tokenizer kind the project supports: BERT, XLM-R, GPT-2/RoBERTa/ModernBERT, SentencePiece BPE with
    byte fallback with a dummy prefix (Llama) and without one (Gemma, mmBERT: only spaces become ``▁``)."""
    lines = make_lines(600, seed=1)
    if request.param == "wordpiece":
        return tiny_tokenizer
    if request.param == "unigram":
        return unigram_tokenizer(lines)
    if request.param == "byte-level":
        return byte_level_bpe(lines)
    # Trained word by word, as SentencePiece splits by whitespace: no piece runs across a space (Gemma's have none).
    tokenizer = sentencepiece_bpe([word for line in lines for word in line.split()])
    if request.param == "sentencepiece-no-prefix":
        tokenizer.backend_tokenizer.normalizer = normalizers.Replace(" ", "▁")
    return tokenizer


def running_text_words(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> list[list[str]]:
    """The pieces of ``words`` joined by spaces, cut where a word starts: at a piece that is no ``##`` suffix
    (WordPiece), or at a ``Ġ`` or ``▁`` word-start marker (the others)."""
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"])
    wordpiece = any(piece.startswith("##") for piece in tokenizer.get_vocab())
    grouped: list[list[str]] = []
    for index, piece in enumerate(pieces):
        starts = not piece.startswith("##") if wordpiece else piece.startswith(("Ġ", "▁"))
        if index == 0 or starts:
            grouped.append([])
        grouped[-1].append(piece)
    return grouped


def test_each_words_pieces_are_those_of_running_text(any_tokenizer: PreTrainedTokenizerFast) -> None:
    sentences = [line.rstrip(".").split() + ["."] for line in make_lines(12, seed=7)]
    sentences.append(["Ang", "bata", "ay", "naglalaro", "."])
    tags = [[NER_LABELS[index % len(NER_LABELS)] for index in range(len(words))] for words in sentences]
    data = tokenize_task(ner_task(list(zip(sentences, tags, strict=True))), any_tokenizer, max_length=128)
    index = {label: i for i, label in enumerate(NER_LABELS)}
    for words, sentence_tags, row in zip(sentences, tags, data["test"], strict=True):
        assert row["input_ids"] == any_tokenizer(" ".join(words))["input_ids"]
        pieces = any_tokenizer.convert_ids_to_tokens(row["input_ids"])
        word_ids = row["word_ids"]
        by_word = [[p for p, w in zip(pieces, word_ids, strict=True) if w == k] for k in range(len(words))]
        assert by_word == running_text_words(any_tokenizer, words)
        # The label sits on each word's first piece, -100 everywhere else.
        first_pieces = [word_ids.index(k) for k in range(len(words))]
        assert [row["labels"][position] for position in first_pieces] == [index[tag] for tag in sentence_tags]
        assert all(label == -100 for p, label in enumerate(row["labels"]) if p not in first_pieces)
