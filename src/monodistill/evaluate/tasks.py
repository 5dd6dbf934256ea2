"""Downstream tasks: built-in Hub presets and local task files, read into one shape.

A task becomes two ``datasets.Dataset`` splits with integer labels:
- sequence tasks (``classification``, ``pair-classification``): columns ``text`` (and ``text_pair``), ``label``;
- ``token-classification``: columns ``tokens`` (list of words) and ``tags`` (list of label ids).

Local readers check every row and name the file and line of the first problem. A task that cannot
measure anything is refused: training labels that take one value (a CoNLL-U file that leaves UPOS as
``_`` and keeps its tags in XPOS). Test labels never seen in training are scored as errors, with a
warning that counts them (``strict_labels: true`` refuses them instead). A task file naming both ``test``
and ``validation`` has a dev split (``Task.dev``), on which settings are chosen (``selection.py``).

Where a built-in task lives and how its Hub splits are read is ``hub_tasks.py``; how a task file is read
and its rows checked, ``task_files.py``. Both loaders here check labels alike and build the ``Task``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import UPOS_TAGS
from monodistill.evaluate.hub_tasks import (
    PRESETS,
    HubPreset,
    flat_labels,
    hub_label_index,
    hub_split_to_dataset,
    read_hub_split,
)
from monodistill.evaluate.task_files import (
    METRICS,
    check_labels,
    check_spec,
    count_unseen_labels,
    read_rows,
    read_task_spec,
    rows_to_dataset,
    split_files,
)
from monodistill.hub import load_hub_dataset
from monodistill.progress import say_once


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
    columns = {split: read_hub_split(name, preset, where, split, dataset) for split, dataset in loaded.items()}
    train, test = columns[preset.train_split], columns[preset.test_split]
    raw_train = loaded[preset.train_split]
    inputs = (preset.text_column, preset.text_pair_column, preset.label_column)
    train_values, test_values = (flat_labels(split["labels"], token_task) for split in (train, test))
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
    labels, extra, index = hub_label_index(names, train_values, test_values)
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
    splits = [hub_split_to_dataset(split, index, token_task) for split in (train, test)]
    metric = "entity-f1" if token_task and _is_bio(labels) else "accuracy"
    origin = task_source(splits[0], splits[1], hub=preset)
    return Task(name, preset.kind, labels, metric, splits[0], splits[1], extra, origin)


def load_local_task(path: Path) -> Task:
    """Read a task described by a small YAML file; data paths are relative to it.

    Every value is read as the text typed: ``labels: [no, yes]`` are the labels "no" and "yes", not
    booleans. Unknown keys are refused, naming the nearest known one. Token files are read in the
    ``format`` named, or the one their content shows (see ``formats.py``).
    """
    spec = read_task_spec(path)
    check_spec(spec, path)
    kind = spec["kind"]
    token_task = kind == "token-classification"
    files = split_files(path, spec)
    read = read_rows(spec, files)
    refuse_one_value(read.values["train"], read.label_column, files["train"], read.varying)
    declared = spec.get("labels") or (list(UPOS_TAGS) if read.universal else None)
    labels = declared or sorted(set(read.values["train"]))
    for split, file in files.items():
        if declared or split != "test":  # settings are chosen on the dev split by the model's own outputs
            check_labels(read.rows[split], labels, file, kind)
    strict = spec.get("strict_labels") == "true"
    unseen = count_unseen_labels(set(read.values["train"]), read.rows["test"], files["test"], kind, strict)
    if unseen:
        _warn_unseen(unseen, files["test"], "words" if token_task else "examples", has_output=bool(declared))
    extra = [label for label in sorted(unseen) if label not in labels]
    index = {label: position for position, label in enumerate([*labels, *extra])}
    splits = {split: rows_to_dataset(split_rows, index, kind) for split, split_rows in read.rows.items()}
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


def _is_bio(labels: list[str]) -> bool:
    return any(label.startswith(("B-", "I-")) for label in labels)
