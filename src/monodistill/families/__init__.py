"""One adapter per model family, registered by ``model_type``: the only place that knows architectures.

``family_of(model or config)`` gives the adapter (``base.Family``); each module of this package defines one
adapter as ``FAMILY``, and is found here by name, so a new family is one file (``rembert.py`` is an example:
README, "Adding a model family"). ``base`` (encoders, BERT's layout) and ``decoder`` (causal LMs, Llama's) hold
what the adapters share. Outside this package no module compares a family name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from monodistill.errors import MonodistillError
from monodistill.families.base import Family, MaskedLMHead

__all__ = ["GENERIC", "REGISTRY", "Family", "MaskedLMHead", "family_of", "student_families", "supported_families"]

SHARED_MODULES = ("base", "decoder")
"""The modules of this package that define no family: what the adapters share."""


def _discover() -> dict[str, Family]:
    registry: dict[str, Family] = {}
    for module in sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name not in SHARED_MODULES):
        family = importlib.import_module(f"{__name__}.{module}").FAMILY
        for model_type in family.model_types:
            if model_type in registry:
                raise RuntimeError(f"families.{module} registers {model_type!r} a second time")
            registry[model_type] = family
    return registry


REGISTRY: dict[str, Family] = _discover()
"""model_type -> its adapter."""


def supported_families(objective: str | None = None) -> tuple[str, ...]:
    """Every ``model_type`` an adapter serves (of one ``objective``, masked or causal, when given), sorted."""
    return tuple(sorted(name for name, family in REGISTRY.items() if objective in (None, family.objective)))


def student_families(objective: str | None = None) -> tuple[str, ...]:
    """The families a student can be built in for a teacher of another family (``student.family``), of one
    ``objective`` when given: each such adapter's first ``model_type`` (Llama's adapter serves Mistral too, but
    builds a Llama config)."""
    return tuple(
        name
        for name in supported_families(objective)
        if REGISTRY[name].builds_fresh and name == REGISTRY[name].model_types[0]
    )


GENERIC = Family()
"""BERT's layout, for what any model is asked where no adapter is needed to answer (``family_of(required=False)``)."""


def family_of(model_or_config: Any, required: bool = True) -> Family:
    """The adapter of a model, its config, or a ``model_type`` name; ``GENERIC`` for an unknown one unless ``required``.

    Raises:
        MonodistillError: for a family no adapter serves (when ``required``), naming those that are served.
    """
    if isinstance(model_or_config, str):
        model_type = model_or_config
    else:
        config = getattr(model_or_config, "config", model_or_config)
        model_type = str(getattr(config, "model_type", type(model_or_config).__name__))
    family = REGISTRY.get(model_type)
    if family is None and not required:
        return GENERIC
    if family is None:
        raise MonodistillError(
            f"no adapter for model type {model_type!r}; monodistill distils {', '.join(supported_families())}"
        )
    return family
