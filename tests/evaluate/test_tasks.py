"""Task readers: formats, label checks, and errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from monodistill.errors import MonodistillError
from monodistill.evaluate.harness import check_overlap
from monodistill.evaluate.tasks import load_task

from ..conftest import REPO_ROOT, require_shared


def write_task(folder: Path, spec: str, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (folder / name).write_text(content)
    path = folder / "task.yaml"
    path.write_text(spec)
    return path


CLASSIFICATION = (
    "name: t\nkind: classification\ntrain: train.csv\ntest: test.csv\ntext_column: text\nlabel_column: label\n"
)


def test_csv_classification_with_inferred_labels(tmp_path: Path) -> None:
    files = {"train.csv": "text,label\nmaganda,pos\npangit,neg\n", "test.csv": "text,label\nmaganda ito,pos\n"}
    task = load_task(str(write_task(tmp_path, CLASSIFICATION, files)))
    assert task.labels == ["neg", "pos"] and task.metric == "accuracy"
    assert task.train["label"] == [1, 0] and task.test["text"] == ["maganda ito"]


def test_jsonl_pairs_and_conllu_and_iob(tmp_path: Path) -> None:
    pairs = '{"p": "a", "h": "b", "y": "entailment"}\n{"p": "c", "h": "d", "y": "neutral"}\n'
    spec = "name: n\nkind: pair-classification\ntrain: t.jsonl\ntest: t.jsonl\ntext_column: p\n"
    spec += "text_pair_column: h\nlabel_column: y\n"
    task = load_task(str(write_task(tmp_path, spec, {"t.jsonl": pairs})))
    assert task.train["text_pair"] == ["b", "d"]

    conllu = "# sent_id = 1\n1-2\tsa'yo\t_\t_\t_\t_\t_\t_\t_\t_\n1\tsa\tsa\tADP\t_\t_\t0\tcase\t_\t_\n"
    conllu += "2\tiyo\tikaw\tPRON\t_\t_\t0\troot\t_\t_\n2.1\tx\tx\tX\t_\t_\t_\t_\t_\t_\n\n"
    spec = "name: pos\nkind: token-classification\ntrain: a.conllu\ntest: a.conllu\nlabel_column: upos\n"
    task = load_task(str(write_task(tmp_path, spec, {"a.conllu": conllu})))
    assert task.train["tokens"] == [["sa", "iyo"]] and task.metric == "accuracy"
    assert [task.labels[i] for i in task.train["tags"][0]] == ["ADP", "PRON"]

    iob = "Si\tO\nJose\tB-PER\nRizal\tI-PER\n\nSa\tO\nManila\tB-LOC\n"
    spec = "name: ner\nkind: token-classification\ntrain: a.iob\ntest: a.iob\nlabel_column: tag\n"
    task = load_task(str(write_task(tmp_path, spec, {"a.iob": iob})))
    assert len(task.train) == 2 and task.metric == "entity-f1"


@pytest.mark.parametrize(
    ("files", "spec", "message"),
    [
        ({"train.csv": "text,y\na,1\n", "test.csv": "text,y\na,1\n"}, CLASSIFICATION, "train.csv:1: no column 'label'"),
        (
            {"train.csv": "text,label\na,1\n\n", "test.csv": "text,label\n"},
            CLASSIFICATION,
            "test.csv: the split is empty",
        ),
        (
            {"train.csv": "text,label\na,1\nb,0\n", "test.csv": "text,label\na,1\nb,2\n"},
            CLASSIFICATION + 'labels: ["0", "1"]\n',
            "test.csv:3: label '2' is not in the label set",
        ),
        (
            {"train.csv": "text,label\na,1\nb,0\n", "test.csv": "text,label\na,1\nb,2\n"},
            CLASSIFICATION + "strict_labels: true\n",
            "test.csv:3: label '2' never occurs in the training split",
        ),
        (
            {"a.conllu": "1\tsa\tsa\tADP\t_\t_\n"},
            "name: p\nkind: token-classification\ntrain: a.conllu\ntest: a.conllu\nlabel_column: upos\n",
            "a.conllu:1: a CoNLL-U line needs 10 tab-separated fields, got 6",
        ),
        (
            {"a.iob": "Si\tO\nJose B-PER\n"},
            "name: n\nkind: token-classification\ntrain: a.iob\ntest: a.iob\nlabel_column: tag\n",
            "a.iob:2: expected token<TAB>tag",
        ),
        ({}, "name: n\nkind: regression\ntrain: x\ntest: x\ntext_column: t\nlabel_column: l\n", "kind must be one of"),
        ({}, "name: n\nkind: classification\n", "lacks train, label_column, text_column"),
    ],
)
def test_bad_task_files_name_the_file_and_line(files: dict[str, str], spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match=message.replace("(", r"\(")):
        load_task(str(write_task(tmp_path, spec, files)))


def test_a_test_split_copied_from_train_is_refused(tmp_path: Path) -> None:
    train = "text,label\n" + "".join(f"linya {i},{i % 2}\n" for i in range(8))
    partial = "text,label\nlinya 0,0\nbago 1,1\nbago 2,0\nbago 3,1\n"
    (tmp_path / "partial").mkdir()
    task = load_task(str(write_task(tmp_path / "partial", CLASSIFICATION, {"train.csv": train, "test.csv": partial})))
    assert task.test_overlap() == 0.25
    assert check_overlap(task) == 0.25  # a few shared inputs are normal: reported, not refused

    copied = load_task(str(write_task(tmp_path, CLASSIFICATION, {"train.csv": train, "test.csv": train})))
    assert copied.test_overlap() == 1.0
    with pytest.raises(MonodistillError, match="t: 100% of the test examples also occur in the training split"):
        check_overlap(copied)


def test_unknown_task_lists_the_builtins() -> None:
    with pytest.raises(MonodistillError, match="unknown task 'sentiment-klingon'.*hatespeech-filipino"):
        load_task("sentiment-klingon")


def test_hub_task_offline_says_how_to_use_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(MonodistillError, match="Hugging Face Hub"):
        load_task("hatespeech-filipino")


@pytest.mark.parametrize(
    ("name", "train", "test"),
    [
        ("hatespeech-filipino-local", 10_000, 4_232),
        ("ud-tagalog-pos", 1_561, 1_563),
        ("wikiann-tl-ner", 656, 164),
        ("nli-tagalog-health", 954, 248),
    ],
)
def test_shipped_task_files_read_the_shared_data(name: str, train: int, test: int) -> None:
    require_shared("data", "tasks")
    task = load_task(str(REPO_ROOT / "configs" / "tasks" / f"{name}.yaml"))
    assert (len(task.train), len(task.test)) == (train, test)


TSV_PAIRS = (
    "name: t\nkind: pair-classification\ntrain: train.tsv\ntest: test.tsv\n"
    "text_column: premise\ntext_pair_column: hypothesis\nlabel_column: label\n"
)


def test_tsv_is_one_record_a_line_and_a_quote_is_text(tmp_path: Path) -> None:
    # A premise that opens with a quote once swallowed the tabs and lines after it: 30 rows read as 27.
    labels = ["oo", "hindi"]  # two values: training labels that take one are refused
    rows = [
        f'"Sabi niya {i}\tisang "pahayag" {i}\t{labels[i % 2]}' if i % 10 == 0 else f"p {i}\th {i}\t{labels[i % 2]}"
        for i in range(30)
    ]
    files = {
        "train.tsv": "premise\thypothesis\tlabel\n" + "\n".join(rows) + "\n",
        "test.tsv": "premise\thypothesis\tlabel\np\th\too\n",
    }
    task = load_task(str(write_task(tmp_path, TSV_PAIRS, files)))
    assert len(task.train) == 30
    assert task.train["text"][10] == '"Sabi niya 10' and task.train["text_pair"][10] == 'isang "pahayag" 10'


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        # The quote on line 2 must not hide where the problem is: the label on line 4.
        ("test.tsv", 'premise\thypothesis\tlabel\n"a\tb\too\nc\td\too\ne\tf\tmaybe\n', "test.tsv:4: label 'maybe'"),
        ("test.tsv", 'premise\thypothesis\tlabel\n"a\tb\too\nc\td\too\textra\n', "test.tsv:3: expected 3 fields"),
        # In CSV a quote does open a field, which may span lines; an unclosed one names the line it opens on.
        ("test.csv", 'premise,hypothesis,label\na,b,oo\n"c,d,oo\ne,f,oo\n', "test.csv:3: not valid CSV"),
    ],
)
def test_delimited_errors_name_the_offending_line(name: str, content: str, message: str, tmp_path: Path) -> None:
    spec = TSV_PAIRS.replace("test.tsv", name) + "strict_labels: true\n"
    files = {"train.tsv": "premise\thypothesis\tlabel\na\tb\too\nc\td\thindi\n", name: content}
    with pytest.raises(MonodistillError, match=message):
        load_task(str(write_task(tmp_path, spec, files)))


def test_task_yaml_keeps_labels_as_typed_and_refuses_unknown_keys(tmp_path: Path) -> None:
    files = {"train.csv": "text,label\noo nga,yes\nhindi,no\n", "test.csv": "text,label\noo,yes\n"}
    # YAML 1.1 reads no/yes as booleans: the labels became "False"/"True" and matched no row.
    task = load_task(str(write_task(tmp_path, CLASSIFICATION + "labels: [no, yes, 1.0]\n", files)))
    assert task.labels == ["no", "yes", "1.0"] and task.train["label"] == [1, 0]
    with pytest.raises(MonodistillError, match=r"unknown key 'lables' \(did you mean 'labels'\?\)"):
        load_task(str(write_task(tmp_path, CLASSIFICATION + "lables: [no, yes]\n", files)))
    with pytest.raises(MonodistillError, match="labels must be a list"):
        load_task(str(write_task(tmp_path, CLASSIFICATION + "labels: no\n", files)))


@pytest.mark.parametrize("name", ["test.csv", "test.tsv", "test.jsonl"])
def test_an_empty_split_file_says_empty(name: str, tmp_path: Path) -> None:
    spec = CLASSIFICATION.replace("test.csv", name)
    files = {"train.csv": "text,label\na,1\n", name: ""}
    with pytest.raises(MonodistillError, match=f"{name}: the split is empty"):
        load_task(str(write_task(tmp_path, spec, files)))


def test_files_are_utf8_with_a_bom_tolerated(tmp_path: Path) -> None:
    bom = "\ufeff"
    (tmp_path / "train.csv").write_text(bom + "text,label\nmagandá,pos\npangit,neg\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text(bom + '{"text": "ñ", "label": "pos"}\n', encoding="utf-8")
    (tmp_path / "task.yaml").write_text(bom + CLASSIFICATION.replace("test.csv", "test.jsonl"), encoding="utf-8")
    task = load_task(str(tmp_path / "task.yaml"))
    assert task.train["text"] == ["magandá", "pangit"] and task.test["text"] == ["ñ"]

    (tmp_path / "test.jsonl").write_bytes(b'{"text": "ma' + "gandá".encode("latin-1") + b'", "label": "pos"}\n')
    with pytest.raises(MonodistillError, match=r"test\.jsonl is not UTF-8 \(byte 0xe1 at offset 16\)"):
        load_task(str(tmp_path / "task.yaml"))
