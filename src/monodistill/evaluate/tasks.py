"""Downstream tasks: built-in Hub presets and local task files, read into one shape.

A task becomes two ``datasets.Dataset`` splits with integer labels:
- sequence tasks (``classification``, ``pair-classification``): columns ``text`` (and ``text_pair``), ``label``;
- ``token-classification``: columns ``tokens`` (list of words) and ``tags`` (list of label ids).

Local readers check every row and name the file and line of the first problem.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import yaml

from monodistill.config import read_text
from monodistill.errors import MonodistillError

KINDS = ("classification", "pair-classification", "token-classification")
METRICS = ("accuracy", "entity-f1")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
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
)


@dataclass
class Task:
    """A task ready for fine-tuning."""

    name: str
    kind: str
    labels: list[str]
    metric: str
    train: datasets.Dataset
    test: datasets.Dataset

    @property
    def is_token_task(self) -> bool:
        """Whether labels are per word."""
        return self.kind == "token-classification"

    def test_overlap(self) -> float:
        """Share of test examples whose input also occurs, verbatim, in the training split."""
        names = self.test.column_names
        columns = ["tokens"] if self.is_token_task else [name for name in ("text", "text_pair") if name in names]

        def inputs(split: datasets.Dataset) -> list[str]:
            return [json.dumps(row, ensure_ascii=False) for row in zip(*(split[c] for c in columns), strict=True)]

        train = set(inputs(self.train))
        test = inputs(self.test)
        return sum(example in train for example in test) / max(len(test), 1)


@dataclass(frozen=True)
class HubPreset:
    """Where a built-in task lives on the Hub and what its columns are."""

    dataset: str
    kind: str
    text_column: str
    label_column: str
    config: str | None = None
    text_pair_column: str | None = None
    train_split: str = "train"
    test_split: str = "test"


PRESETS = {
    # The Hub's "test" split of Hatespeech Filipino repeats the training file (10,000 rows, same bytes
    # as train); the 4,232-row "validation" split is the held-out set.
    "hatespeech-filipino": HubPreset(
        "jcblaise/hatespeech_filipino", "classification", "text", "label", test_split="validation"
    ),
    "newsph-nli": HubPreset(
        "jcblaise/newsph_nli", "pair-classification", "premise", "label", text_pair_column="hypothesis"
    ),
    "tlunified-ner": HubPreset("ljvmiranda921/tlunified-ner", "token-classification", "tokens", "ner_tags"),
}


def load_task(reference: str) -> Task:
    """A built-in name (``hatespeech-filipino``, ``newsph-nli``, ``tlunified-ner``, ``wikiann:LANG``) or a YAML file."""
    if reference.endswith((".yaml", ".yml")) or Path(reference).is_file():
        return load_local_task(Path(reference))
    if reference in PRESETS:
        return load_hub_task(reference, PRESETS[reference])
    if reference.startswith("wikiann:") and len(reference) > len("wikiann:"):
        language = reference.split(":", 1)[1]
        preset = HubPreset("unimelb-nlp/wikiann", "token-classification", "tokens", "ner_tags", config=language)
        return load_hub_task(reference, preset)
    raise MonodistillError(f"unknown task {reference!r}: use a task YAML file or one of {[*PRESETS, 'wikiann:LANG']}")


def load_hub_task(name: str, preset: HubPreset) -> Task:
    """Read a built-in task from the Hub, taking label names from the dataset's features."""
    from monodistill.teacher import hub_error

    try:
        splits = {
            split: datasets.load_dataset(preset.dataset, preset.config, split=split)
            for split in (preset.train_split, preset.test_split)
        }
    except Exception as error:  # datasets raises several types for offline/missing repositories
        raise hub_error("task dataset", preset.dataset, error) from None
    train, test = splits[preset.train_split], splits[preset.test_split]
    feature = train.features[preset.label_column]
    names = getattr(getattr(feature, "feature", feature), "names", None)
    if preset.kind == "token-classification":
        labels = list(names) if names else sorted({tag for tags in train[preset.label_column] for tag in tags})

        def convert(split: datasets.Dataset) -> datasets.Dataset:
            rows = {"tokens": split[preset.text_column], "tags": split[preset.label_column]}
            return datasets.Dataset.from_dict(rows)
    else:
        labels = list(names) if names else [str(label) for label in sorted(set(train[preset.label_column]))]

        def convert(split: datasets.Dataset) -> datasets.Dataset:
            rows = {"text": split[preset.text_column], "label": split[preset.label_column]}
            if preset.text_pair_column:
                rows["text_pair"] = split[preset.text_pair_column]
            return datasets.Dataset.from_dict(rows)

    # NewsPH-NLI and others mark unlabeled rows with -1; they cannot be scored.
    converted = [convert(split) for split in (train, test)]
    if preset.kind != "token-classification":
        converted = [split.filter(lambda row: row["label"] >= 0) for split in converted]
    metric = "entity-f1" if preset.kind == "token-classification" and _is_bio(labels) else "accuracy"
    return Task(name, preset.kind, labels, metric, converted[0], converted[1])


def load_local_task(path: Path) -> Task:
    """Read a task described by a small YAML file; data paths are relative to it.

    Every value is read as the text typed: ``labels: [no, yes]`` are the labels "no" and "yes", not
    booleans. Unknown keys are refused, naming the nearest known one.
    """
    spec = _read_task_spec(path)
    missing = [key for key in ("name", "kind", "train", "label_column") if key not in spec]
    if spec.get("kind") != "token-classification" and "text_column" not in spec:
        missing.append("text_column")
    if missing:
        raise MonodistillError(f"task file {path} lacks {', '.join(missing)}")
    kind = spec["kind"]
    if kind not in KINDS:
        raise MonodistillError(f"task file {path}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "pair-classification" and "text_pair_column" not in spec:
        raise MonodistillError(f"task file {path}: pair-classification needs text_pair_column")
    test_key = "test" if "test" in spec else "validation"
    if test_key not in spec:
        raise MonodistillError(f"task file {path} needs a test (or validation) split")
    files = {split: path.parent / spec[key] for split, key in (("train", "train"), ("test", test_key))}
    for file in files.values():
        if not file.is_file():
            raise MonodistillError(f"task file {path}: data file {file} does not exist")
    rows: dict[str, list[Any]]
    if kind == "token-classification":
        rows = {split: read_token_file(file, spec["label_column"]) for split, file in files.items()}
        values: dict[str, list[str]] = {
            split: [tag for row in split_rows for tag in row[2]] for split, split_rows in rows.items()
        }
    else:
        columns = [spec["text_column"], spec.get("text_pair_column"), spec["label_column"]]
        rows = {split: read_table(file, [c for c in columns if c]) for split, file in files.items()}
        values = {split: [str(row[-1]) for row in split_rows] for split, split_rows in rows.items()}
    labels = spec.get("labels") or sorted(set(values["train"]))
    for split, file in files.items():
        _check_labels(rows[split], labels, file, kind)
    index = {label: position for position, label in enumerate(labels)}
    splits = {split: _to_dataset(split_rows, index, kind) for split, split_rows in rows.items()}
    metric = spec.get("metric") or ("entity-f1" if kind == "token-classification" and _is_bio(labels) else "accuracy")
    if metric not in METRICS:
        raise MonodistillError(f"task file {path}: metric must be one of {METRICS}, got {metric!r}")
    return Task(spec["name"], kind, labels, metric, splits["train"], splits["test"])


def _read_task_spec(path: Path) -> dict[str, Any]:
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


def read_table(path: Path, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows of the named columns from CSV, TSV or JSONL, each with its line number first.

    Returns tuples ``(line, *values)``; the label is the last value, as a string. ``.tsv`` files are
    tab-separated with no quoting: one record per line, and a ``"`` is an ordinary character.
    ``.csv`` files follow RFC 4180: a quoted field may hold commas, quotes and line breaks.
    """
    text = read_text(path)
    rows: list[tuple[Any, ...]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line_number, line in enumerate(_lines(text), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise MonodistillError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise MonodistillError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
            rows.append(_pick(record, columns, path, line_number))
    else:
        header: list[str] | None = None
        for line_number, fields in _delimited_records(path, text):
            if header is None:
                header = fields
                absent = [column for column in columns if column not in header]
                if absent:
                    raise MonodistillError(f"{path}:{line_number}: no column {absent[0]!r} (columns: {header})")
            elif len(fields) != len(header):
                raise MonodistillError(
                    f"{path}:{line_number}: expected {len(header)} fields like the header, got {len(fields)}"
                )
            else:
                rows.append(_pick(dict(zip(header, fields, strict=True)), columns, path, line_number))
    if not rows:
        raise MonodistillError(f"{path}: the split is empty")
    return rows


def _delimited_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records of a CSV or TSV text, each with the line it starts on."""
    stream = io.StringIO(text, newline="")
    if path.suffix.lower() == ".tsv":
        reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream, strict=True)
    start = 1  # a quoted CSV field may span lines: errors point at the line where the record starts
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise MonodistillError(f"{path}:{start}: not valid CSV ({error})") from None
        line_number, start = start, reader.line_num + 1
        if fields:
            yield line_number, fields


def _pick(record: dict[str, Any], columns: list[str], path: Path, line: int) -> tuple[Any, ...]:
    values = []
    for column in columns:
        if column not in record:
            raise MonodistillError(f"{path}:{line}: no column {column!r}")
        if record[column] is None or str(record[column]).strip() == "":
            raise MonodistillError(f"{path}:{line}: empty {column!r}")
        values.append(record[column])
    values[-1] = str(values[-1])
    return (line, *values)


def read_token_file(path: Path, label_column: str) -> list[tuple[int, list[str], list[str]]]:
    """Sentences ``(first line, words, tags)`` from CoNLL-U (tagging ``label_column``) or ``token<TAB>tag`` files."""
    conllu = path.suffix.lower() == ".conllu"
    if conllu and label_column not in CONLLU_COLUMNS:
        raise MonodistillError(f"{path}: label_column {label_column!r} is not a CoNLL-U column {CONLLU_COLUMNS}")
    sentences: list[tuple[int, list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    start = 1
    for line_number, line in enumerate(_lines(read_text(path)), start=1):
        if not line.strip():
            if words:
                sentences.append((start, words, tags))
            words, tags, start = [], [], line_number + 1
            continue
        if conllu and line.startswith("#"):
            continue
        fields = line.split("\t")
        if conllu:
            if len(fields) != 10:
                raise MonodistillError(
                    f"{path}:{line_number}: a CoNLL-U line needs 10 tab-separated fields, got {len(fields)}"
                )
            if "-" in fields[0] or "." in fields[0]:
                continue  # multiword-token ranges and empty nodes carry no tag of their own
            word, tag = fields[1], fields[CONLLU_COLUMNS.index(label_column)]
        else:
            if len(fields) != 2:
                raise MonodistillError(f"{path}:{line_number}: expected token<TAB>tag, got {len(fields)} fields")
            word, tag = fields
        if not words:
            start = line_number
        words.append(word)
        tags.append(tag)
    if words:
        sentences.append((start, words, tags))
    if not sentences:
        raise MonodistillError(f"{path}: the split is empty")
    return sentences


def _lines(text: str) -> list[str]:
    # Only \n and \r\n end a line: str.splitlines() also splits at U+2028, U+0085 and form feeds,
    # which occur inside real text and would shift every line number after them.
    return text.replace("\r\n", "\n").split("\n")


def _check_labels(rows: list[Any], labels: list[str], path: Path, kind: str) -> None:
    allowed = set(labels)
    for row in rows:
        values = row[2] if kind == "token-classification" else [row[-1]]
        for value in values:
            if value not in allowed:
                raise MonodistillError(f"{path}:{row[0]}: label {value!r} is not in the label set {labels}")


def _to_dataset(rows: list[Any], index: dict[str, int], kind: str) -> datasets.Dataset:
    if kind == "token-classification":
        return datasets.Dataset.from_dict(
            {"tokens": [row[1] for row in rows], "tags": [[index[tag] for tag in row[2]] for row in rows]}
        )
    data: dict[str, list[Any]] = {"text": [str(row[1]) for row in rows], "label": [index[row[-1]] for row in rows]}
    if kind == "pair-classification":
        data["text_pair"] = [str(row[2]) for row in rows]
    return datasets.Dataset.from_dict(data)


def _is_bio(labels: list[str]) -> bool:
    return any(label.startswith(("B-", "I-")) for label in labels)
