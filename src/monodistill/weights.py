"""Model weights checked without loading them: the shapes a checkpoint stores against those its config builds.

``check_weight_shapes`` reads the stored shapes from the safetensors headers (or a ``.bin`` state dict
mapped onto the meta device) and builds the model from its ``config.json`` under ``torch.device("meta")``,
so no tensor data is read and nothing depends on how a transformers release loads (device maps, Hub
kernels, key conversions). A mismatch is the same one-line error ``teacher.load_weights`` gives when it
loads the weights for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
import transformers
from safetensors import safe_open
from transformers import AutoModel

from monodistill.errors import MonodistillError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
LEGACY_NAMES = {"gamma": "weight", "beta": "bias"}
"""Old TensorFlow-era LayerNorm parameter names transformers renames on load (original mBERT/BERT checkpoints)."""


def check_weight_shapes(name_or_path: str, model_config: Any, kind: str = "model", revision: str | None = None) -> None:
    """Refuse in one line a checkpoint whose tensors do not have the shapes its ``config.json`` builds.

    Tensors the built model does not name (another head, buffers) are left to the loader. A Hub model
    whose headers can neither be fetched nor found in the local cache is not checked here; its load is.

    Raises:
        MonodistillError: naming the first mismatched tensor with both shapes.
    """
    stored = stored_shapes(name_or_path, revision)
    if stored is None:
        return
    built = built_shapes(model_config)
    prefix = str(getattr(model_class(model_config), "base_model_prefix", "") or "")
    mismatched = []
    for key, shape in stored.items():
        name = match_key(key, built, prefix)
        if name is not None and built[name] != shape:
            mismatched.append((name, shape, built[name]))
    if mismatched:
        raise shape_mismatch_error(kind, name_or_path, sorted(mismatched), getattr(model_config, "vocab_size", None))


def shape_mismatch_error(
    kind: str, name_or_path: str, mismatched: list[tuple[str, Iterable[int], Iterable[int]]], vocab_size: int | None
) -> MonodistillError:
    """The one-line error for weights that do not fit config.json: ``(key, stored, built)`` per tensor."""
    key, stored, built = mismatched[0]
    stored, built = list(stored), list(built)
    if vocab_size is not None and built[:1] == [vocab_size] != stored[:1]:
        what = f"says vocab_size={vocab_size} but {key} holds {stored[0]} rows"
    else:
        what = f"builds {key} as {built} but the weights hold {stored}"
    others = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
    return MonodistillError(
        f"{kind} {name_or_path}: config.json does not match the weights: it {what}{others}; "
        "use the config.json saved with these weights"
    )


def stored_shapes(name_or_path: str, revision: str | None = None) -> dict[str, tuple[int, ...]] | None:
    """Each stored tensor's shape, read from file headers: a local folder, or a Hub repository's safetensors.

    None when there is nothing to read (a Hub model neither reachable nor cached, or no weight file).
    """
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder_shapes(folder)
    try:  # the Hub serves safetensors headers by range requests: no weights are downloaded
        metadata = huggingface_hub.get_safetensors_metadata(name_or_path, revision=revision)
    except Exception:  # offline, gated, no safetensors: fall back to the cache, then to the load's own check
        cached = huggingface_hub.try_to_load_from_cache(name_or_path, "config.json", revision=revision)
        return folder_shapes(Path(cached).parent) if isinstance(cached, str) else None
    return {name: tuple(info.shape) for file in metadata.files_metadata.values() for name, info in file.tensors.items()}


def folder_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """The shapes stored in a model folder's safetensors files (sharded or not), else in its ``.bin``."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        files = sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = sorted(folder.glob("*.safetensors"))
    if files:
        shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})  # noqa: SIM118
        return shapes
    if (folder / BIN_FILE).is_file():
        state = torch.load(folder / BIN_FILE, map_location="meta", weights_only=True, mmap=True)
        return {key: tuple(value.shape) for key, value in state.items()}
    return None


def built_shapes(model_config: Any) -> dict[str, tuple[int, ...]]:
    """The parameter shapes the class ``config.json`` names builds, on the meta device (no memory, no data)."""
    found = model_class(model_config)
    with torch.device("meta"):
        model = AutoModel.from_config(model_config) if found is AutoModel else found(model_config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def model_class(model_config: Any) -> Any:
    """The class the config's ``architectures`` names when transformers has it, else ``AutoModel``."""
    for name in getattr(model_config, "architectures", None) or []:
        found = getattr(transformers, name, None)
        if found is not None:
            return found
    return AutoModel


def match_key(key: str, built: dict[str, tuple[int, ...]], prefix: str) -> str | None:
    """The built model's name for a stored key: as stored, with or without the base-model prefix.

    Legacy LayerNorm names are renamed first, as transformers does on load.
    """
    *path, leaf = key.split(".")
    key = ".".join([*path, LEGACY_NAMES.get(leaf, leaf)])
    candidates = [key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")] if prefix else [key]
    return next((name for name in candidates if name in built), None)
