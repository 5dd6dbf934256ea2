"""Loading a masked-LM checkpoint with a task head, without transformers' table of the expected swap.

A masked-LM checkpoint given a task head drops its masked-LM head and starts a new classifier: that is
said once per model, and any other missing or unexpected weight still warns (``load_for_task``).
"""

from __future__ import annotations

import warnings
from typing import Any

from monodistill.families import family_of
from monodistill.teacher import load_weights

_ANNOUNCED: set[tuple[str, str]] = set()  # (model, class): the expected-head line is printed once per model


def load_for_task(model_class: Any, model_path: str, pad_token_id: int | None = None, **kwargs: Any) -> Any:
    """``model_class.from_pretrained`` without transformers' load table for the expected head swap.

    ``pad_token_id`` (the tokenizer's) goes into a config that has none: a decoder's sequence classifier
    reads each example at its last token that is not padding, and cannot tell it without one (Qwen2.5's
    config names none; every encoder's does, and keeps its own).

    A masked-LM checkpoint given a task head drops its ``cls.predictions.*`` weights and starts a new
    ``classifier.*``: transformers prints that as a table of UNEXPECTED and MISSING keys on every
    fine-tune. Here it is one line per model; any other missing or unexpected key still warns, and
    weights that do not fit the config are refused (``teacher.load_weights``).
    """
    # The table is one warning record; load_weights drops just it (raising the logger's level would also
    # switch on transformers' tensor-parallel plan check, which warns on every load).
    model, info = load_weights(model_class, model_path, kind="model", quiet=True, **kwargs)
    expected: dict[str, list[str]] = {}
    for kind, prefixes in head_prefixes(model.config).items():
        keys = sorted(info.get(f"{kind}_keys") or [])
        odd = [key for key in keys if not _is_head_key(key, prefixes, model.base_model_prefix)]
        if odd:
            shown = ", ".join(odd[:8]) + (f" and {len(odd) - 8} more" if len(odd) > 8 else "")
            warnings.warn(f"{model_path}: {kind} weights outside the task and masked-LM heads: {shown}", stacklevel=2)
        base = f"{model.base_model_prefix}."
        expected[kind] = sorted({key.removeprefix(base).split(".")[0] for key in keys if key not in odd})
    if (model_path, model_class.__name__) not in _ANNOUNCED:
        _ANNOUNCED.add((model_path, model_class.__name__))
        new = ", ".join(f"{group}.*" for group in expected["missing"]) or "none"
        dropped = ", ".join(f"{group}.*" for group in expected["unexpected"]) or "none"
        head = "masked-LM head" if family_of(model.config, required=False).objective == "masked" else "LM head"
        print(f"{model_path}: new task head ({new}), unused {head} ({dropped}), as expected")
    if getattr(model.config, "pad_token_id", None) is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def head_prefixes(model_config: Any) -> dict[str, tuple[str, ...]]:
    """Weights a masked-LM checkpoint of this family is expected to lack (``missing``: the new task head, a pooler
    that masked-LM classes do not build) or hold unused (``unexpected``: its masked-LM head), matched after the
    backbone prefix (``bert.``); the family's adapter knows both (ModernBERT's classifiers reuse its head's dense,
    act and norm, so only its ``decoder.*`` goes). A family without an adapter is read as BERT's layout."""
    family = family_of(model_config, required=False)
    return {"missing": family.task_head_prefixes, "unexpected": family.head_drops()}


def _is_head_key(key: str, prefixes: tuple[str, ...], base_prefix: str) -> bool:
    return key.removeprefix(f"{base_prefix}.").startswith(prefixes)
