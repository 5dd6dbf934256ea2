"""Built-in tasks on the Hub: where each lives and what its columns are (``HubPreset``, ``PRESETS``), and its
splits read into input columns and labels, checked, with unlabelled rows dropped.

Label names are the preset's ``labels``, else the dataset's ``ClassLabel`` names, else the distinct
training values (``hub_label_index``); ``tasks.load_hub_task`` turns what is read here into a ``Task``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets

from monodistill.errors import MonodistillError
from monodistill.hub import PARQUET_REVISION


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


def read_hub_split(
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


def hub_label_index(
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


def flat_labels(labels: list[Any], token_task: bool) -> list[Any]:
    """A split's labels, every tag of every sentence for a token task."""
    return [tag for tags in labels for tag in tags] if token_task else labels


def hub_split_to_dataset(columns: dict[str, list[Any]], index: dict[Any, int], token_task: bool) -> datasets.Dataset:
    """A split read by ``read_hub_split`` as the columns fine-tuning reads, labels as ids through ``index``."""
    rows = {key: values for key, values in columns.items() if key != "labels"}
    if token_task:
        rows["tags"] = [[index[tag] for tag in tags] for tags in columns["labels"]]
    else:
        rows["label"] = [index[label] for label in columns["labels"]]
    return datasets.Dataset.from_dict(rows)
