"""What every config module shares: ``ConfigError``, the check that raises it, and the config as data.

A refused value raises ``ConfigError``, which names the fields it is about by their canonical names
(``train.learning_rate``, ``student.num_layers``, ``evaluate.epochs``), so loading can tell which
layer set the value without reading the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from monodistill.checkpoint import atomic_write_text
from monodistill.errors import MonodistillError

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
STUDENT_INITS = ("random", "teacher-embeddings", "teacher-layers")
LOGIT_LOSSES = ("kl", "reverse_kl", "jsd", "mse")
OBJECTIVES = ("auto", "masked", "causal")


class ConfigError(MonodistillError, ValueError):
    """A config value that a section refuses.

    Attributes:
        fields: Canonical dotted names of the fields the check is about, as run configs spell them:
            ``("train.learning_rate",)``, or ``("data.streaming", "data.max_documents")`` for a check
            of both.
    """

    fields: tuple[str, ...]

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


def require(condition: bool, message: str, *fields: str) -> None:
    if not condition:
        raise ConfigError(message, *fields)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts, for YAML and JSON."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML, atomically: a crash never leaves a half-written one."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"section.field": value}``, every value as it is (lists and None included).

    Args:
        data: Nested dicts, e.g. from ``config_to_dict``.
        prefix: Prepended to every key, e.g. ``"config."``.

    Returns:
        One entry per leaf, in the order of ``data``.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
