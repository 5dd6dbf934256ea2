"""Loading a config: dataclass defaults < YAML file < the CLI's flags < ``section.field=value`` overrides.

PyYAML and OmegaConf do the parsing and merging. What is ours: YAML 1.2 booleans, text overrides
taken as typed, the nearest known field for an unknown one, and, for a value a section refuses,
the layer that set it, found from the fields the ``ConfigError`` names.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from monodistill.config.base import ConfigError
from monodistill.errors import MonodistillError, not_utf8

ConfigT = TypeVar("ConfigT")

# What YAML reads as null; an optional text field given one of these on the command line is unset.
YAML_NULLS = ("", "~", "null", "Null", "NULL")


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, never yes/no/on/off.

    YAML 1.1 reads ``no`` as False, which turns a documented value such as ``mixed_precision: no``
    into a boolean. Boolean fields still accept yes/no: OmegaConf converts the text by the schema.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file, whatever the platform's locale, without a leading byte-order mark.

    Args:
        path: The file to read.

    Returns:
        Its text, line endings as stored.

    Raises:
        MonodistillError: ``PATH is not UTF-8 (byte 0x.. at offset N)``, naming the first bad byte.
    """
    data = path.read_bytes()
    # Editors on Windows write a BOM; it is not part of the text (and would stick to the first column name).
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        raise not_utf8(path, data[offset], offset) from None


def load_config(
    schema: type[ConfigT],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    updates: dict[str, Any] | None = None,
) -> ConfigT:
    """Build a validated config: dataclass defaults < YAML file < ``updates`` < dotted overrides.

    Args:
        schema: The config dataclass, e.g. ``DistillConfig``.
        path: Optional YAML file holding differences from the defaults.
        overrides: ``section.field=value`` strings. A text field takes the value as typed (``no`` stays
            ``"no"``; surrounding quotes are removed); other fields read it as a YAML scalar. A list
            entry is addressed by its index: ``students.1.num_layers=4``.
        updates: Nested dict applied after the file (the CLI's explicit flags); ``None`` values are skipped.

    Returns:
        An instance of ``schema``.

    Raises:
        MonodistillError: naming where the bad setting came from (the file or the override), the field
            and the problem; an unknown field comes with the nearest known one. A value that a section
            refuses raises its subclass ``ConfigError``, with the refused fields.
    """
    merged = OmegaConf.structured(schema)
    # Each layer applied, lowest precedence first: where it came from, and the fields it sets.
    layers: list[tuple[str, set[str]]] = []
    if path is not None:
        where = f"invalid config in {path}"
        file_data = _read_yaml(Path(path))
        _check_keys(schema, file_data, where)
        merged = _merge(merged, file_data, where)
        layers.append((where, _fields_set(schema, file_data)))
    flags = _drop_none(updates or {})
    if flags:
        merged = _merge(merged, flags, "invalid config")
        layers.append(("invalid config", _fields_set(schema, flags)))
    for item in overrides or []:
        where = f"override {item!r}"
        key, layer = _override_layer(schema, item)
        merged = _merge_override(merged, key, layer, where)
        layers.append((where, _fields_set(schema, layer)))
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise MonodistillError(f"invalid config: {_omegaconf_message(error)}") from None
    except ConfigError as error:  # a section's __post_init__; OmegaConf lets it through unwrapped
        refused = set(error.fields)
        where = next((where for where, fields in reversed(layers) if fields & refused), "invalid config")
        raise ConfigError(f"{where}: {error}", *error.fields) from None
    return config  # type: ignore[return-value]


def lists_students(path: str | Path | None) -> bool:
    """Whether a config file describes several students (a ``students`` list, as ``run`` takes)."""
    return path is not None and "students" in _read_yaml(Path(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MonodistillError(f"config file {path} does not exist")
    try:
        data = yaml.load(read_text(path), Loader=_Yaml12Loader)
    except yaml.YAMLError as error:
        raise MonodistillError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MonodistillError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _merge(merged: Any, layer: Any, where: str) -> Any:
    try:
        return OmegaConf.merge(merged, layer)
    except OmegaConfBaseException as error:
        raise MonodistillError(f"{where}: {_omegaconf_message(error)}") from None


def _merge_override(merged: Any, key: str, layer: dict[str, Any], where: str) -> Any:
    """Apply one override's layer; through a list index (``students.1.name``) it updates that entry."""
    parts = key.split(".")
    if not any(part.isdigit() for part in parts):
        return _merge(merged, layer, where)
    # OmegaConf cannot merge {"students": {"1": ...}} into a list, but it can update the entry in place.
    value: Any = layer
    for part in parts:
        value = value[part]
    try:
        OmegaConf.update(merged, key, value, merge=True)
    except OmegaConfBaseException as error:
        raise MonodistillError(f"{where}: {_omegaconf_message(error)}") from None
    return merged


def _override_layer(schema: type, item: str) -> tuple[str, dict[str, Any]]:
    """``section.field=value`` as its key and a nested config layer; a text field keeps the value as typed."""
    if "=" not in item or item.startswith("="):
        raise MonodistillError(f"override {item!r} is not of the form section.field=value")
    key, text = item.split("=", 1)
    parts = key.split(".")
    declared = _field_type(schema, parts, f"override {item!r}")
    if declared is None or _without_none(declared) is not str:
        # Numbers, booleans, lists: parsed as YAML scalars.
        return key, OmegaConf.to_container(OmegaConf.from_dotlist([item]))  # type: ignore[return-value]
    layer: Any = _text_value(text, optional=declared is not str)
    for part in reversed(parts):
        layer = {part: layer}
    return key, layer


def _text_value(text: str, optional: bool) -> str | None:
    if optional and text in YAML_NULLS:
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            unquoted = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(unquoted, str):
            return unquoted
    return text


def _field_type(schema: type, parts: list[str], where: str) -> Any:
    """The declared type of the field at ``parts``, or None past what the schema declares.

    Raises:
        MonodistillError: for a field the schema does not have, naming the nearest one.
    """
    current: Any = schema
    for depth, part in enumerate(parts):
        current = _without_none(current)
        if dataclasses.is_dataclass(current) and isinstance(current, type):
            hints = _field_types(current)
            if part not in hints:
                prefix = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, list(hints), n=1)
                hint = f"did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else f"fields: {list(hints)}"
                raise MonodistillError(f"{where}: {prefix or 'the config'} has no field {part!r} ({hint})")
            current = hints[part]
        elif typing.get_origin(current) is list and part.isdigit():
            current = typing.get_args(current)[0]
        else:
            return None
    return current


def _check_keys(schema: type, data: dict[str, Any], where: str, prefix: tuple[str, ...] = ()) -> None:
    for key, value in data.items():
        parts = [*prefix, str(key)]
        declared = _without_none(_field_type(schema, parts, where))
        if isinstance(value, dict):
            _check_keys(schema, value, where, tuple(parts))
        elif isinstance(value, list) and typing.get_origin(declared) is list:
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _check_keys(schema, item, where, (*parts, str(index)))


def _without_none(declared: Any) -> Any:
    """``X`` for ``X | None``; anything else unchanged."""
    arguments = [argument for argument in typing.get_args(declared) if argument is not type(None)]
    if isinstance(declared, types.UnionType) and len(arguments) == 1:
        return arguments[0]
    return declared


def _field_types(schema: type) -> dict[str, Any]:
    """A config dataclass's fields and their declared types (not its ``section`` name)."""
    hints = typing.get_type_hints(schema)
    return {field.name: hints[field.name] for field in dataclasses.fields(schema)}


def _fields_set(declared: Any, data: Any) -> set[str]:
    """The canonical names of the fields a config layer gives values to, at any depth.

    In ``ExperimentConfig``, ``students: [{num_layers: 2}]`` sets ``students`` and ``student.num_layers``;
    with ``EvaluateConfig`` as the whole config, ``epochs`` sets ``evaluate.epochs``.
    """
    declared = _without_none(declared)
    names: set[str] = set()
    if isinstance(data, dict) and dataclasses.is_dataclass(declared) and isinstance(declared, type):
        section = getattr(declared, "section", None)
        for key, declared_type in _field_types(declared).items():
            if key in data:
                names.add(f"{section}.{key}" if section else key)
                names |= _fields_set(declared_type, data[key])
    elif typing.get_origin(declared) is list and isinstance(data, list | dict):
        # A dict here is an override through a list index: {"1": {"num_layers": 2}}.
        entries = data.values() if isinstance(data, dict) else data
        for entry in entries:
            names |= _fields_set(typing.get_args(declared)[0], entry)
    return names


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                cleaned[key] = value
        elif value is not None:
            cleaned[key] = value
    return cleaned


def _omegaconf_message(error: OmegaConfBaseException) -> str:
    # OmegaConf appends object/reference types on extra lines; the first line plus the key is enough.
    message = str(error).splitlines()[0]
    key = getattr(error, "full_key", None)
    return f"{key}: {message}" if key else message
