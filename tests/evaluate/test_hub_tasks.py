"""Hub tasks get the labels local tasks have: names, ids from 0, unlabelled rows dropped, clear errors.

Each dataset is a local folder laid out as a Hub dataset repository (``data/SPLIT.parquet``), read
through the same ``datasets.load_dataset`` call as a Hub id, so nothing reaches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.errors import MonodistillError
from monodistill.evaluate.hub_tasks import HubPreset
from monodistill.evaluate.splits import tokenize_task
from monodistill.evaluate.tasks import load_hub_task

WORDS = [["Si", "Jose", "Rizal"], ["sa", "Cebu"], ["ang", "bata"], ["Maria", "ay", "dito"]]
INTEGER_TAGS = datasets.Features(
    {"tokens": datasets.List(datasets.Value("string")), "tags": datasets.List(datasets.Value("int64"))}
)


def hub_dataset(root: Path, splits: dict[str, dict[str, list[Any]]], features: datasets.Features | None = None) -> str:
    """A local folder laid out as a Hub dataset repository, one Parquet file per split."""
    folder = root / "dataset"
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "data" / f"{split}.parquet"))
    return str(folder)


def token_preset(folder: str, labels: tuple[str, ...] | None = None) -> HubPreset:
    return HubPreset(folder, "token-classification", "tokens", "tags", labels=labels)


def test_integer_tags_without_names_become_ids_of_their_sorted_values(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"tokens": WORDS[:3], "tags": [[0, 5, 5], [0, 2], [0, 0]]}
    test = {"tokens": WORDS[3:], "tags": [[5, 0, 7]]}
    folder = hub_dataset(tmp_path, {"train": train, "test": test}, INTEGER_TAGS)
    task = load_hub_task("ner", token_preset(folder))
    assert task.labels == ["0", "2", "5"] and task.unseen_labels == ["7"]
    assert task.train["tags"] == [[0, 2, 2], [0, 1], [0, 0]]
    assert task.test["tags"] == [[2, 0, 3]]  # 7 never occurs in training: an id past the model's labels
    assert task.metric == "accuracy"
    captured = capsys.readouterr()
    assert "1 test words carry labels never seen in training (7: 1)" in captured.err
    assert "ner: the tags of" in captured.out and "carry no names" in captured.out
    # Fine-tuning reads these ids as it reads a local task's: no label past the model's outputs.
    labels = tokenize_task(task, tiny_tokenizer, max_length=16)["train"]["labels"]
    assert max(max(row) for row in labels) == 2


def test_integer_tags_take_the_presets_declared_labels(tmp_path: Path) -> None:
    train = {"tokens": WORDS[:2], "tags": [[0, 1, 2], [0, 1]]}
    folder = hub_dataset(tmp_path, {"train": train, "test": train}, INTEGER_TAGS)
    task = load_hub_task("ner", token_preset(folder, labels=("O", "B-LOC", "I-LOC")))
    assert task.labels == ["O", "B-LOC", "I-LOC"] and task.metric == "entity-f1"
    assert task.train["tags"] == [[0, 1, 2], [0, 1]]


def test_class_label_names_are_the_labels_of_a_token_task(tmp_path: Path) -> None:
    names = ["O", "B-PER", "I-PER"]
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), "tags": datasets.List(datasets.ClassLabel(names=names))}
    )
    train = {"tokens": WORDS[:2], "tags": [[0, 1, 2], [0, 0]]}
    task = load_hub_task("ner", token_preset(hub_dataset(tmp_path, {"train": train, "test": train}, features)))
    assert task.labels == names and task.train["tags"] == [[0, 1, 2], [0, 0]] and task.metric == "entity-f1"


def test_unlabelled_rows_are_dropped_before_labels_are_inferred_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    premises = ["a", "b", "c", "d", "e", "f"]
    train = {"premise": premises, "hypothesis": premises[::-1], "label": [0, -1, 1, -1, 1, 0]}
    test = {"premise": ["g", "h"], "hypothesis": ["h", "g"], "label": [1, -1]}
    folder = hub_dataset(tmp_path, {"train": train, "test": test})
    preset = HubPreset(folder, "pair-classification", "premise", "label", text_pair_column="hypothesis")
    task = load_hub_task("nli", preset)
    assert task.labels == ["0", "1"]  # -1 marks a row nobody labelled: not a class
    assert task.train["label"] == [0, 1, 1, 0] and task.train["text"] == ["a", "c", "e", "f"]
    assert task.test["label"] == [1] and task.test["text_pair"] == ["h"]
    out = capsys.readouterr().out
    assert "nli: dropped 2 unlabelled rows (label -1) of 6 in train" in out
    assert "nli: dropped 1 unlabelled rows (label -1) of 2 in test" in out


def test_sentences_with_an_unlabelled_tag_are_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = {"tokens": WORDS[:3], "tags": [[0, 1, 1], [0, -1], [1, 0]]}
    folder = hub_dataset(tmp_path, {"train": train, "test": train}, INTEGER_TAGS)
    task = load_hub_task("ner", token_preset(folder))
    assert task.labels == ["0", "1"] and task.train["tokens"] == [WORDS[0], WORDS[2]]
    assert "ner: dropped 1 unlabelled rows (tag -1) of 3 in train" in capsys.readouterr().out


def test_sequence_labels_that_are_not_ids_become_ids(tmp_path: Path) -> None:
    stars = {"text": ["a", "b", "c", "d"], "stars": [5, 1, 5, 3]}
    preset = HubPreset(
        hub_dataset(tmp_path / "stars", {"train": stars, "test": stars}), "classification", "text", "stars"
    )
    task = load_hub_task("stars", preset)
    assert task.labels == ["1", "3", "5"] and task.train["label"] == [2, 0, 2, 1]
    words = {"text": ["a", "b", "c"], "sentiment": ["pos", "neg", "pos"]}
    folder = hub_dataset(tmp_path / "words", {"train": words, "test": words})
    task = load_hub_task("sentiment", HubPreset(folder, "classification", "text", "sentiment"))
    assert task.labels == ["neg", "pos"] and task.train["label"] == [1, 0, 1]


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        ({"tokens": WORDS[:2], "tags": [[0, 1, 3], [0, 1]]}, ("O", "B-X", "I-X"), "train split holds tag 3, outside"),
        ({"tokens": WORDS[:2], "tags": [[0, 1], [0, 1]]}, None, "row 0 .*2 tags for 3 words"),
        ({"tokens": WORDS[:2], "tags": [[-1, -1, -1], [-1, -1]]}, None, "no labelled row in the train split"),
        ({"tokens": WORDS[:2], "ner": [[0, 1, 1], [0, 1]]}, None, "the train split has no column 'tags'.*ner"),
    ],
)
def test_bad_token_labels_name_the_dataset_and_column(
    rows: dict[str, list[Any]], labels: tuple[str, ...] | None, message: str, tmp_path: Path
) -> None:
    folder = hub_dataset(tmp_path, {"train": rows, "test": rows})
    with pytest.raises(MonodistillError, match=message) as error:
        load_hub_task("ner", token_preset(folder, labels))
    assert folder in str(error.value) and "'tags'" in str(error.value)


@pytest.mark.parametrize(
    ("label", "message"),
    [([0.5, 1.5, 0.5], "integers or text, got float 0.5"), ([[0], [1], [0]], "integers or text, got list")],
)
def test_bad_sequence_labels_name_the_dataset_and_column(label: list[Any], message: str, tmp_path: Path) -> None:
    rows = {"text": ["a", "b", "c"], "label": label}
    folder = hub_dataset(tmp_path, {"train": rows, "test": rows})
    with pytest.raises(MonodistillError, match=message) as error:
        load_hub_task("t", HubPreset(folder, "classification", "text", "label"))
    assert folder in str(error.value) and "'label'" in str(error.value)
