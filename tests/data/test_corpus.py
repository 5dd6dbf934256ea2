"""Reading corpora in every local format, subsampling, and the errors on unusable corpora."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.config import DataConfig
from monodistill.data import corpus as corpus_module
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
    documents = load_corpus(DataConfig(corpus=str(path), text_column=column))
    assert documents.column_names == ["text"]
    assert sorted(documents["text"]) == sorted(LINES)  # blank and whitespace lines dropped


def test_a_folder_reads_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("isa\ndalawa\n")
    (tmp_path / "b.txt").write_text("tatlo\n")
    assert sorted(load_corpus(DataConfig(corpus=str(tmp_path)))["text"]) == ["dalawa", "isa", "tatlo"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("\n   \n\t\n", "no usable line")],
)
def test_empty_or_blank_corpus_is_refused(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(content)
    with pytest.raises(MonodistillError, match=message):
        load_corpus(DataConfig(corpus=str(path)))


def test_missing_path_column_and_extension_are_named(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="corpus path .* does not exist"):
        load_corpus(DataConfig(corpus=str(tmp_path / "none.txt")))
    path = write(tmp_path / "c.jsonl", "jsonl")
    with pytest.raises(MonodistillError, match="no column 'text'"):
        load_corpus(DataConfig(corpus=str(path)))
    odd = tmp_path / "c.docx"
    odd.write_text("x")
    with pytest.raises(MonodistillError, match="unsupported extension"):
        load_corpus(DataConfig(corpus=str(odd)))


def test_offline_hub_dataset_says_how_to_use_a_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(MonodistillError, match="--local-dir"):
        load_corpus(DataConfig(corpus="someone/no-such-corpus"))


def test_a_streamed_hub_corpus_is_capped_and_written_to_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "stream.txt", "txt")
    real_load_dataset = datasets.load_dataset
    calls: list[dict[str, object]] = []

    def load_stream(name: str, *args: object, **kwargs: object) -> datasets.IterableDataset:
        calls.append({"name": name, **kwargs})
        return real_load_dataset("text", data_files=[str(path)], streaming=True, split="train")

    monkeypatch.setattr(corpus_module.datasets, "load_dataset", load_stream)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    config = DataConfig(corpus="someone/oscar-tl", streaming=True, max_documents=7)
    documents = load_corpus(config)
    assert calls[0]["name"] == "someone/oscar-tl" and calls[0]["streaming"] is True
    assert documents["text"] == LINES[:7]  # the first 7 of the stream's 50, in order
    files = [Path(file["filename"]) for file in documents.cache_files]
    assert files and all(file.is_file() and tmp_path / "hf" in file.parents for file in files)  # on disk
    more = load_corpus(DataConfig(corpus="someone/oscar-tl", streaming=True, max_documents=1000))
    assert more["text"] == LINES  # a cap above the stream's length reads it all (blank lines dropped)


def test_json_lines_without_the_text_field_are_refused_naming_the_line_or_skipped(tmp_path: Path) -> None:

    path = tmp_path / "corpus.jsonl"
    lines = ['{"text": "unang linya"}', '{"text": "ikalawa"}', '{"body": "walang text"}', '{"text": "huli"}']
    path.write_text("\n".join(lines * 5) + "\n")
    config = DataConfig(corpus=str(path))
    with pytest.raises(MonodistillError, match=rf"{path}:3: no 'text' field \(5 of 20 documents lack it\)"):
        load_corpus(config)
    kept = load_corpus(DataConfig(corpus=str(path), skip_bad_documents=True))
    assert len(kept) == 15 and "walang text" not in kept["text"]


def test_corpus_files_are_read_as_utf8_with_a_bom_tolerated(tmp_path: Path) -> None:

    path = tmp_path / "corpus.txt"
    path.write_bytes("\ufeffunang linya\nikalawa ñ\n".encode())
    assert load_corpus(DataConfig(corpus=str(path)))["text"] == ["unang linya", "ikalawa ñ"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"maayos\n" * 3 + "Pi\xf1a\n".encode("latin-1"))
    with pytest.raises(MonodistillError, match=rf"{latin} is not UTF-8 \(byte 0xf1 at offset 23\)"):
        load_corpus(DataConfig(corpus=str(latin)))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_malformed_json_line_is_named_by_file_and_line(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"corpus{suffix}"
    lines = ['{"text": "unang linya"}', '{"text": "ikalawa"}', '{"text": "ikatlo" "sira"}', '{"text": "huli"}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MonodistillError, match=rf"{path}:3: not valid JSON \(Expecting ',' delimiter") as error:
        load_corpus(DataConfig(corpus=str(path)))
    assert "\n" not in str(error.value)


def test_a_malformed_json_array_is_named_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.json"
    path.write_text('[\n  {"text": "isa"},\n  {"text": "dalawa"}\n  {"text": "tatlo"}\n]\n')
    with pytest.raises(MonodistillError, match=rf"{path}:4: not valid JSON"):
        load_corpus(DataConfig(corpus=str(path)))


def test_the_blocks_cache_key_of_a_local_corpus_ignores_how_its_path_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    from monodistill.data.blocks import blocks_cache_key

    folder = tmp_path / "tl"
    folder.mkdir()
    write(folder / "corpus.txt", "txt")
    monkeypatch.chdir(tmp_path)

    def key(corpus: str) -> str:
        return blocks_cache_key(DataConfig(corpus=corpus), tiny_tokenizer)

    file_spellings = ["tl/corpus.txt", "./tl/corpus.txt", str(folder / "corpus.txt"), "tl/../tl/corpus.txt"]
    assert len({key(spelling) for spelling in file_spellings}) == 1
    folder_spellings = ["tl", "./tl", "tl/", str(folder), str(folder) + "/"]
    assert len({key(spelling) for spelling in folder_spellings}) == 1
    before = key("tl")
    (folder / "more.txt").write_text("bagong linya\n")
    assert key("./tl") != before  # a changed set of files is another corpus
    # Hub ids are keyed by their name, as before.
    assert key("someone/oscar-tl") == key("someone/oscar-tl") != key("someone/other-tl")
