"""Token-file formats: one small file of each, read as it is; words, tags, detection and line numbers in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import TokenFileSpec, read_token_file
from monodistill.evaluate.tasks import load_task

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""
UNIVERSAL_NER = """# sent_id = tl_trg-s1
# text = Si Jose Rizal
1\tSi\tO\t-\t-
2\tJose\tB-PER\t-\t-
3\tRizal\tI-PER\t-\t-

# sent_id = tl_trg-s2
# text = Sa Maynila
1\tSa\tO\t-\t-
2\tMaynila\tB-LOC\t-\t-
"""
WIKIANN_RAW = "tl:Espanya\tB-LOC\ntl:(\tO\ntl:44,400,000\tO\n\ntl:Lucio\tB-PER\ntl:D.\tI-PER\n"
CONLLU = (
    "# sent_id = 1\n1\tSi\tsi\tDET\tDT\t_\t2\tdet\t_\t_\n2\tJose\tJose\tPROPN\tNNP\t_\t0\troot\t_\t_\n\n"
    "1-2\tSa'kin\t_\t_\t_\t_\t_\t_\t_\t_\n1\tSa\tsa\tADP\tIN\t_\t2\tcase\t_\t_\n2\tkin\tako\tPRON\tPRP\t_\t0\troot\t_\t_\n"
)
TOKEN_TAG = "Si\tO\nJose\tB-PER\n\nSa\tO\nManila\tB-LOC\n"


def read(tmp_path: Path, name: str, content: str, **spec: str) -> tuple[list[tuple[int, list[str], list[str]]], str]:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    file = read_token_file(path, TokenFileSpec(**spec))
    for sentence in file.sentences:
        assert sentence.word_lines[0] == sentence.line and len(sentence.word_lines) == len(sentence.words)
    return [(sentence.line, sentence.words, sentence.tags) for sentence in file.sentences], file.format


@pytest.mark.parametrize(
    ("name", "content", "spec", "expected_format", "sentences"),
    [
        (
            "train.txt",
            CONLL2003,
            {},
            "conll2003",
            [
                (3, ["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
                (7, ["Peter", "Blackburn"], ["B-PER", "I-PER"]),
            ],
        ),
        (
            "train.txt",
            CONLL2003,
            {"label_column": "pos"},
            "conll2003",
            [(3, ["EU", "rejects", "German"], ["NNP", "VBZ", "JJ"]), (7, ["Peter", "Blackburn"], ["NNP", "NNP"])],
        ),
        (
            "train.txt",
            CONLL2003,
            {"label_column": "2"},  # 0-based index, as YAML gives it: the chunk column
            "conll2003",
            [(3, ["EU", "rejects", "German"], ["B-NP", "B-VP", "B-NP"]), (7, ["Peter", "Blackburn"], ["B-NP", "I-NP"])],
        ),
        (
            "tl_trg-ud-train.iob2",
            UNIVERSAL_NER,
            {},
            "iob2",
            [(3, ["Si", "Jose", "Rizal"], ["O", "B-PER", "I-PER"]), (9, ["Sa", "Maynila"], ["O", "B-LOC"])],
        ),
        (
            "wikiann-tl.bio",
            WIKIANN_RAW,
            {"language_prefix": "tl"},
            "token-tag",
            [(1, ["Espanya", "(", "44,400,000"], ["B-LOC", "O", "O"]), (5, ["Lucio", "D."], ["B-PER", "I-PER"])],
        ),
        (
            "a.conllu",
            CONLLU,
            {"token_column": "lemma", "label_column": "4"},
            "conllu",
            [(2, ["si", "Jose"], ["DT", "NNP"]), (6, ["sa", "ako"], ["IN", "PRP"])],  # the 1-2 range is no word
        ),
        (
            "a.iob",
            TOKEN_TAG,
            {},
            "token-tag",
            [(1, ["Si", "Jose"], ["O", "B-PER"]), (4, ["Sa", "Manila"], ["O", "B-LOC"])],
        ),
        # Tab-separated CoNLL-2003 with three columns: the tag is the last column by default.
        ("t.tsv", "Si\tDET\tO\nJose\tPROPN\tB-PER\n", {}, "conll2003", [(1, ["Si", "Jose"], ["O", "B-PER"])]),
    ],
)
def test_each_format_reads_words_tags_and_sentence_lines(
    name: str,
    content: str,
    spec: dict[str, str],
    expected_format: str,
    sentences: list[tuple[int, list[str], list[str]]],
    tmp_path: Path,
) -> None:
    assert read(tmp_path, name, content, **spec) == (sentences, expected_format)


def test_the_detected_format_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    read(tmp_path, "train.txt", CONLL2003)
    assert "train.txt: read as conll2003 (line 1 is a -DOCSTART- line" in capsys.readouterr().out
    read(tmp_path, "ner.iob2", UNIVERSAL_NER)
    assert "read as iob2 (line 3 has 5 tab-separated fields, the first a word number" in capsys.readouterr().out
    # A named format is used as named, and not announced.
    assert read(tmp_path, "x.txt", TOKEN_TAG, format="conll2003")[1] == "conll2003"
    assert "read as" not in capsys.readouterr().out


def test_raw_wikiann_prefixes_are_pointed_out_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sentences, _ = read(tmp_path, "wikiann.bio", WIKIANN_RAW)
    assert sentences[0][1][0] == "tl:Espanya"  # kept unless asked
    assert "every word starts with 'tl:'; set language_prefix: tl" in capsys.readouterr().out
    with pytest.raises(MonodistillError, match=r"wikiann.bio:2: token 'Maynila' does not start with 'tl:'"):
        read(tmp_path, "wikiann.bio", "tl:Sa\tO\nMaynila\tB-LOC\n", language_prefix="tl")


@pytest.mark.parametrize(
    ("name", "content", "spec", "message"),
    [
        ("c.txt", CONLL2003.replace("German JJ B-NP B-MISC", "German B-MISC"), {}, "c.txt:5: expected 4 columns"),
        ("u.iob2", UNIVERSAL_NER.replace("2\tMaynila\tB-LOC\t-\t-", "2\tMaynila\tB-LOC"), {}, "u.iob2:10: a Universal"),
        ("a.conllu", "1\tsa\tsa\tADP\t_\t_\n", {}, "a.conllu:1: a CoNLL-U line needs 10 tab-separated fields, got 6"),
        ("t.iob", "Si\tO\nJose B-PER\n", {}, "t.iob:2: expected token<TAB>tag, got 1 fields"),
        ("t.iob", "Si\tO\n\tB-PER\n", {}, "t.iob:2: empty token"),
        ("t.iob", TOKEN_TAG, {"format": "conllu"}, "t.iob:1: a CoNLL-U line needs 10"),
        ("t.iob", TOKEN_TAG, {"label_column": "ner"}, r"label_column 'ner' is not a column here \(token, tag; or"),
        ("t.iob", TOKEN_TAG, {"label_column": "5"}, "label_column 5 is past the last of the 2 columns"),
        ("t.iob", TOKEN_TAG, {"token_column": "1"}, "token_column and label_column are the same column"),
        ("t.txt", "Maynila\n", {}, r"t.txt:1: cannot tell the file's format from 'Maynila'; set format:"),
        ("t.txt", "\n# only a comment\n", {}, "t.txt: the split is empty"),
    ],
)
def test_bad_token_files_name_the_file_and_line(
    name: str, content: str, spec: dict[str, str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(MonodistillError, match=message):
        read(tmp_path, name, content, **spec)


def test_task_yaml_takes_format_and_columns(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text(CONLL2003)
    (tmp_path / "test.txt").write_text(CONLL2003.split("\n\n", 2)[2])
    spec = "name: ner\nkind: token-classification\ntrain: train.txt\ntest: test.txt\nformat: conll2003\n"
    (tmp_path / "ner.yaml").write_text(spec)
    task = load_task(str(tmp_path / "ner.yaml"))
    assert task.train["tokens"] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]] and task.metric == "entity-f1"
    (tmp_path / "pos.yaml").write_text(spec + "token_column: token\nlabel_column: 1\n")
    assert load_task(str(tmp_path / "pos.yaml")).labels == ["JJ", "NNP", "VBZ"]
    (tmp_path / "bad.yaml").write_text(spec.replace("conll2003", "conll"))
    with pytest.raises(MonodistillError, match="format must be one of"):
        load_task(str(tmp_path / "bad.yaml"))
    (tmp_path / "train.csv").write_text("text,label\na,1\nb,0\n")
    (tmp_path / "csv.yaml").write_text(
        "name: c\nkind: classification\ntrain: train.csv\ntest: train.csv\ntext_column: text\nlabel_column: label\n"
        "format: conll2003\n"
    )
    with pytest.raises(MonodistillError, match="format only apply to token-classification files"):
        load_task(str(tmp_path / "csv.yaml"))
