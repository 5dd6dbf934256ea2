"""Read a target-language corpus: local text/JSONL/CSV/Parquet files or a Hub dataset.

Every source becomes a ``datasets.Dataset`` with one column, ``text``, holding non-empty documents.
(``data_fraction`` chooses among the packed training blocks, ``data.blocks``, not among documents,
so that the validation blocks and the vocabulary come from the whole corpus.)
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from monodistill.config import DataConfig
from monodistill.data.chat import is_conversation
from monodistill.errors import MonodistillError, not_utf8
from monodistill.hub import load_hub_dataset
from monodistill.teacher import is_local_reference

BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}


def corpus_files(corpus: str) -> list[Path]:
    """The data files of a local corpus (a file, or every supported file in a folder)."""
    path = Path(os.path.expanduser(corpus))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS)
        if not files:
            raise MonodistillError(f"corpus folder {path} holds no {sorted(BUILDERS)} files")
    elif path.is_file():
        files = [path]
    else:
        raise MonodistillError(f"corpus path {corpus} does not exist")
    kinds = {BUILDERS.get(p.suffix.lower()) for p in files}
    if None in kinds:
        raise MonodistillError(f"corpus file {files[0]} has an unsupported extension; use one of {sorted(BUILDERS)}")
    if len(kinds) > 1:
        raise MonodistillError(f"corpus folder {path} mixes file kinds {sorted(k for k in kinds if k)}; keep one")
    return files


def load_corpus(config: DataConfig, digest: str | None = None) -> datasets.Dataset:
    """Load the corpus as a Dataset with one ``text`` column of non-empty documents.

    ``digest`` is the corpus's ``corpus_digest`` when the caller has it already; a local corpus is
    read through a datasets cache of its own content (see ``_load_local``).

    Raises:
        MonodistillError: for a missing path, an unreachable Hub dataset, a missing text column, or
            a corpus with no usable line.
    """
    if not config.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    if is_local_reference(config.corpus):
        dataset = _load_local(config, digest or corpus_digest(config))
    else:
        dataset = _load_hub(config)
    column = config.chat_column or config.text_column
    if column not in dataset.column_names:
        setting = "data.chat_column" if config.chat_column else "data.text_column"
        raise MonodistillError(
            f"corpus {config.corpus} has no column {column!r} (columns: {dataset.column_names}); set {setting}"
        )
    dataset = dataset.select_columns([column])
    if column != "text":
        dataset = dataset.rename_column(column, "text")
    usable = _is_conversation_batch if config.chat_column else _is_usable
    dataset = dataset.filter(usable, batched=True, desc="dropping empty documents")
    if len(dataset) == 0:
        raise MonodistillError(f"corpus {config.corpus} has no usable line (all empty or whitespace)")
    return dataset


def _is_usable(batch: dict[str, list[Any]]) -> list[bool]:
    return [isinstance(text, str) and bool(text.strip()) for text in batch["text"]]


def _is_conversation_batch(batch: dict[str, list[Any]]) -> list[bool]:
    return [is_conversation(messages) for messages in batch["text"]]


def _load_local(config: DataConfig, digest: str) -> datasets.Dataset:
    assert config.corpus is not None
    files = corpus_files(config.corpus)
    if all(p.stat().st_size == 0 for p in files):
        raise MonodistillError(f"corpus {config.corpus} is empty")
    builder = BUILDERS[files[0].suffix.lower()]
    # Text files are UTF-8 on any platform locale, a leading BOM tolerated.
    options: dict[str, Any] = {} if builder == "parquet" else {"encoding": "utf-8-sig"}
    # datasets keys its copy of a local file by path and modification time: a file rewritten at the same
    # time would be read from the old copy. A cache folder per content digest never is.
    options["cache_dir"] = str(Path(datasets.config.HF_DATASETS_CACHE) / "monodistill-corpora" / digest)
    try:
        dataset = datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train", **options)
    except Exception as error:  # datasets raises many types for malformed files
        if builder != "parquet":
            check_utf8(files)
        if builder == "json":
            check_json(files)
        raise MonodistillError(f"could not read corpus {config.corpus} as {builder}: {error}") from None
    if builder == "json" and config.text_column in dataset.column_names and not config.chat_column:
        dataset = _documents_with_text(dataset, files, config)
    if config.max_documents is not None and len(dataset) > config.max_documents:
        dataset = dataset.select(range(config.max_documents))
    return dataset


def _load_hub(config: DataConfig) -> datasets.Dataset:
    assert config.corpus is not None
    where = (config.corpus, config.hub_config, config.split, config.revision)
    if config.streaming:
        return _write_stream(load_hub_dataset("corpus", *where, streaming=True), config)
    dataset = load_hub_dataset("corpus", *where)
    if config.max_documents is not None and len(dataset) > config.max_documents:
        dataset = dataset.select(range(config.max_documents))
    return dataset


def check_utf8(files: list[Path]) -> None:
    """Raise naming the first file that is not UTF-8, and where, reading each in chunks."""
    for file in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    # The decoder may hold back a few bytes of the previous chunk; count from what it saw.
                    start = offset - len(decoder.getstate()[0]) + error.start
                    raise not_utf8(file, error.object[error.start], max(start, 0)) from None
                offset += len(chunk)


def check_json(files: list[Path]) -> None:
    """Raise naming FILE:LINE of the first line that is not valid JSON, with the JSON error.

    ``.json`` files may hold JSON Lines or one document over many lines (an array), as the datasets
    reader allows: one whose first line is not a document by itself is parsed as a whole.
    """
    for file in files:
        with open(file, encoding="utf-8-sig") as handle:
            if file.suffix.lower() == ".json" and not _is_json(next((line for line in handle if line.strip()), "")):
                handle.seek(0)
                try:
                    json.load(handle)
                except json.JSONDecodeError as error:
                    raise _bad_json(file, error.lineno, error) from None
                continue
            handle.seek(0)
            for number, line in enumerate(handle, start=1):
                try:
                    if line.strip():
                        json.loads(line)
                except json.JSONDecodeError as error:
                    raise _bad_json(file, number, error) from None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _bad_json(file: Path, line: int, error: json.JSONDecodeError) -> MonodistillError:
    return MonodistillError(f"{file}:{line}: not valid JSON ({error.msg} at column {error.colno})")


def _documents_with_text(dataset: datasets.Dataset, files: list[Path], config: DataConfig) -> datasets.Dataset:
    """JSON documents lacking the text field: an error naming the file and line, or skipped and counted."""
    column = config.text_column
    has_text = dataset.map(
        lambda batch: {"_has": [value is not None for value in batch[column]]},
        batched=True,
        desc="checking documents",
    )["_has"]
    missing = len(has_text) - sum(has_text)
    if missing == 0:
        return dataset
    if config.skip_bad_documents:
        print(f"corpus {config.corpus}: skipping {missing:,} of {len(has_text):,} documents without {column!r}")
        return dataset.select([index for index, kept in enumerate(has_text) if kept])
    raise MonodistillError(
        f"{_first_line_without(files, column)}: no {column!r} field ({missing:,} of {len(has_text):,} documents "
        "lack it); fix the file, set data.text_column, or pass data.skip_bad_documents=true to skip them"
    )


def _first_line_without(files: list[Path], column: str) -> str:
    """FILE:LINE of the first JSON Lines document without ``column`` (FILE alone for a JSON array)."""
    for file in files:
        if file.suffix.lower() != ".jsonl":
            continue
        with open(file, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    document = json.loads(line)
                    if not isinstance(document, dict) or document.get(column) is None:
                        return f"{file}:{number}"
    return str(files[0]) if len(files) == 1 else f"corpus {files[0].parent}"


def _write_stream(stream: datasets.IterableDataset, config: DataConfig) -> datasets.Dataset:
    """The first ``max_documents`` rows of a stream, written to Arrow as they arrive (OSCAR-sized)."""
    assert config.max_documents is not None  # enforced by DataConfig
    column = config.text_column
    if stream.column_names is not None and column not in stream.column_names:
        raise MonodistillError(
            f"corpus {config.corpus} has no column {column!r} (columns: {stream.column_names}); set data.text_column"
        )
    # A key of what the stream gives, so a second build (e.g. another max_seq_length) reuses the copy.
    parts = [config.corpus, config.hub_config, config.split, config.revision, column, config.max_documents]
    fingerprint = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    return datasets.Dataset.from_generator(
        _take_documents,
        gen_kwargs={"stream": stream, "column": column, "count": config.max_documents},
        features=datasets.Features({column: datasets.Value("string")}),
        fingerprint=fingerprint,
    )


def _take_documents(stream: datasets.IterableDataset, column: str, count: int) -> Iterator[dict[str, Any]]:
    for row in itertools.islice(stream, count):
        yield {column: row.get(column)}


def corpus_digest(config: DataConfig) -> str:
    """A fingerprint of the corpus's content and of the settings that pick documents from it.

    What the blocks cache is keyed by and what a resume checks. It ignores where the files are and when
    they were touched, so a corpus that is moved, copied or spelled another way (``./x``, ``/abs/x``)
    keeps its digest, and one whose text changed does not, even at the same size and modification
    time. Hashing reads every local file once (about a second per GB); a Hub corpus is named by its
    id, configuration, split and revision.
    """
    assert config.corpus is not None
    digest = hashlib.sha256()
    settings = [config.text_column, config.max_documents]
    if is_local_reference(config.corpus):
        root = Path(os.path.expanduser(config.corpus))
        for file in corpus_files(config.corpus):
            digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode() + b"\0")
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    else:
        settings += [config.corpus, config.hub_config, config.split, config.revision]
    digest.update(json.dumps(settings, default=str).encode())
    return digest.hexdigest()[:16]
