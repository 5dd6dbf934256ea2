"""Loss terms: one object per term, saying what it reads and summing its part over one micro-batch.

A term has the name its part is logged under, its weight, what it reads of each model (``Needs``), and
``sum``: the sum of its per-position or per-block values over one micro-batch. Its ``count`` says what
the part is a mean over: the masked targets (logit and MLM terms), every position (cosine) or the
blocks (relation, hidden and attention terms, each a mean within its block). The training step
divides each sum by that count over the whole optimizer step (``step_count``) and weighs the parts
(``StudentRun.train_micro``), so that the parts of every micro-batch and rank add up to the step's
mean: accumulation and data parallelism then weight tokens, not micro-batches (transformers fixed the
same error in its Trainer 4.46 with ``num_items_in_batch``).

``build_terms`` is the one place where a ``LossConfig``'s weights decide which terms there are. A new
term is one class here, a row in ``TERMS`` and its weight in ``LossConfig``.
"""

from __future__ import annotations

import functools
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from monodistill.config import LossConfig, parse_layer_map
from monodistill.data.batches import MaskedBatch
from monodistill.losses.functions import (
    attention_mse,
    default_layer_map,
    hidden_cosine_loss,
    hidden_mse,
    jensen_shannon_divergence,
    kl_divergence,
    logit_mse,
    masked_lm_loss,
    relation_loss,
    reverse_kl_divergence,
)
from monodistill.losses.sparse import SparseTargets, sparse_kl_divergence

Count = Literal["targets", "positions", "blocks"]
"""What a term's part is a mean over: the masked targets, every position, or the blocks."""


@dataclass
class ModelOutputs:
    """What a model gives the losses for one batch."""

    logits: torch.Tensor
    """(N, V) at the masked positions."""
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    """Layer (0: embeddings) -> (B, T, H) hidden states; a student's are projected to the teacher's width."""
    projections: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    """Layer (1-based) -> its query, key and value projections, (B, T, H) each."""
    sparse: SparseTargets | None = None
    """A teacher cache's summary of the teacher's distribution at the masked positions, in place of ``logits``."""


@dataclass(frozen=True)
class Needs:
    """What a student's terms read besides its own logits: the teacher computes the union of what the
    students of a run need, and no more."""

    teacher_hidden: frozenset[int] = frozenset()
    """Teacher layers whose hidden states are read (0: the embeddings' output)."""
    student_hidden: frozenset[int] = frozenset()
    """Student layers whose hidden states are read."""
    teacher_projections: frozenset[int] = frozenset()
    """Teacher layers (1-based) whose query, key and value projections are read."""
    student_projections: frozenset[int] = frozenset()
    """Student layers whose projections are read."""
    teacher_logits: bool = False
    """Whether the teacher's logits at the masked positions are read (the logit term)."""
    projected_hidden: tuple[int, ...] = ()
    """Student layers whose hidden states are read at the teacher's width, through a projection that trains with
    the student where the widths differ; in the order the projections are built (and drawn from the random stream)."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.teacher_hidden | other.teacher_hidden,
            self.student_hidden | other.student_hidden,
            self.teacher_projections | other.teacher_projections,
            self.student_projections | other.student_projections,
            self.teacher_logits or other.teacher_logits,
            tuple(dict.fromkeys(self.projected_hidden + other.projected_hidden)),
        )

    @property
    def teacher(self) -> bool:
        """Whether the teacher has to run at all (an MLM-only objective, as in adaptation, reads nothing of it)."""
        return self.teacher_logits or bool(self.teacher_hidden or self.teacher_projections)


@dataclass(frozen=True)
class ModelSizes:
    """What the terms are resolved against: the depths and head counts of both models."""

    student_layers: int
    teacher_layers: int
    student_heads: int
    teacher_heads: int


@dataclass(frozen=True)
class LossTerm(ABC):
    """One weighted term of a student's loss; see the module docstring."""

    name: ClassVar[str]
    """The part's name in the log."""
    count: ClassVar[Count]
    """What the part is a mean over: its sum is divided by this count of the whole optimizer step."""
    logged_unweighted: ClassVar[bool] = False
    """Whether the term is computed and logged also at weight 0."""
    reads_logits: ClassVar[bool] = False
    """Whether the term reads the logits at the scored positions (it is then summed a chunk of them at a time,
    ``distill.logits``), rather than hidden states or projections."""
    reads_cache: ClassVar[bool] = False
    """Whether the term can read the teacher from a cache's sparse summary (``losses.sparse``); one that reads the
    teacher otherwise needs it live."""

    weight: float
    """The part's weight in the loss."""

    @classmethod
    @abstractmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> LossTerm | None:
        """The term as ``config`` sets it, whatever its weight; None where the config chooses another in its place."""

    @property
    def needs(self) -> Needs:
        """What the term reads besides the student's logits."""
        return Needs()

    @abstractmethod
    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        """The sum of the term's values over the micro-batch ``batch``: a scalar.

        Args:
            student: The student's outputs (hidden states already at the teacher's width).
            teacher: The teacher's outputs on the same batch (empty where no term reads the teacher).
            batch: The masked micro-batch.
        """


@dataclass(frozen=True)
class LogitKL(LossTerm):
    """T^2 KL(teacher_T || student_T) at the masked positions: the paper's logit term (``logit_loss: kl``).

    The other divergences at the temperature are this term with another ``divergence`` of the same signature.
    """

    name = "kl"
    reads_logits = True
    reads_cache = True
    count = "targets"
    divergence: ClassVar[Callable[..., torch.Tensor]] = staticmethod(kl_divergence)
    """(student logits, teacher logits, T, reduction) -> the divergence times T^2."""
    temperature: float

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> LogitKL | None:
        return cls(config.alpha_kl, config.temperature) if config.logit_loss == cls.name else None

    @property
    def needs(self) -> Needs:
        return Needs(teacher_logits=True)

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        if teacher.sparse is not None:
            return sparse_kl_divergence(student.logits, teacher.sparse, self.temperature, "sum")
        return self.divergence(student.logits, teacher.logits, self.temperature, "sum")


@dataclass(frozen=True)
class LogitReverseKL(LogitKL):
    """T^2 KL(student_T || teacher_T) at the scored positions (``logit_loss: reverse_kl``; MiniLLM)."""

    name = "reverse_kl"
    reads_cache = False  # a sample of the teacher says nothing of its probability where the student puts mass
    divergence = staticmethod(reverse_kl_divergence)


@dataclass(frozen=True)
class LogitJSD(LogitKL):
    """T^2 JSD(teacher_T, student_T) at the scored positions (``logit_loss: jsd``; GKD at beta 0.5)."""

    name = "jsd"
    reads_cache = False
    divergence = staticmethod(jensen_shannon_divergence)


@dataclass(frozen=True)
class LogitMSE(LossTerm):
    """The logits' mean squared error at the masked positions (``logit_loss: mse``), weighed by ``alpha_kl``."""

    name = "mse"
    reads_logits = True
    count = "targets"

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> LogitMSE | None:
        return cls(config.alpha_kl) if config.logit_loss == "mse" else None

    @property
    def needs(self) -> Needs:
        return Needs(teacher_logits=True)

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        return logit_mse(student.logits, teacher.logits, "sum")


@dataclass(frozen=True)
class MaskedLM(LossTerm):
    """The student's cross-entropy on the true tokens at the masked positions.

    Logged also where it weighs nothing (TinyBERT's and TiME's recipes): its curve is the student's
    masked-LM loss, read beside the terms that train it.
    """

    name = "mlm"
    reads_logits = True
    reads_cache = True  # it reads no teacher
    count = "targets"
    logged_unweighted = True

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> MaskedLM:
        return cls(config.alpha_mlm)

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        return masked_lm_loss(student.logits, batch.targets, "sum")


@dataclass(frozen=True)
class HiddenCosine(LossTerm):
    """1 - cosine of the last hidden states at every position (DistilBERT; equal widths)."""

    name = "cosine"
    count = "positions"
    student_layer: int
    teacher_layer: int

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> HiddenCosine:
        return cls(config.alpha_cosine, sizes.student_layers, sizes.teacher_layers)

    @property
    def needs(self) -> Needs:
        return Needs(frozenset({self.teacher_layer}), frozenset({self.student_layer}))

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        return hidden_cosine_loss(
            student.hidden[self.student_layer].flatten(0, 1),  # (B * T, H)
            teacher.hidden[self.teacher_layer].flatten(0, 1),
            "sum",
        )


@dataclass(frozen=True)
class Relation(LossTerm):
    """MiniLMv2's Q-Q, K-K and V-V self-attention relations of one layer of each model."""

    name = "relation"
    count = "blocks"
    student_layer: int
    teacher_layer: int
    heads: int
    """Relation heads Q, K and V are split into."""

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> Relation:
        return cls(
            config.alpha_relation,
            config.relation_student_layer or sizes.student_layers,
            config.relation_teacher_layer or sizes.teacher_layers,
            config.relation_heads or sizes.teacher_heads,
        )

    @property
    def needs(self) -> Needs:
        return Needs(
            teacher_projections=frozenset({self.teacher_layer}), student_projections=frozenset({self.student_layer})
        )

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        return relation_loss(
            student.projections[self.student_layer], teacher.projections[self.teacher_layer], self.heads, "sum"
        )


def layer_map(config: LossConfig, sizes: ModelSizes) -> tuple[tuple[int, int], ...]:
    """(student, teacher) layers of the hidden and attention terms (0: the embeddings): ``loss.hidden_layers``,
    else TinyBERT's evenly spaced map."""
    pairs = parse_layer_map(config.hidden_layers) if config.hidden_layers else None
    return tuple(pairs or default_layer_map(sizes.student_layers, sizes.teacher_layers))


@dataclass(frozen=True)
class HiddenMSE(LossTerm):
    """TinyBERT's hidden-state MSE of mapped layers, the student's through a learned projection where the widths
    differ: the mean over the layer pairs of each pair's sum."""

    name = "hidden"
    count = "blocks"
    layers: tuple[tuple[int, int], ...]
    """(student, teacher) layer pairs."""

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> HiddenMSE:
        return cls(config.alpha_hidden, layer_map(config, sizes))

    @property
    def needs(self) -> Needs:
        students = tuple(student for student, _ in self.layers)
        return Needs(frozenset(teacher for _, teacher in self.layers), frozenset(students), projected_hidden=students)

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        pairs = [hidden_mse(student.hidden[s], teacher.hidden[t], "sum") for s, t in self.layers]
        return torch.stack(pairs).mean()


@dataclass(frozen=True)
class AttentionMSE(LossTerm):
    """TinyBERT's attention-probability MSE of mapped transformer layers (equal head counts): the mean over the
    layer pairs of each pair's sum."""

    name = "attention"
    count = "blocks"
    layers: tuple[tuple[int, int], ...]
    """(student, teacher) transformer layer pairs (the embeddings attend to nothing)."""
    heads: int

    @classmethod
    def of(cls, config: LossConfig, sizes: ModelSizes) -> AttentionMSE:
        attended = tuple((s, t) for s, t in layer_map(config, sizes) if s > 0)
        return cls(config.alpha_attention, attended, sizes.student_heads)

    @property
    def needs(self) -> Needs:
        return Needs(
            teacher_projections=frozenset(teacher for _, teacher in self.layers),
            student_projections=frozenset(student for student, _ in self.layers),
        )

    def sum(self, student: ModelOutputs, teacher: ModelOutputs, batch: MaskedBatch) -> torch.Tensor:
        pairs = [
            attention_mse(student.projections[s], teacher.projections[t], self.heads, "sum") for s, t in self.layers
        ]
        return torch.stack(pairs).mean()


TERMS: tuple[type[LossTerm], ...] = (
    LogitKL,
    LogitReverseKL,
    LogitJSD,
    LogitMSE,
    MaskedLM,
    HiddenCosine,
    Relation,
    HiddenMSE,
    AttentionMSE,
)
"""Every kind of term, in the order the parts are summed and logged."""


def build_terms(config: LossConfig, sizes: ModelSizes) -> list[LossTerm]:
    """The terms of ``config`` resolved against both models: each that weighs something, and those logged at
    weight 0 (the MLM cross-entropy). The one place where the weights decide which terms there are."""
    terms = (kind.of(config, sizes) for kind in TERMS)
    return [term for term in terms if term is not None and (term.weight > 0 or term.logged_unweighted)]


def needs_of(terms: list[LossTerm]) -> Needs:
    """What ``terms`` read together: the union of their needs."""
    return functools.reduce(operator.or_, (term.needs for term in terms), Needs())


def step_count(batch: MaskedBatch, count: Count) -> int:
    """How many ``count`` the whole optimizer step of ``batch`` holds, over every micro-batch and rank."""
    if count == "targets":
        return batch.step_targets
    if count == "blocks":
        return batch.step_blocks
    return batch.step_blocks * batch.input_ids.shape[1]
