"""A causal student's ONNX graph, with its key-value cache as inputs and outputs (``export`` calls it).

One graph serves the whole generation loop, in the layout Optimum gives a decoder "with past" (the names
transformers.js and most ONNX Runtime generation loops read)::

    inputs   input_ids (B, T), attention_mask (B, P + T), position_ids (B, T),
             past_key_values.{i}.key, past_key_values.{i}.value   (B, key-value heads, P, head dim), float32
    outputs  logits (B, T, V), present.{i}.key, present.{i}.value (B, key-value heads, P + T, head dim)

The first step feeds an empty past (P = 0) and the whole prompt; each next step feeds the new token and the
presents of the step before, so a token costs one position's computation instead of the whole prefix.
``position_ids`` are what ``generate`` computes, the attention mask's running count minus one, so that a
left-padded batch generates as in PyTorch.

Exporter: torch.onnx's TorchScript exporter, as for encoders (``export``'s docstring: Optimum cannot be
installed beside transformers 5, and the dynamo exporter needs onnxscript). It cannot trace transformers'
``Cache`` objects, so ``CausalWithPast`` takes and returns the cache as flat tensors and builds a plain
``DynamicCache`` inside (every layer keeps every past position; a sliding-window layer's mask still hides
what lies outside its window). A graph is kept only when ONNX Runtime's logits match PyTorch's both on the
padded sample batch with an empty past and on a step with a past of another length than the traced one
(``parity``); a family whose graph fails the second (its cache or masks traced into fixed shapes) is
exported without the cache instead (inputs ``input_ids``, ``attention_mask``; output ``logits``), and
``export.json`` says so (``kv_cache: false`` and why).
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

PLAIN_INPUTS = ("input_ids", "attention_mask")
CONTINUATION_TOKENS = 2
"""Tokens of the parity check's step with a past: the rest of each sample text is the past."""


class CausalWithPast(nn.Module):
    """A causal LM whose key-value cache goes in and out as flat tensors (two per layer), for tracing."""

    def __init__(self, model: PreTrainedModel, num_layers: int) -> None:
        super().__init__()
        self.model, self.num_layers = model, num_layers

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """(B, T) ids, (B, P + T) mask, (B, T) positions, 2L (B, h, P, d) -> (B, T, V) logits, 2L (B, h, P + T, d)."""
        cache = DynamicCache()  # full layers: a sliding-window cache's trimming traces into fixed shapes
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{cache_argument(self.model): cache},
        )
        return (output.logits, *flat_cache(output))


class CausalLogits(nn.Module):
    """A causal LM as a plain graph: ids and mask in, logits out, no cache."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T, V) logits."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def cache_argument(model: PreTrainedModel) -> str:
    """The forward's name for the cache: ``cache`` since transformers 5.25, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def flat_cache(output: Any) -> list[torch.Tensor]:
    """A model output's cache as 2L tensors (B, h, S, d): each layer's keys, then its values."""
    cache = output["cache"] if "cache" in output else output["past_key_values"]
    return [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]


def cache_names(num_layers: int) -> tuple[list[str], list[str]]:
    """The graph's past inputs and present outputs, two per layer (key, value)."""
    past = [f"past_key_values.{layer}.{part}" for layer in range(num_layers) for part in ("key", "value")]
    return past, [name.replace("past_key_values", "present") for name in past]


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) mask -> (B, S) position ids as ``generate`` computes them (padding at 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def past_of(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The flat cache (2L tensors (B, h, P, d)) that ``model`` leaves after reading the prefix."""
    with torch.inference_mode():
        output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True)
    return [tensor.clone() for tensor in flat_cache(output)]


def export_with_past(model: PreTrainedModel, sample: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Trace ``CausalWithPast`` into ``path`` on the sample's last tokens after a past of its others."""
    num_layers = len(past_of(model, sample["input_ids"][:, :1], sample["attention_mask"][:, :1])) // 2
    past_names, present_names = cache_names(num_layers)
    ids, mask = sample["input_ids"], sample["attention_mask"]
    split = ids.shape[1] - CONTINUATION_TOKENS
    past = past_of(model, ids[:, :split], mask[:, :split])
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total_sequence"},
        "position_ids": {0: "batch", 1: "sequence"},
        "logits": {0: "batch", 1: "sequence"},
    }
    axes |= {name: {0: "batch", 2: "past_sequence"} for name in past_names}
    axes |= {name: {0: "batch", 2: "total_sequence"} for name in present_names}
    names = ["input_ids", "attention_mask", "position_ids", *past_names]
    with graph_dump_hidden():
        _trace(
            CausalWithPast(model, num_layers),
            (ids[:, split:], mask, positions(mask)[:, split:], *past),
            path,
            names,
            ["logits", *present_names],
            axes,
            opset,
        )


@contextmanager
def graph_dump_hidden() -> Iterator[None]:
    """Hide what the exporter prints to stdout: torch 2.13's TorchScript exporter prints the whole traced graph
    when it fails (its ONNX log is always on: ``setup_onnx_logging`` tests a function, not its value), and a
    failed cache graph is reported in one line of ``export.json`` instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def session(ort: Any, path: Path) -> Any:
    """An ONNX Runtime session that logs nothing itself: a graph it cannot run raises, and is reported by us."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only
    return ort.InferenceSession(str(path), options)


def export_plain(model: PreTrainedModel, sample: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Trace ``CausalLogits`` into ``path``."""
    axes = {name: {0: "batch", 1: "sequence"} for name in (*PLAIN_INPUTS, "logits")}
    inputs = tuple(sample[name] for name in PLAIN_INPUTS)
    _trace(CausalLogits(model), inputs, path, list(PLAIN_INPUTS), ["logits"], axes, opset)


def _trace(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    with warnings.catch_warnings():
        # Tracing reads Python booleans off tensor shapes in transformers' masking and cache code; the parity
        # check runs other batch sizes, lengths and past lengths, so that what it fixed is checked.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            module.eval(),
            inputs,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def parity(model: PreTrainedModel, session: Any, sample: dict[str, torch.Tensor], with_past: bool) -> dict[str, float]:
    """The largest logit differences between ONNX Runtime and PyTorch, at the attended positions.

    ``whole``: the padded sample batch (other texts and lengths than the trace's), with an empty past where the
    graph takes one. ``with_past`` (cache graphs only): every sample row cut to the shortest row's length, its
    last ``CONTINUATION_TOKENS`` tokens read after a past of the others, against one forward of the whole row.
    """
    ids, mask = sample["input_ids"], sample["attention_mask"]
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits.numpy()
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    if with_past:
        feed["position_ids"] = positions(mask).numpy()
        feed |= {
            name: tensor[:, :, :0].numpy()
            for name, tensor in zip(_past_inputs(session), _empty(model, sample), strict=True)
        }
    got = _run(session, feed)
    attended = mask.numpy().astype(bool)
    differences = {"whole": float(np.abs(got - expected)[attended].max())}
    if with_past:
        differences["with_past"] = _step_difference(model, session, sample)
    return differences


def _step_difference(model: PreTrainedModel, session: Any, sample: dict[str, torch.Tensor]) -> float:
    """The logit difference on a step after a past, on rows cut to the shortest row (no padding)."""
    length = int(sample["attention_mask"].sum(-1).min())
    ids = sample["input_ids"][:, :length]
    mask = torch.ones_like(ids)
    split = length - CONTINUATION_TOKENS
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits[:, split:].numpy()
    past = past_of(model, ids[:, :split], mask[:, :split])
    feed = {"input_ids": ids[:, split:].numpy(), "attention_mask": mask.numpy()}
    feed["position_ids"] = positions(mask)[:, split:].numpy()
    feed |= {name: tensor.numpy() for name, tensor in zip(_past_inputs(session), past, strict=True)}
    got = _run(session, feed)
    return float(np.abs(got - expected).max())


def _past_inputs(session: Any) -> list[str]:
    return [item.name for item in session.get_inputs() if item.name.startswith("past_key_values.")]


def _empty(model: PreTrainedModel, sample: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """A flat cache of the right shapes for the sample's batch, to cut to no position."""
    return past_of(model, sample["input_ids"][:, :1], sample["attention_mask"][:, :1])


def _run(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's logits on the inputs it declares (BLOOM's has no ``position_ids``: ALiBi reads none), ids, masks
    and positions as int64."""
    wanted = {item.name for item in session.get_inputs()}
    typed = {name: value.astype(np.int64) if value.dtype.kind in "iub" else value for name, value in feed.items()}
    return np.asarray(session.run(["logits"], {name: value for name, value in typed.items() if name in wanted})[0])
