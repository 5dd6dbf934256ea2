"""Read a target-language corpus: local text/JSONL/CSV/Parquet files or a Hub dataset.

Every source becomes a ``datasets.Dataset`` with one column, ``text``, holding non-empty documents,
subsampled to ``data_fraction`` deterministically from the seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import datasets

from monodistill.config import DataConfig
from monodistill.errors import MonodistillError
from monodistill.teacher import hub_error, is_local_reference

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


def corpus_fingerprint(config: DataConfig, seed: int) -> str:
    """A key that changes whenever the documents `load_corpus` returns would change."""
    assert config.corpus is not None
    parts: list[Any] = [config.corpus, config.hub_config, config.split, config.revision, config.text_column]
    parts += [config.max_documents, config.data_fraction, seed]
    if is_local_reference(config.corpus):
        parts += [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in corpus_files(config.corpus)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def load_corpus(config: DataConfig, seed: int) -> datasets.Dataset:
    """Load the corpus as a Dataset with one ``text`` column of non-empty documents.

    Raises:
        MonodistillError: for a missing path, an unreachable Hub dataset, a missing text column, or
            a corpus with no usable line.
    """
    if not config.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    dataset = _load_local(config) if is_local_reference(config.corpus) else _load_hub(config)
    if config.text_column not in dataset.column_names:
        raise MonodistillError(
            f"corpus {config.corpus} has no column {config.text_column!r} (columns: {dataset.column_names}); "
            "set data.text_column"
        )
    dataset = dataset.select_columns([config.text_column])
    if config.text_column != "text":
        dataset = dataset.rename_column(config.text_column, "text")
    dataset = dataset.filter(_is_usable, batched=True, desc="dropping empty lines")
    if len(dataset) == 0:
        raise MonodistillError(f"corpus {config.corpus} has no usable line (all empty or whitespace)")
    if config.data_fraction < 1.0:
        keep = max(1, round(len(dataset) * config.data_fraction))
        dataset = dataset.shuffle(seed=seed).select(range(keep))
    return dataset


def _is_usable(batch: dict[str, list[Any]]) -> list[bool]:
    return [isinstance(text, str) and bool(text.strip()) for text in batch["text"]]


def _load_local(config: DataConfig) -> datasets.Dataset:
    assert config.corpus is not None
    files = corpus_files(config.corpus)
    if all(p.stat().st_size == 0 for p in files):
        raise MonodistillError(f"corpus {config.corpus} is empty")
    builder = BUILDERS[files[0].suffix.lower()]
    try:
        dataset = datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train")
    except Exception as error:  # datasets raises many types for malformed files
        raise MonodistillError(f"could not read corpus {config.corpus} as {builder}: {error}") from None
    if config.max_documents is not None and len(dataset) > config.max_documents:
        dataset = dataset.select(range(config.max_documents))
    return dataset


def _load_hub(config: DataConfig) -> datasets.Dataset:
    assert config.corpus is not None
    try:
        if config.streaming:
            assert config.max_documents is not None  # enforced by DataConfig
            stream = datasets.load_dataset(
                config.corpus, config.hub_config, split=config.split, revision=config.revision, streaming=True
            )
            rows = list(itertools.islice(stream, config.max_documents))
            return datasets.Dataset.from_list([{config.text_column: row.get(config.text_column)} for row in rows])
        dataset = datasets.load_dataset(config.corpus, config.hub_config, split=config.split, revision=config.revision)
    except (OSError, ValueError, ConnectionError) as error:
        raise hub_error("corpus", config.corpus, error) from None
    except Exception as error:
        if type(error).__name__ in ("DatasetNotFoundError", "DataFilesNotFoundError", "HfHubHTTPError"):
            raise hub_error("corpus", config.corpus, error) from None
        raise
    if config.max_documents is not None and len(dataset) > config.max_documents:
        dataset = dataset.select(range(config.max_documents))
    return dataset
