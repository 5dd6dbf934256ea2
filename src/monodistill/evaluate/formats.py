"""Task data files as people have them, read strictly: every error names the file and line.

Sequence tasks: CSV (RFC 4180), TSV (one record a line, no quoting) and JSONL, columns by header name.
Token tasks: CoNLL-U, Universal NER ``.iob2``, CoNLL-2003 and ``token<TAB>tag`` files (WikiANN's raw
``lang:token`` words stripped on request). A token file's format is named in the task YAML (``format``)
or told from its first data line, and the choice is printed; its columns are picked by name or 0-based
index (``token_column``, ``label_column``). docs/TASKS.md shows each format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from monodistill.config import read_text
from monodistill.errors import MonodistillError
from monodistill.progress import say_once

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
UPOS_TAGS = (
    *("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM"),
    *("PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"),
)
"""The 17 universal part-of-speech tags: the label set of a CoNLL-U ``upos`` task."""
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class TokenFormat:
    """How one format lays out a word per line."""

    columns: tuple[str, ...]
    """Column names, in order; CoNLL-2003 files may hold any number of columns (names are for 4)."""
    token: str
    """The default token column."""
    label: str
    """The default label column."""
    field_count: int | None
    """Fields every line must have (None: as many as the file's first line)."""
    comments: bool = False
    """Whether ``#`` lines are comments (else ``#`` is a token)."""


FORMATS = {
    "conllu": TokenFormat(CONLLU_COLUMNS, "form", "upos", 10, comments=True),
    "iob2": TokenFormat(("id", "token", "tag"), "token", "tag", 5, comments=True),  # Universal NER: id token tag - -
    "conll2003": TokenFormat(("token", "pos", "chunk", "ner"), "token", "ner", None),
    "token-tag": TokenFormat(("token", "tag"), "token", "tag", 2),
}
IDENTIFIER_COLUMNS = ("id",)
"""Columns that number words: they always vary, so they are no hint of where labels are."""


@dataclass(frozen=True)
class TokenFileSpec:
    """What a task YAML says about its token files (None: the format's default or what the file shows)."""

    format: str | None = None
    token_column: str | None = None
    label_column: str | None = None
    language_prefix: str | None = None


class Sentence(NamedTuple):
    """One sentence of a token file."""

    line: int
    """The line of its first word."""
    words: list[str]
    tags: list[str]
    word_lines: list[int]
    """The line of each word, for errors about one tag."""


@dataclass
class TokenFile:
    """The sentences of one file, with what was learned reading it."""

    format: str
    sentences: list[Sentence]
    label_column: str
    """The label column as messages name it."""
    varying_columns: list[str] = field(default_factory=list)
    """Columns (besides the tokens and word numbers) whose values are not all the same."""


def read_token_file(path: Path, spec: TokenFileSpec) -> TokenFile:
    """Sentences of words and tags from a token-classification file.

    Args:
        path: A CoNLL-U, Universal NER ``.iob2``, CoNLL-2003 or ``token<TAB>tag`` file.
        spec: Format and columns from the task YAML; the format is detected when not given.

    Returns:
        The sentences, the format used, and which other columns vary (for degenerate-task messages).

    Raises:
        MonodistillError: naming the file and line of the first malformed line, or a column the format lacks.
    """
    lines = split_lines(read_text(path))
    if spec.format is None:
        name, reason = detect_format(path, lines)
        say_once(f"{path}: read as {name} ({reason}; set format: in the task file to choose another)")
    else:
        name = spec.format
    layout = FORMATS[name]
    separator: str | None = "\t"
    if name == "conll2003":
        first = next((line for line in lines if line.strip() and not line.startswith(DOCSTART)), "")
        separator = "\t" if "\t" in first else None  # None: any run of whitespace, as the original files
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    word_lines: list[int] = []
    columns: tuple[int, int] | None = None
    first_values: list[str] = []
    varies: list[bool] = []
    for line_number, fields in _records(path, lines, name, separator):
        if fields is None:
            if words:
                sentences.append(Sentence(word_lines[0], words, tags, word_lines))
            words, tags, word_lines = [], [], []
            continue
        if columns is None:
            columns = _resolve(path, spec, layout, len(fields))
            first_values, varies = list(fields), [False] * len(fields)
        elif len(fields) != len(first_values):
            raise MonodistillError(
                f"{path}:{line_number}: expected {len(first_values)} columns like the first line, got {len(fields)}"
            )
        for index, value in enumerate(fields):
            varies[index] = varies[index] or value != first_values[index]
        word, tag = fields[columns[0]], fields[columns[1]]
        if spec.language_prefix:
            word = _strip_prefix(path, line_number, word, spec.language_prefix)
        if not word or not tag:
            raise MonodistillError(f"{path}:{line_number}: empty {'token' if not word else 'tag'}")
        words.append(word)
        tags.append(tag)
        word_lines.append(line_number)
    if words:
        sentences.append(Sentence(word_lines[0], words, tags, word_lines))
    if not sentences or columns is None:
        raise MonodistillError(f"{path}: the split is empty")
    if not spec.language_prefix:
        _hint_prefix(path, sentences[0][1])
    names = _column_names(layout, len(first_values))
    skipped = {columns[0], *(names.index(column) for column in IDENTIFIER_COLUMNS if column in names)}
    varying = [names[i] for i, flag in enumerate(varies) if flag and i not in skipped and i != columns[1]]
    return TokenFile(name, sentences, names[columns[1]], varying)


def detect_format(path: Path, lines: list[str]) -> tuple[str, str]:
    """The format of a file, told from its ``.conllu`` suffix or its first data line; and why."""
    if path.suffix.lower() == ".conllu":
        return "conllu", "from its .conllu suffix"
    for line_number, line in enumerate(lines, start=1):
        if line.startswith(DOCSTART):
            return "conll2003", f"line {line_number} is a {DOCSTART} line"
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 10:
            return "conllu", f"line {line_number} has 10 tab-separated fields"
        if len(fields) == 5 and fields[0].isdigit():
            return "iob2", f"line {line_number} has 5 tab-separated fields, the first a word number"
        if len(fields) == 2:
            return "token-tag", f"line {line_number} is token<TAB>tag"
        if len(line.split()) >= 2:
            return "conll2003", f"line {line_number} has {len(line.split())} columns"
        raise MonodistillError(
            f"{path}:{line_number}: cannot tell the file's format from {line!r}; "
            f"set format: to one of {', '.join(FORMATS)} in the task file"
        )
    raise MonodistillError(f"{path}: the split is empty")


def _records(path: Path, lines: list[str], name: str, separator: str | None) -> Iterator[tuple[int, list[str] | None]]:
    """Each word line's fields, and None at each sentence boundary (a blank or ``-DOCSTART-`` line)."""
    layout = FORMATS[name]
    for line_number, line in enumerate(lines, start=1):
        if not line.strip() or (name == "conll2003" and line.startswith(DOCSTART)):
            yield line_number, None
            continue
        if layout.comments and line.startswith("#"):
            continue
        fields = line.split(separator)
        if layout.field_count is not None and len(fields) != layout.field_count:
            expected = {
                "conllu": "a CoNLL-U line needs 10 tab-separated fields",
                "iob2": "a Universal NER .iob2 line needs 5 tab-separated fields (id, token, tag, misc, misc)",
                "token-tag": "expected token<TAB>tag",
            }[name]
            raise MonodistillError(f"{path}:{line_number}: {expected}, got {len(fields)} fields")
        if name == "conll2003" and len(fields) < 2:
            raise MonodistillError(f"{path}:{line_number}: a CoNLL-2003 line needs a token and a tag, got {line!r}")
        if name == "conllu" and ("-" in fields[0] or "." in fields[0]):
            continue  # multiword-token ranges and empty nodes carry no tag of their own
        yield line_number, fields


def _column_names(layout: TokenFormat, count: int) -> list[str]:
    """Names of a line's columns: the format's where it defines them, ``column N`` elsewhere."""
    if layout is FORMATS["conll2003"] and count != len(layout.columns):
        return ["token", *(f"column {i}" for i in range(1, count - 1)), "tag"]
    return [layout.columns[i] if i < len(layout.columns) else f"column {i}" for i in range(count)]


def _resolve(path: Path, spec: TokenFileSpec, layout: TokenFormat, count: int) -> tuple[int, int]:
    """Indices of the token and label columns in a line of ``count`` fields."""
    names = _column_names(layout, count)
    aliases = {"token": 0, "tag": count - 1} if layout is FORMATS["conll2003"] else {}
    indices = []
    for key, value in (("token_column", spec.token_column or layout.token), ("label_column", spec.label_column)):
        if value is None:
            value = layout.label if layout.label in names else "tag"
        if value.isdigit():
            index = int(value)
        elif value in names:
            index = names.index(value)
        elif value in aliases:
            index = aliases[value]
        else:
            known = ", ".join(dict.fromkeys([*names, *aliases]))
            raise MonodistillError(f"{path}: {key} {value!r} is not a column here ({known}; or a 0-based index)")
        if index >= count:
            raise MonodistillError(f"{path}: {key} {value} is past the last of the {count} columns (0-based)")
        indices.append(index)
    if indices[0] == indices[1]:
        raise MonodistillError(f"{path}: token_column and label_column are the same column ({indices[0]})")
    return indices[0], indices[1]


def _hint_prefix(path: Path, words: list[str]) -> None:
    """Point at ``language_prefix`` when every word of the first sentence reads ``xx:word``, as in raw WikiANN."""
    prefixes = {word.split(":", 1)[0] for word in words if ":" in word[1:-1]}
    if len(prefixes) == 1 and all(":" in word[1:-1] for word in words):
        (prefix,) = prefixes
        if prefix.replace("-", "").isalpha() and prefix.islower():
            print(f"{path}: every word starts with {prefix + ':'!r}; set language_prefix: {prefix} to strip it")


def _strip_prefix(path: Path, line_number: int, word: str, language: str) -> str:
    prefix = f"{language}:"
    if not word.startswith(prefix) or word == prefix:
        raise MonodistillError(
            f"{path}:{line_number}: token {word!r} does not start with {prefix!r} (language_prefix: {language})"
        )
    return word[len(prefix) :]


def read_table(path: Path, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows of the named columns from CSV, TSV or JSONL, each with its line number first.

    Returns tuples ``(line, *values)``; the label is the last value, as a string. ``.tsv`` files are
    tab-separated with no quoting: one record per line, and a ``"`` is an ordinary character.
    ``.csv`` files follow RFC 4180: a quoted field may hold commas, quotes and line breaks.
    """
    text = read_text(path)
    rows: list[tuple[Any, ...]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line_number, line in enumerate(split_lines(text), start=1):
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


def varying_table_columns(path: Path, inputs: list[str]) -> list[str]:
    """Columns of a CSV, TSV or JSONL file, besides the inputs and label, whose values are not all the same."""
    text = read_text(path)
    records: list[dict[str, Any]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        records = [json.loads(line) for line in split_lines(text) if line.strip()]
    else:
        header: list[str] | None = None
        for _, fields in _delimited_records(path, text):
            if header is None:
                header = fields
            else:
                records.append(dict(zip(header, fields, strict=False)))
    names = dict.fromkeys(key for record in records for key in record)
    return [
        name
        for name in names
        if name not in inputs and len({json.dumps(record.get(name), default=str) for record in records}) > 1
    ]


def split_lines(text: str) -> list[str]:
    # Only \n and \r\n end a line: str.splitlines() also splits at U+2028, U+0085 and form feeds,
    # which occur inside real text and would shift every line number after them.
    return text.replace("\r\n", "\n").split("\n")
