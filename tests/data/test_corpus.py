"""Reading corpora in every local format, subsampling, and the errors on unusable corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monodistill.config import DataConfig
from monodistill.data.corpus import load_corpus
from monodistill.errors import MonodistillError

LINES = [f"linya {index} ng teksto" for index in range(50)]


def write(path: Path, kind: str) -> Path:
    if kind == "txt":
        path.write_text("\n".join(LINES) + "\n\n   \n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"content": line, "id": i}) + "\n" for i, line in enumerate(LINES)))
    elif kind == "csv":
        path.write_text("content,id\n" + "".join(f"{line},{i}\n" for i, line in enumerate(LINES)))
    elif kind == "parquet":
        import pandas as pd

        pd.DataFrame({"content": LINES}).to_parquet(path)
    return path


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv", "parquet"])
def test_every_local_format_gives_the_same_documents(kind: str, tmp_path: Path) -> None:
    path = write(tmp_path / f"corpus.{kind}", kind)
    column = "text" if kind == "txt" else "content"
    documents = load_corpus(DataConfig(corpus=str(path), text_column=column), seed=0)
    assert documents.column_names == ["text"]
    assert sorted(documents["text"]) == sorted(LINES)  # blank and whitespace lines dropped


def test_a_folder_reads_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("isa\ndalawa\n")
    (tmp_path / "b.txt").write_text("tatlo\n")
    assert sorted(load_corpus(DataConfig(corpus=str(tmp_path)), seed=0)["text"]) == ["dalawa", "isa", "tatlo"]


def test_data_fraction_is_deterministic_under_the_seed(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "txt")
    half = lambda seed: load_corpus(DataConfig(corpus=str(path), data_fraction=0.5), seed=seed)["text"]
    assert len(half(0)) == 25
    assert half(0) == half(0)
    assert half(0) != half(1)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("\n   \n\t\n", "no usable line")],
)
def test_empty_or_blank_corpus_is_refused(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(content)
    with pytest.raises(MonodistillError, match=message):
        load_corpus(DataConfig(corpus=str(path)), seed=0)


def test_missing_path_column_and_extension_are_named(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="corpus path .* does not exist"):
        load_corpus(DataConfig(corpus=str(tmp_path / "none.txt")), seed=0)
    path = write(tmp_path / "c.jsonl", "jsonl")
    with pytest.raises(MonodistillError, match="no column 'text'"):
        load_corpus(DataConfig(corpus=str(path)), seed=0)
    odd = tmp_path / "c.docx"
    odd.write_text("x")
    with pytest.raises(MonodistillError, match="unsupported extension"):
        load_corpus(DataConfig(corpus=str(odd)), seed=0)


def test_offline_hub_dataset_says_how_to_use_a_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(MonodistillError, match="--local-dir"):
        load_corpus(DataConfig(corpus="someone/no-such-corpus"), seed=0)
