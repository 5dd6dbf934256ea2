"""The family adapter: all that monodistill knows of one model architecture, in one object.

Every module outside ``families`` asks the adapter of a model (``families.family_of``) instead of
comparing ``model_type`` names: whether it is a masked or a causal LM (and the class that loads it),
where the transformer layers are, a layer's attention projections as ``(q, k, v)`` (a fused projection
split inside), the language-model head and how to trim its rows, the layer roles the narrow reduction
reads (a layer's weights read and written by role: ``read_layer``, ``layer_state``), the student config
at a shape, the head weights a fine-tuned model drops. The defaults here are BERT's layout; a family
overrides what differs (as litgpt's per-family conversions and peft's per-architecture mappings,
gathered into one object). Decoders start from Llama's layout instead (``families.decoder``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from monodistill.errors import MonodistillError

if TYPE_CHECKING:
    from monodistill.student.shape import StudentShape

BERT_LAYER_ROLES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_output",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
}
"""Module path inside a BERT-layout layer -> its role in the narrow reduction."""


def weight_and_bias(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A module's ``weight`` and ``bias`` as float64 copies on the CPU; a missing bias as zeros."""
    weight = module.weight.detach().double().cpu()
    bias = getattr(module, "bias", None)
    if bias is None:
        return weight, torch.zeros(weight.shape[0], dtype=torch.float64)
    return weight, bias.detach().double().cpu()


@dataclass(frozen=True)
class ModuleWeights:
    """A module's weight and bias, float64 copies on the CPU (``of``), written back under its names (``state``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    """Zeros where the module has none."""

    @classmethod
    def of(cls, module: Any) -> Self:
        """The module's weights, float64 copies on the CPU."""
        return cls(*weight_and_bias(module))

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The weights under the state-dict names of the module at ``prefix``."""
        return {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias}


@dataclass(frozen=True)
class LinearWeights(ModuleWeights):
    """A linear map's weights: y = weight x + bias, weight (out, in), bias (out,)."""


@dataclass(frozen=True)
class NormWeights(ModuleWeights):
    """A LayerNorm's gain (weight) and shift (bias), (D,) each."""


@dataclass(frozen=True)
class LayerWeights:
    """One transformer layer's weights by their role in the narrow reduction (``Family.read_layer``)."""

    query: LinearWeights
    """(heads * d, H): the heads' queries side by side."""
    key: LinearWeights
    """(heads * d, H)"""
    value: LinearWeights
    """(heads * d, H)"""
    attention_output: LinearWeights
    """(H, heads * d): reads the heads' attention outputs into the stream."""
    ffn_in: LinearWeights
    """(I, H)"""
    ffn_out: LinearWeights
    """(H, I)"""
    norms: dict[str, NormWeights]
    """The layer's LayerNorms by their path inside it."""


@dataclass
class MaskedLMHead:
    """A language-model head (masked or causal) split into its transform and its output projection.

    ``logits(hidden)`` equals the model's own head on those positions; passing ``rows`` restricts
    the projection to a subset of the vocabulary without building the full logits. A decoder's
    transform is the identity (its base model's output already passed the final norm); some scale
    their logits (Cohere's ``logit_scale``) or cap them (Gemma-2's ``final_logit_softcapping``).
    """

    transform: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor | None
    scale: float = 1.0
    """Logits are multiplied by it (Cohere's ``logit_scale``)."""
    softcap: float | None = None
    """Logits become ``softcap * tanh(logits / softcap)`` (Gemma-2's ``final_logit_softcapping``)."""

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden states at the positions to score -> (N, V) logits."""
        logits = F.linear(self.transform(hidden), self.weight, self.bias)
        # Applied only where set, in the model's own order, so that every other head's logits stay bit-identical.
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def restricted(self, rows: torch.Tensor) -> MaskedLMHead:
        """A copy projecting only onto ``rows`` (vocabulary ids), sliced once, not per step."""
        bias = self.bias[rows].contiguous() if self.bias is not None else None
        return MaskedLMHead(self.transform, self.weight[rows].contiguous(), bias, self.scale, self.softcap)


def sliced_linear(linear: nn.Linear, rows: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding ``rows`` of ``linear``'s outputs (and of ``bias``, default its own)."""
    bias = linear.bias if bias is None else bias
    sliced = nn.Linear(linear.in_features, len(rows), bias=bias is not None)
    sliced.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        sliced.weight.copy_(linear.weight[rows])  # (V_kept, H)
        if bias is not None:
            sliced.bias.copy_(bias[rows])
    return sliced


def trim_prediction_head(head: Any, rows: torch.Tensor) -> None:
    """Slice a BERT-style prediction head in place: a ``decoder`` Linear and the ``bias`` parameter it shares."""
    head.decoder = sliced_linear(head.decoder, rows, bias=head.bias)
    head.bias = head.decoder.bias


def shape_fields(shape: StudentShape, vocab_size: int) -> dict[str, Any]:
    """A fresh config's size fields, under transformers' common names, at the student's shape."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "intermediate_size": shape.intermediate_size,
    }


def module_at(root: nn.Module, path: str) -> Any:
    """The submodule at a dotted ``path`` ("" is ``root`` itself)."""
    return root.get_submodule(path) if path else root


class Family:
    """One architecture's adapter. Class attributes describe the layout; methods read and build models.

    Instances are stateless: one per family, registered by ``model_types`` (``families.family_of``).
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    """The ``model_type`` values (config.json) this adapter serves."""
    objective: ClassVar[str] = "masked"
    """What the family's language-model head predicts: ``masked`` tokens (encoders) or the ``causal`` next token."""
    model_class: ClassVar[Any] = AutoModelForMaskedLM
    """The transformers auto class a teacher of this family is loaded with."""
    head_name: ClassVar[str] = "masked-LM head"
    """What its language-model head is called in messages."""
    layers_path: ClassVar[str] = "encoder.layer"
    """Where the transformer layers are, inside the base model (``model.base_model_prefix``)."""
    attention_path: ClassVar[str] = "attention.self"
    """Where the query, key and value projections are, inside a layer."""
    projection_names: ClassVar[tuple[str, ...]] = ("query", "key", "value")
    """The projections' module names (one name: a fused projection holding the three side by side)."""
    softmax_attention: ClassVar[bool] = True
    """Whether attention probabilities are softmax(Q K^T / sqrt(d)) of the projections alone, so that they can
    be recomputed from them (not with relative-position terms or rotary positions)."""
    layer_roles: ClassVar[dict[str, str] | None] = BERT_LAYER_ROLES
    """Module path inside a layer -> its role, for narrowing ``teacher-layers``; None where it cannot narrow."""
    narrow_refusal: ClassVar[str] = ""
    """Why a narrower ``teacher-layers`` student is refused, where ``layer_roles`` is None."""
    head_prefixes: ClassVar[tuple[str, ...]] = ("cls.",)
    """State-dict prefixes of the masked-LM head (a checkpoint without them has no trained head)."""
    task_head_prefixes: ClassVar[tuple[str, ...]] = ("classifier.", "pooler.")
    """State-dict prefixes (after the base model's) a task model adds: missing from a masked-LM checkpoint."""
    intermediate_field: ClassVar[str] = "intermediate_size"
    """The config field of the feed-forward width; empty where the family has none (``intermediate_size``)."""
    builds_fresh: ClassVar[bool] = False
    """Whether a student of this family can be built for a teacher of another (``student.family``)."""
    missing_head_hint: ClassVar[str] = "it is not a masked language model checkpoint"
    """Said when a checkpoint holds no trained masked-LM head."""

    # ------------------------------------------------------------------------------ layout

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        """The model's transformer layers, in order."""
        return module_at(getattr(model, model.base_model_prefix), self.layers_path)

    def attention_projections(self, model: PreTrainedModel, layer: int) -> tuple[nn.Module, ...]:
        """The query, key and value projection modules of transformer layer ``layer`` (1-based); a fused
        family gives its one module, whose output ``projection_parts`` splits."""
        attention = module_at(self.layers(model)[layer - 1], self.attention_path)
        return tuple(getattr(attention, name) for name in self.projection_names)

    @property
    def projection_parts(self) -> int:
        """How many of (q, k, v) one projection module's output holds, side by side (3 for a fused one)."""
        return 3 // len(self.projection_names)

    def split_projection(self, output: torch.Tensor, model_config: Any) -> list[torch.Tensor]:
        """One projection module's output, (B, T, parts * W), as the ``projection_parts`` of (q, k, v) it holds."""
        parts = self.projection_parts
        return list(output.chunk(parts, dim=-1)) if parts > 1 else [output]

    def stream_input(self, model: PreTrainedModel) -> nn.Linear | None:
        """The map that takes factorised word embeddings into the residual stream, where the family has one."""
        return None

    def max_positions(self, model_config: Any) -> int:
        """The longest input the model's position embeddings allow."""
        return int(getattr(model_config, "max_position_embeddings", 512))

    def intermediate_size(self, model_config: Any) -> int:
        """The feed-forward width."""
        return int(getattr(model_config, self.intermediate_field))

    def head_activation(self, model_config: Any) -> str:
        """The activation between the masked-LM head's transform and its LayerNorm."""
        return str(model_config.hidden_act)

    # ------------------------------------------------------------------------------ the head

    def mlm_head(self, model: Any) -> MaskedLMHead:
        """Split a ``*ForMaskedLM`` model's head; the parameters stay shared (and trainable) with the model."""
        predictions = model.cls.predictions
        return MaskedLMHead(predictions.transform, predictions.decoder.weight, predictions.bias)

    def trim_head(self, model: Any, rows: torch.Tensor) -> None:
        """Restrict the head's output projection (and bias) to ``rows``, in place; embeddings are not touched."""
        trim_prediction_head(model.cls.predictions, rows)

    def check_trim(self, model_config: Any, kept_ids: list[int]) -> None:
        """Refuse kept ids the family cannot be restricted to (RoBERTa's padding id must not move)."""

    def head_drops(self) -> tuple[str, ...]:
        """State-dict prefixes (after the base model's) a task model finds unused in a masked-LM checkpoint."""
        return (*self.head_prefixes, "pooler.")

    # ------------------------------------------------------------------------------ loading

    def check_architectures(self, name: str, architectures: list[str]) -> None:
        """Refuse, in one line, a checkpoint of this family that has no language-model head by its architectures."""
        masked = ("MaskedLM" in entry or entry.endswith("ForPreTraining") for entry in architectures)
        if architectures and not any(masked):
            raise MonodistillError(
                f"teacher {name} is not a masked language model (architectures: {architectures}); "
                "use a checkpoint saved from a *ForMaskedLM class"
            )

    def reload_overrides(self, model: Any, unexpected_keys: list[str], untrained: list[str]) -> dict[str, Any]:
        """Config overrides to load the checkpoint again with, when its head was stored in another layout."""
        return {}

    quiet_first_load: ClassVar[bool] = False
    """Whether the first load may report a whole head missing only because of a layout flag (DeBERTa-v2)."""

    # ------------------------------------------------------------------------------ students

    def student_config(self, teacher_config: Any, shape: StudentShape, vocab_size: int, keep_embedding: bool) -> Any:
        """The teacher's config (positions, activation, tokenizer ids) at the student's shape.

        ``keep_embedding`` keeps a factorised embedding size as the teacher has it (``teacher-layers``
        copies the embeddings); otherwise it follows the student's hidden size.
        """
        config = copy.deepcopy(teacher_config)
        config.num_hidden_layers = shape.num_layers
        config.hidden_size = shape.hidden_size
        config.num_attention_heads = shape.num_heads
        if self.intermediate_field:
            setattr(config, self.intermediate_field, shape.intermediate_size)
        config.vocab_size = vocab_size
        config.architectures = None
        config.dtype = torch.float32
        return config

    def fresh_config(
        self, teacher_config: Any, shape: StudentShape, vocab_size: int, specials: dict[str, Any], positions: int
    ) -> Any:
        """This family's config at the student's shape for a teacher of another family (``builds_fresh``), over the
        teacher's vocabulary (``vocab_size``), special-token ids and position limit; otherwise the family's defaults."""
        raise MonodistillError(f"a {self.model_types[0]} student cannot be built for a teacher of another family")

    def copied_layers_config(self, student_config: Any, teacher_config: Any, layer_indices: list[int]) -> None:
        """Adjust a ``teacher-layers`` student's config to the teacher layers it copies (their attention kinds)."""

    # ------------------------------------------------------------------------------ narrowing

    def layer_modules(self, layer: nn.Module) -> dict[str, nn.Module]:
        """A transformer layer's modules by their role in the narrow reduction (``layer_roles`` resolved)."""
        if self.layer_roles is None:
            raise MonodistillError(f"a {self.model_types[0]} layer cannot be narrowed: {self.narrow_refusal}")
        return {role: layer.get_submodule(path) for path, role in self.layer_roles.items()}

    def layer_norms(self, layer: nn.Module) -> dict[str, nn.Module]:
        """A transformer layer's LayerNorms by their path inside it."""
        return {path: module for path, module in layer.named_modules() if isinstance(module, nn.LayerNorm)}

    def read_layer(self, layer: nn.Module) -> LayerWeights:
        """A transformer layer's weights as ``LayerWeights`` (float64 copies on the CPU)."""
        linears = {role: LinearWeights.of(module) for role, module in self.layer_modules(layer).items()}
        return LayerWeights(
            query=linears["query"],
            key=linears["key"],
            value=linears["value"],
            attention_output=linears["attention_output"],
            ffn_in=linears["ffn_in"],
            ffn_out=linears["ffn_out"],
            norms={path: NormWeights.of(module) for path, module in self.layer_norms(layer).items()},
        )

    def layer_state(self, weights: LayerWeights, prefix: str) -> dict[str, torch.Tensor]:
        """``weights`` under the state-dict names of the layer at ``prefix`` (``read_layer``'s inverse)."""
        state: dict[str, torch.Tensor] = {}
        for path, role in (self.layer_roles or {}).items():
            state.update(getattr(weights, role).state(f"{prefix}.{path}"))
        for path, norm in weights.norms.items():
            state.update(norm.state(f"{prefix}.{path}"))
        return state

    def narrow_support(self, teacher_config: Any) -> str | None:
        """None where a teacher of this family can be narrowed; otherwise what the reduction does not handle."""
        if self.layer_roles is None:
            return self.narrow_refusal
        if getattr(teacher_config, "position_embedding_type", None) not in (None, "absolute"):
            return "its relative-position projections"
        return None
