"""Downstream tasks: built-in Hub presets and local task files, read into one shape.

A task becomes two ``datasets.Dataset`` splits with integer labels:
- sequence tasks (``classification``, ``pair-classification``): columns ``text`` (and ``text_pair``), ``label``;
- ``token-classification``: columns ``tokens`` (list of words) and ``tags`` (list of label ids).

Local readers check every row and name the file and line of the first problem. A task that cannot
measure anything is refused: training labels that take one value (a CoNLL-U file that leaves UPOS as
``_`` and keeps its tags in XPOS). Test labels never seen in training are scored as errors, with a
warning that counts them (``strict_labels: true`` refuses them instead). A task file naming both ``test``
and ``validation`` has a dev split (``Task.dev``), on which settings are chosen (``selection.py``).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import yaml

from monodistill.config import read_text
from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import (
    FORMATS,
    UPOS_TAGS,
    TokenFileSpec,
    read_table,
    read_token_file,
    varying_table_columns,
)
from monodistill.hub import PARQUET_REVISION, load_hub_dataset
from monodistill.progress import say_once

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
class Task:
    """A task ready for fine-tuning."""

    name: str
    kind: str
    labels: list[str]
    metric: str
    train: datasets.Dataset
    test: datasets.Dataset
    unseen_labels: list[str] = field(default_factory=list)
    """Test labels never seen in training, ids ``len(labels)`` on: the model has no output for them."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where its data was read (``task_source``): what a model card may claim a score on, whatever the name."""
    dev: datasets.Dataset | None = None
    """A held-out split to choose settings on (a task file's ``validation`` beside its ``test``), or None."""

    @property
    def label_names(self) -> list[str]:
        """Names of every gold label id: the model's labels, then the unseen test labels."""
        return [*self.labels, *self.unseen_labels]

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
    labels: tuple[str, ...] | None = None
    """Label names, in id order, for a dataset whose labels are plain integers (None: from its features)."""
    revision: str | None = None
    """The revision the preset is written for (None: the default branch, read as it is)."""


PRESETS = {
    # The Hub's "test" split of Hatespeech Filipino repeats the training file (10,000 rows, same bytes
    # as train); the 4,232-row "validation" split is the held-out set.
    # The three repositories ship loading scripts, so the presets read the Hub's Parquet conversion.
    # Written against the Hub as documented in 2025; this machine has no network to re-check them.
    "hatespeech-filipino": HubPreset(
        "jcblaise/hatespeech_filipino",
        "classification",
        "text",
        "label",
        test_split="validation",
        revision=PARQUET_REVISION,
    ),
    "newsph-nli": HubPreset(
        "jcblaise/newsph_nli",
        "pair-classification",
        "premise",
        "label",
        text_pair_column="hypothesis",
        revision=PARQUET_REVISION,
    ),
    "tlunified-ner": HubPreset(
        "ljvmiranda921/tlunified-ner", "token-classification", "tokens", "ner_tags", revision=PARQUET_REVISION
    ),
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
    """Read a built-in task from the Hub, with labels as ids into its label names, as local tasks have them.

    Label names are the preset's ``labels``, else the dataset's ``ClassLabel`` names (the values are then
    ids into them), else the distinct training values, sorted (integers by value). Rows marked unlabelled
    (a label, or any tag, below 0: NewsPH-NLI marks them -1) are dropped first, saying how many per split.

    Raises:
        MonodistillError: naming the dataset and label column, when a column is missing, a label is
            neither an integer nor text, an id falls outside the label names, a sentence's tags do not
            match its words, or a split has no labelled row.
    """
    where = preset.dataset if preset.config is None else f"{preset.dataset} ({preset.config})"
    token_task = preset.kind == "token-classification"
    loaded = {
        split: load_hub_dataset("task dataset", preset.dataset, preset.config, split, preset.revision)
        for split in dict.fromkeys((preset.train_split, preset.test_split))
    }
    columns = {split: _read_hub_split(name, preset, where, split, dataset) for split, dataset in loaded.items()}
    train, test = columns[preset.train_split], columns[preset.test_split]
    raw_train = loaded[preset.train_split]
    inputs = (preset.text_column, preset.text_pair_column, preset.label_column)
    train_values, test_values = (_flat(split["labels"], token_task) for split in (train, test))
    if len({isinstance(value, str) for values in (train_values, test_values) for value in values}) > 1:
        raise MonodistillError(
            f"task dataset {where}: column {preset.label_column!r} holds integers in one split and text in another"
        )
    refuse_one_value(
        [str(value) for value in train_values],
        preset.label_column,
        f"{where} ({preset.train_split} split)",
        lambda: [c for c in raw_train.column_names if c not in inputs and len({str(v) for v in raw_train[c]}) > 1],
    )
    feature = raw_train.features[preset.label_column]
    feature = getattr(feature, "feature", feature)  # tags: a List of ClassLabel
    names = list(preset.labels or []) or (feature.names if isinstance(feature, datasets.ClassLabel) else [])
    source = "the preset's labels" if preset.labels else "the dataset's ClassLabel feature"
    labels, extra, index = _hub_label_index(names, train_values, test_values)
    if token_task and not names and isinstance(train_values[0], int):
        print(
            f"{name}: the tags of {where} (column {preset.label_column!r}) carry no names, so they are labelled by "
            "value and scored per word by accuracy (HubPreset.labels names them)"
        )
    for split, values in ((preset.train_split, train_values), (preset.test_split, test_values)):
        outside = next((value for value in values if value not in index), None)
        if outside is not None:
            raise MonodistillError(
                f"task dataset {where}: column {preset.label_column!r} of the {split} split holds "
                f"{'tag' if token_task else 'label'} {outside!r}, outside the {len(names)} label names "
                f"{names} ({source})"
            )
    known = set(train_values)
    unseen = Counter(labels[index[value]] if names else str(value) for value in test_values if value not in known)
    if unseen:
        units = "words" if token_task else "examples"
        _warn_unseen(unseen, f"{where} ({preset.test_split} split)", units, has_output=bool(names))
    splits = [_hub_split_to_dataset(split, index, token_task) for split in (train, test)]
    metric = "entity-f1" if token_task and _is_bio(labels) else "accuracy"
    origin = task_source(splits[0], splits[1], hub=preset)
    return Task(name, preset.kind, labels, metric, splits[0], splits[1], extra, origin)


def _hub_label_index(
    names: list[str], train_values: list[Any], test_values: list[Any]
) -> tuple[list[str], list[str], dict[Any, int]]:
    """Label names, unseen test labels, and the id of each raw value.

    With ``names``, integers are already ids into them and text is looked up. Without, the training values,
    sorted, are the labels, and test values never seen in training get ids past them.
    """
    if names:
        if isinstance(train_values[0], str):
            return names, [], {name: position for position, name in enumerate(names)}
        return names, [], {position: position for position in range(len(names))}
    seen = sorted(set(train_values))
    unseen = sorted(set(test_values) - set(seen))
    index = {value: position for position, value in enumerate([*seen, *unseen])}
    return [str(value) for value in seen], [str(value) for value in unseen], index


def _read_hub_split(
    name: str, preset: HubPreset, where: str, split: str, dataset: datasets.Dataset
) -> dict[str, list[Any]]:
    """A Hub split's input columns and raw ``labels``, checked, with unlabelled rows dropped (saying so)."""
    column = preset.label_column
    wanted = [name for name in (preset.text_column, preset.text_pair_column, column) if name]
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise MonodistillError(
            f"task dataset {where}: the {split} split has no column {missing[0]!r} "
            f"(its columns: {', '.join(dataset.column_names)})"
        )
    token_task = preset.kind == "token-classification"
    table = dataset.select_columns(list(dict.fromkeys(wanted))).to_dict()  # Python lists: read once, not per row
    texts, values = table[preset.text_column], table[column]
    kept: list[int] = []
    below_zero: set[int] = set()
    for row, (text, value) in enumerate(zip(texts, values, strict=True)):
        problem = _hub_label_problem(text, value, token_task)
        if problem:
            raise MonodistillError(
                f"task dataset {where}: column {column!r}, row {row} of the {split} split: {problem}"
            )
        negative = {tag for tag in (value if token_task else [value]) if isinstance(tag, int) and tag < 0}
        below_zero |= negative
        if not negative:
            kept.append(row)
    if len(kept) < len(values):
        what = f"{'tag' if token_task else 'label'} {', '.join(str(value) for value in sorted(below_zero))}"
        print(f"{name}: dropped {len(values) - len(kept):,} unlabelled rows ({what}) of {len(values):,} in {split}")
    if not kept:
        raise MonodistillError(f"task dataset {where}: column {column!r} has no labelled row in the {split} split")
    sources = {"tokens": preset.text_column} if token_task else {"text": preset.text_column}
    if preset.text_pair_column and not token_task:
        sources["text_pair"] = preset.text_pair_column
    columns = {key: table[source] for key, source in sources.items()} | {"labels": values}
    return {key: [column_values[row] for row in kept] for key, column_values in columns.items()}


def _hub_label_problem(text: Any, value: Any, token_task: bool) -> str | None:
    """What is wrong with one row's label (or tags), or None."""
    if token_task and not (isinstance(value, list) and isinstance(text, list)):
        return f"tags and words must be lists, got {type(value).__name__} and {type(text).__name__}"
    wrong = [tag for tag in (value if token_task else [value]) if not isinstance(tag, (int, str))]
    if wrong:
        return f"labels must be integers or text, got {type(wrong[0]).__name__} {wrong[0]!r}"
    if token_task and len(value) != len(text):
        return f"{len(value)} tags for {len(text)} words"
    return None


def _flat(labels: list[Any], token_task: bool) -> list[Any]:
    return [tag for tags in labels for tag in tags] if token_task else labels


def _hub_split_to_dataset(columns: dict[str, list[Any]], index: dict[Any, int], token_task: bool) -> datasets.Dataset:
    rows = {key: values for key, values in columns.items() if key != "labels"}
    if token_task:
        rows["tags"] = [[index[tag] for tag in tags] for tags in columns["labels"]]
    else:
        rows["label"] = [index[label] for label in columns["labels"]]
    return datasets.Dataset.from_dict(rows)


def load_local_task(path: Path) -> Task:
    """Read a task described by a small YAML file; data paths are relative to it.

    Every value is read as the text typed: ``labels: [no, yes]`` are the labels "no" and "yes", not
    booleans. Unknown keys are refused, naming the nearest known one. Token files are read in the
    ``format`` named, or the one their content shows (see ``formats.py``).
    """
    spec = _read_task_spec(path)
    _check_spec(spec, path)
    kind = spec["kind"]
    token_task = kind == "token-classification"
    test_key = "test" if "test" in spec else "validation"
    if test_key not in spec:
        raise MonodistillError(f"task file {path} needs a test (or validation) split")
    files = {split: data_path(path, spec[key]) for split, key in (("train", "train"), ("test", test_key))}
    if test_key == "test" and "validation" in spec:  # beside a test split, the validation split is the dev split
        files["dev"] = data_path(path, spec["validation"])
    for file in files.values():
        if not file.is_file():
            raise MonodistillError(f"task file {path}: data file {file} does not exist")
    rows: dict[str, list[Any]]
    varying: Callable[[], list[str]]
    if token_task:
        keys = ("format", "token_column", "label_column", "language_prefix")
        token_spec = TokenFileSpec(**{key: spec.get(key) for key in keys})
        read = {split: read_token_file(file, token_spec) for split, file in files.items()}
        rows = {split: file.sentences for split, file in read.items()}
        values = {split: [tag for row in split_rows for tag in row[2]] for split, split_rows in rows.items()}
        column = read["train"].label_column
        universal = read["train"].format == "conllu" and column == "upos"
        varying = lambda: read["train"].varying_columns
    else:
        columns = [spec["text_column"], spec.get("text_pair_column"), spec["label_column"]]
        rows = {split: read_table(file, [c for c in columns if c]) for split, file in files.items()}
        values = {split: [str(row[-1]) for row in split_rows] for split, split_rows in rows.items()}
        column, universal = spec["label_column"], False
        varying = lambda: varying_table_columns(files["train"], [c for c in columns if c])
    refuse_one_value(values["train"], column, files["train"], varying)
    declared = spec.get("labels") or (list(UPOS_TAGS) if universal else None)
    labels = declared or sorted(set(values["train"]))
    for split, file in files.items():
        if declared or split != "test":  # settings are chosen on the dev split by the model's own outputs
            _check_labels(rows[split], labels, file, kind)
    strict = spec.get("strict_labels") == "true"
    unseen = count_unseen_labels(set(values["train"]), rows["test"], files["test"], kind, strict)
    if unseen:
        _warn_unseen(unseen, files["test"], "words" if token_task else "examples", has_output=bool(declared))
    extra = [label for label in sorted(unseen) if label not in labels]
    index = {label: position for position, label in enumerate([*labels, *extra])}
    splits = {split: _to_dataset(split_rows, index, kind) for split, split_rows in rows.items()}
    metric = spec.get("metric") or ("entity-f1" if token_task and _is_bio(labels) else "accuracy")
    if metric not in METRICS:
        raise MonodistillError(f"task file {path}: metric must be one of {METRICS}, got {metric!r}")
    source = task_source(splits["train"], splits["test"], files=files)
    return Task(spec["name"], kind, labels, metric, splits["train"], splits["test"], extra, source, splits.get("dev"))


def task_source(
    train: datasets.Dataset,
    test: datasets.Dataset,
    hub: HubPreset | None = None,
    files: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Where a task's data was read, with each split's rows: ``{"hub": id, "config", "revision",
    "train_split", "test_split"}`` or ``{"files": {"train": path, "test": path}}``.

    A name says nothing about the data (a local file may be named as a Hub task): the model card gives a
    score to the Hub's ``model-index`` only for the Hub dataset's own split, read whole, and names local
    files as what they are.
    """
    rows = {"train_rows": len(train), "test_rows": len(test)}
    if hub is not None:
        where = {"hub": hub.dataset, "config": hub.config, "revision": hub.revision}
        return where | {"train_split": hub.train_split, "test_split": hub.test_split} | rows
    return {"files": {split: str(file.resolve()) for split, file in (files or {}).items()}} | rows


def _check_spec(spec: dict[str, Any], path: Path) -> None:
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


def refuse_one_value(values: list[str], column: str, file: Path | str, varying: Callable[[], list[str]]) -> None:
    """Refuse training labels that take one value: every model would learn the one answer and score alike.

    Raises:
        MonodistillError: naming the label column, its value, and the columns of the file that do vary.
    """
    distinct = set(values)
    if len(distinct) > 1:
        return
    others = varying()
    hint = f"columns that vary: {', '.join(others)}" if others else "no other column varies"
    raise MonodistillError(
        f"{file}: the label column {column!r} takes one value ({next(iter(distinct), '')!r}) in every training "
        f"row, so there is nothing to learn and every model would score alike; {hint}"
    )


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


def data_path(task_file: Path, given: str) -> Path:
    """A data file named in ``task_file``, relative to its folder, as messages print it: normalised
    (``configs/tasks/../../../shared/x`` is ``../shared/x``), or resolved where a link in it would make that
    another file."""
    path = task_file.parent / given
    normal = Path(os.path.normpath(path))
    return normal if normal.resolve() == path.resolve() else path.resolve()


def _warn_unseen(unseen: Counter[str], file: Path | str, units: str, has_output: bool) -> None:
    """Say how many test labels training never showed, and how they are scored."""
    counts = ", ".join(f"{label}: {count}" for label, count in unseen.most_common())
    if has_output:
        note = "the model has an output for each that training never taught"
    else:
        note = "the model has no output for them, so each is scored as an error"
    say_once(
        f"warning: {file}: {sum(unseen.values())} test {units} carry labels never seen in training ({counts}); "
        f"{note} (strict_labels: true refuses such a test split)",
        file=sys.stderr,
    )


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


def _row_labels(row: tuple[Any, ...], kind: str) -> list[tuple[int, str]]:
    """Each label of a row with its line: a sentence's tags, or a table row's label."""
    return list(zip(row[3], row[2], strict=True)) if kind == "token-classification" else [(row[0], row[-1])]


def _check_labels(rows: list[Any], labels: list[str], path: Path, kind: str) -> None:
    allowed = set(labels)
    for row in rows:
        for line, value in _row_labels(row, kind):
            if value not in allowed:
                raise MonodistillError(f"{path}:{line}: label {value!r} is not in the label set {labels}")


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
