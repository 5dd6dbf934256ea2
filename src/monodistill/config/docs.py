"""The resolved config as commented YAML (``monodistill config``): every field, its one-line doc, its default.

The docs are the field docstrings of the dataclasses, the string under each field in the source
(what ``--help`` cannot list), read with ``ast``. A field whose value is not its default says which
default it replaces, so the output is both a reference of the ``section.field=value`` options and a
record of what a config file and overrides change.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import math
import textwrap
import typing
from typing import Any

import yaml

HEADER = """\
# monodistill {command} config, resolved: built-in defaults < {source} < overrides.
# Set any field as {spelling} on the command line,
# or in a YAML file that holds only what differs from the defaults.
# A field set to something else than its default says so ("# default: ...").
"""


def describe_config(config: Any, command: str, source: str | None = None) -> str:
    """``config`` (a config dataclass instance) as YAML, each field under its doc comment.

    Args:
        config: The resolved config, e.g. from ``load_config``.
        command: The command it is for, in the header: distill, run or evaluate.
        source: The config file it was read from, if any.

    Returns:
        YAML text that ``yaml.safe_load`` reads back as the config's values.
    """
    spelling = {
        "evaluate": "field=value (or evaluate.field=value)",
        "run": "section.field=value (a student's: students.0.num_layers=4)",
    }.get(command, "section.field=value")
    header = HEADER.format(command=command, source=source or "no config file", spelling=spelling)
    return header + "\n".join(_mapping(config, type(config)(), indent=0))


def field_docs(schema: type) -> dict[str, str]:
    """Each field of a config dataclass -> its docstring on one line (empty without the source)."""
    return dict(_field_docs(schema))


@functools.cache
def _field_docs(schema: type) -> tuple[tuple[str, str], ...]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(schema)))
    except (OSError, TypeError, SyntaxError):  # no source shipped: values without docs
        return ()
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: list[tuple[str, str]] = []
    for node, following in itertools.pairwise(body):
        documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and documented:
            text = following.value.value  # type: ignore[attr-defined]
            if isinstance(text, str):
                docs.append((node.target.id, " ".join(text.split())))
    return tuple(docs)


def _mapping(config: Any, default: Any, indent: int) -> list[str]:
    """The fields of one dataclass instance, against an instance holding its defaults."""
    pad = " " * indent
    docs = field_docs(type(config))
    lines: list[str] = []
    for item in dataclasses.fields(config):
        value, default_value = getattr(config, item.name), getattr(default, item.name)
        section = dataclasses.is_dataclass(value) or (
            isinstance(value, list) and value and dataclasses.is_dataclass(value[0])
        )
        if section and not indent:
            lines.append("")  # a blank line before each top-level section
        if item.name in docs:
            lines.append(f"{pad}# {docs[item.name]}")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{item.name}:")
            lines += _mapping(value, default_value, indent + 2)
        elif section:
            entry_type = typing.get_args(typing.get_type_hints(type(config))[item.name])[0]
            lines.append(f"{pad}{item.name}:")
            for entry in value:
                lines.append(f"{pad}  -")
                lines += _mapping(entry, entry_type(), indent + 4)
        else:
            differs = "" if value == default_value else f"  # default: {_scalar(default_value)}"
            lines.append(f"{pad}{item.name}: {_scalar(value)}{differs}")
    return lines


def _scalar(value: Any) -> str:
    """A value as YAML writes it on one line (text quoted where YAML would read it as something else)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
