"""Local task files: a small YAML file naming a task's kind, data files, columns and labels, read strictly.

Every value is read as the text typed (``labels: [no, yes]`` are the labels "no" and "yes", not
booleans); unknown keys are refused, naming the nearest known one. Data paths are relative to the task
file. Its rows are read by ``formats.py``: tables for sequence tasks, token files for token tasks, each
row keeping its line so that every error names the file and line.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import yaml

from monodistill.config import read_text
from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import FORMATS, TokenFileSpec, read_table, read_token_file, varying_table_columns

KINDS = ("classification", "pair-classification", "token-classification")
METRICS = ("accuracy", "entity-f1")
TASK_KEYS = (
    "name",
    "kind",
    "train",
    "test",
    "validation",
    "text_column",
    "text_pair_column",
    "label_column",
    "labels",
    "metric",
    "format",
    "token_column",
    "language_prefix",
    "strict_labels",
)
TOKEN_FILE_KEYS = ("format", "token_column", "language_prefix")


@dataclass
class TaskRows:
    """The rows of a task file's splits, with their labels as text, and what reading them showed."""

    rows: dict[str, list[Any]]
    """Each split's rows: ``formats.read_table``'s tuples, or a token file's sentences."""
    values: dict[str, list[str]]
    """Each split's labels, every tag of every sentence for a token task."""
    label_column: str
    universal: bool
    """Tags read from a CoNLL-U file's UPOS column: the universal tag set, whatever training shows of it."""
    varying: Callable[[], list[str]]
    """The training file's columns whose values vary (for the message that refuses one label value)."""


def read_task_spec(path: Path) -> dict[str, Any]:
    """The task file as text values: ``labels`` a list of strings, every other key a string."""
    if not path.is_file():
        raise MonodistillError(f"task file {path} does not exist")
    try:
        # BaseLoader resolves no scalar types: YAML 1.1 would read the label `no` as False and `1.0` as 1.0.
        spec = yaml.load(read_text(path), Loader=yaml.BaseLoader) or {}
    except yaml.YAMLError as error:
        raise MonodistillError(f"task file {path} is not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise MonodistillError(f"task file {path} must be a mapping")
    spec = {key: value for key, value in spec.items() if value != ""}  # `metric:` left empty means unset
    for key, value in spec.items():
        if key not in TASK_KEYS:
            close = difflib.get_close_matches(key, TASK_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(TASK_KEYS)}"
            raise MonodistillError(f"task file {path}: unknown key {key!r} ({hint})")
        if key == "labels":
            if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
                raise MonodistillError(f"task file {path}: labels must be a list of label names, got {value!r}")
            duplicates = sorted({label for label in value if value.count(label) > 1})
            if duplicates:
                raise MonodistillError(f"task file {path}: labels lists {duplicates} more than once")
        elif not isinstance(value, str):
            raise MonodistillError(f"task file {path}: {key} must be a single value, got {value!r}")
    return spec


def check_spec(spec: dict[str, Any], path: Path) -> None:
    """Refuse a task YAML that lacks a key, names an unknown kind or format, or mixes keys of two kinds."""
    token_task = spec.get("kind") == "token-classification"
    required = ("name", "kind", "train") if token_task else ("name", "kind", "train", "label_column", "text_column")
    missing = [key for key in required if key not in spec]
    if missing:
        raise MonodistillError(f"task file {path} lacks {', '.join(missing)}")
    if spec["kind"] not in KINDS:
        raise MonodistillError(f"task file {path}: kind must be one of {KINDS}, got {spec['kind']!r}")
    if spec["kind"] == "pair-classification" and "text_pair_column" not in spec:
        raise MonodistillError(f"task file {path}: pair-classification needs text_pair_column")
    misplaced = [key for key in TOKEN_FILE_KEYS if key in spec and not token_task]
    if misplaced:
        raise MonodistillError(f"task file {path}: {', '.join(misplaced)} only apply to token-classification files")
    if "format" in spec and spec["format"] not in FORMATS:
        raise MonodistillError(f"task file {path}: format must be one of {list(FORMATS)}, got {spec['format']!r}")
    if spec.get("strict_labels", "false") not in ("true", "false"):
        raise MonodistillError(f"task file {path}: strict_labels must be true or false, got {spec['strict_labels']!r}")


def split_files(path: Path, spec: dict[str, Any]) -> dict[str, Path]:
    """The data file of each split the task file names (``train``, ``test``, and ``dev`` when a
    ``validation`` split stands beside ``test``), each checked to exist."""
    test_key = "test" if "test" in spec else "validation"
    if test_key not in spec:
        raise MonodistillError(f"task file {path} needs a test (or validation) split")
    files = {split: data_path(path, spec[key]) for split, key in (("train", "train"), ("test", test_key))}
    if test_key == "test" and "validation" in spec:  # beside a test split, the validation split is the dev split
        files["dev"] = data_path(path, spec["validation"])
    for file in files.values():
        if not file.is_file():
            raise MonodistillError(f"task file {path}: data file {file} does not exist")
    return files


def data_path(task_file: Path, given: str) -> Path:
    """A data file named in ``task_file``, relative to its folder, as messages print it: normalised
    (``configs/tasks/../../../shared/x`` is ``../shared/x``), or resolved where a link in it would make that
    another file."""
    path = task_file.parent / given
    normal = Path(os.path.normpath(path))
    return normal if normal.resolve() == path.resolve() else path.resolve()


def read_rows(spec: dict[str, Any], files: dict[str, Path]) -> TaskRows:
    """Every split's rows: a token file's sentences (in the ``format`` named, or the one their content shows),
    or a table's rows of the named columns."""
    varying: Callable[[], list[str]]
    if spec["kind"] == "token-classification":
        keys = ("format", "token_column", "label_column", "language_prefix")
        token_spec = TokenFileSpec(**{key: spec.get(key) for key in keys})
        read = {split: read_token_file(file, token_spec) for split, file in files.items()}
        rows: dict[str, list[Any]] = {split: file.sentences for split, file in read.items()}
        values = {split: [tag for row in split_rows for tag in row[2]] for split, split_rows in rows.items()}
        column = read["train"].label_column
        universal = read["train"].format == "conllu" and column == "upos"
        varying = lambda: read["train"].varying_columns
        return TaskRows(rows, values, column, universal, varying)
    columns = [spec["text_column"], spec.get("text_pair_column"), spec["label_column"]]
    rows = {split: read_table(file, [c for c in columns if c]) for split, file in files.items()}
    values = {split: [str(row[-1]) for row in split_rows] for split, split_rows in rows.items()}
    varying = lambda: varying_table_columns(files["train"], [c for c in columns if c])
    return TaskRows(rows, values, spec["label_column"], False, varying)


def check_labels(rows: list[Any], labels: list[str], path: Path, kind: str) -> None:
    """Refuse a row whose label is not in ``labels``, naming its file and line."""
    allowed = set(labels)
    for row in rows:
        for line, value in _row_labels(row, kind):
            if value not in allowed:
                raise MonodistillError(f"{path}:{line}: label {value!r} is not in the label set {labels}")


def count_unseen_labels(seen: set[str], rows: list[Any], file: Path, kind: str, strict: bool) -> Counter[str]:
    """How often each test label never seen in training occurs; with ``strict``, the first is refused.

    Raises:
        MonodistillError: with ``strict``, naming the file and line of the first unseen label.
    """
    unseen: Counter[str] = Counter()
    for row in rows:
        for line, value in _row_labels(row, kind):
            if value not in seen:
                if strict:
                    raise MonodistillError(
                        f"{file}:{line}: label {value!r} never occurs in the training split (strict_labels: true)"
                    )
                unseen[value] += 1
    return unseen


def rows_to_dataset(rows: list[Any], index: dict[str, int], kind: str) -> datasets.Dataset:
    """A split's rows as the columns fine-tuning reads, labels as ids through ``index``."""
    if kind == "token-classification":
        return datasets.Dataset.from_dict(
            {"tokens": [row[1] for row in rows], "tags": [[index[tag] for tag in row[2]] for row in rows]}
        )
    data: dict[str, list[Any]] = {"text": [str(row[1]) for row in rows], "label": [index[row[-1]] for row in rows]}
    if kind == "pair-classification":
        data["text_pair"] = [str(row[2]) for row in rows]
    return datasets.Dataset.from_dict(data)


def _row_labels(row: tuple[Any, ...], kind: str) -> list[tuple[int, str]]:
    """Each label of a row with its line: a sentence's tags, or a table row's label."""
    return list(zip(row[3], row[2], strict=True)) if kind == "token-classification" else [(row[0], row[-1])]
