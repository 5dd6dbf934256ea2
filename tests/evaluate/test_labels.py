"""Degenerate tasks refused before fine-tuning; test labels never seen in training scored as errors, or refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import UPOS_TAGS
from monodistill.evaluate.scoring import score
from monodistill.evaluate.splits import tokenize_task
from monodistill.evaluate.tasks import load_task

from .test_tasks import CLASSIFICATION, write_task


def conllu(rows: list[tuple[str, str, str]]) -> str:
    """A one-sentence CoNLL-U file from (form, upos, xpos) rows."""
    lines = [
        f"{i}\t{form}\t{form.lower()}\t{upos}\t{xpos}\t_\t0\t_\t_\t_" for i, (form, upos, xpos) in enumerate(rows, 1)
    ]
    return "# text = ...\n" + "\n".join(lines) + "\n"


POS = "name: pos\nkind: token-classification\ntrain: train.conllu\ntest: test.conllu\nlabel_column: upos\n"


def test_a_treebank_that_leaves_upos_empty_is_refused_naming_the_columns_that_vary(
    tiny_teacher_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # UPOS left as `_`, tags in XPOS: every model would score 100% on such a test split.
    rows = [("Si", "_", "DET"), ("Jose", "_", "PROPN"), ("ay", "_", "PART")]
    task = write_task(tmp_path, POS, {"train.conllu": conllu(rows), "test.conllu": conllu(rows)})
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--task", str(task), "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert "train.conllu: the label column 'upos' takes one value ('_') in every training row" in error
    assert "columns that vary: lemma, xpos" in error  # not the word numbers, not the words
    assert not (out / "results").exists()  # refused before any fine-tuning


def test_one_valued_csv_labels_are_refused(tmp_path: Path) -> None:
    files = {"train.csv": "text,label,source\na,1,x\nb,1,y\n", "test.csv": "text,label,source\nc,0,x\n"}
    with pytest.raises(MonodistillError, match=r"'label' takes one value \('1'\).*columns that vary: source"):
        load_task(str(write_task(tmp_path, CLASSIFICATION, files)))


def test_upos_tasks_use_the_17_universal_tags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = conllu([("Si", "DET", "_"), ("Jose", "PROPN", "_"), ("ay", "PART", "_")])
    test = conllu([("Siya", "PRON", "_"), ("ay", "AUX", "_")])  # AUX: in the test split only, as in small treebanks
    task = load_task(str(write_task(tmp_path, POS, {"train.conllu": train, "test.conllu": test})))
    assert task.labels == list(UPOS_TAGS) and len(task.labels) == 17 and task.unseen_labels == []
    warning = capsys.readouterr().err
    assert "2 test words carry labels never seen in training (PRON: 1, AUX: 1); the model has an output" in warning
    bad = conllu([("Siya", "PRONOUN", "_")])
    with pytest.raises(MonodistillError, match="test.conllu:2: label 'PRONOUN' is not in the label set"):
        load_task(str(write_task(tmp_path, POS, {"train.conllu": train, "test.conllu": bad})))


NER = "name: ner\nkind: token-classification\ntrain: train.iob\ntest: test.iob\n"
NER_TRAIN = "Si\tO\nJose\tB-PER\nRizal\tI-PER\n\nsa\tO\nCebu\tB-LOC\n"
NER_TEST = "Si\tO\nJose\tB-PER\n\nang\tO\nEU\tB-ORG\nCouncil\tI-ORG\n"


def test_unseen_test_labels_are_scored_as_errors_with_a_warning(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, capsys: pytest.CaptureFixture[str]
) -> None:
    task = load_task(str(write_task(tmp_path, NER, {"train.iob": NER_TRAIN, "test.iob": NER_TEST})))
    assert task.labels == ["B-LOC", "B-PER", "I-PER", "O"] and task.unseen_labels == ["B-ORG", "I-ORG"]
    warning = capsys.readouterr().err
    assert "test.iob: 2 test words carry labels never seen in training (B-ORG: 1, I-ORG: 1)" in warning
    assert "scored as an error" in warning
    assert task.test["tags"][1] == [3, 4, 5]  # ids past the model's four labels

    # No loss on them (the model has no output for them), and a model right everywhere else still misses them.
    data = tokenize_task(task, tiny_tokenizer, max_length=16)
    assert -100 in data["test"]["labels"][1][2:] and max(max(row) for row in data["test"]["labels"]) < 4
    word_ids = list(data["test"]["word_ids"])
    logits = np.zeros((2, 16, 4))
    for row, ids in enumerate(word_ids):
        for position, word in enumerate(ids):
            if word is not None:
                tag = task.test["tags"][row][word]
                logits[row, position, tag if tag < 4 else 3] = 1.0  # "O" for the unseen words
    scores = score(task, logits, task.test, word_ids)
    assert scores["accuracy"] == pytest.approx(3 / 5) and scores["entity_recall"] == pytest.approx(1 / 2)


def test_strict_labels_refuses_unseen_test_labels_naming_the_line(tmp_path: Path) -> None:
    files = {"train.iob": NER_TRAIN, "test.iob": NER_TEST}
    with pytest.raises(MonodistillError, match="test.iob:5: label 'B-ORG' never occurs in the training split"):
        load_task(str(write_task(tmp_path, NER + "strict_labels: true\n", files)))
    with pytest.raises(MonodistillError, match="strict_labels must be true or false, got 'yes'"):
        load_task(str(write_task(tmp_path, NER + "strict_labels: yes\n", files)))


def test_unseen_classes_count_as_wrong_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"train.csv": "text,label\na,pos\nb,neg\n", "test.csv": "text,label\nc,pos\nd,neutral\n"}
    task = load_task(str(write_task(tmp_path, CLASSIFICATION, files)))
    assert task.label_names == ["neg", "pos", "neutral"] and task.test["label"] == [1, 2]
    assert "1 test examples carry labels never seen in training (neutral: 1)" in capsys.readouterr().err
    scores = score(task, np.array([[0.0, 1.0], [0.0, 1.0]]), task.test, None)
    assert scores["accuracy"] == 0.5
