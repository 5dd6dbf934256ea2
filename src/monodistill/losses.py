"""Distillation losses: small pure functions, and the ``Objective`` that combines them as a ``LossConfig`` says.

N is the number of masked positions in a batch of B blocks of T tokens, V the (student) vocabulary,
H a hidden size, R a number of heads. Every part is returned by name so that all of them are logged.

A part is a mean: over positions (logit and MLM terms: masked positions; cosine: every position) or
over blocks (relation, hidden and attention terms, each a mean within its block). Given the counts of
the whole optimizer step (``total``), each part is instead this micro-batch's sum divided by that
count, so that the parts of every micro-batch and rank add up to the step's mean: accumulation and
data parallelism then weight tokens, not micro-batches (transformers fixed the same error in its
Trainer 4.46 with ``num_items_in_batch``).

Terms, with the work they come from:
- ``kl_divergence``: KL(teacher_T || student_T) * T^2 at masked positions (the paper; Hinton et al.).
- ``logit_mse``: mean squared error of the logits at masked positions (Kim et al. 2021; Gurgurov et al. 2025).
- ``masked_lm_loss``: cross-entropy on the true tokens.
- ``hidden_cosine_loss``: 1 - cosine of the last hidden states (DistilBERT).
- ``relation_loss``: MiniLMv2's Q-Q, K-K, V-V self-attention relations of one layer (TiME).
- ``hidden_mse`` and ``attention_mse``: TinyBERT's (and BiStil's) per-layer hidden-state and attention terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from monodistill.config import LossConfig, parse_layer_map
from monodistill.data.batches import MaskedBatch
from monodistill.errors import MonodistillError
from monodistill.internals import SOFTMAX_ATTENTION


@dataclass
class ModelOutputs:
    """What a model gives the losses for one batch."""

    logits: torch.Tensor
    """(N, V) at the masked positions."""
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    """Layer (0: embeddings) -> (B, T, H) hidden states; a student's are projected to the teacher's width."""
    projections: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    """Layer (1-based) -> its query, key and value projections, (B, T, H) each."""


@dataclass(frozen=True)
class Needs:
    """What a student's objective reads besides both models' logits: the teacher computes the union of what
    the students of a run need, and no more."""

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

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.teacher_hidden | other.teacher_hidden,
            self.student_hidden | other.student_hidden,
            self.teacher_projections | other.teacher_projections,
            self.student_projections | other.student_projections,
            self.teacher_logits or other.teacher_logits,
        )

    @property
    def teacher(self) -> bool:
        """Whether the teacher has to run at all (an MLM-only objective, as in adaptation, reads nothing of it)."""
        return self.teacher_logits or bool(self.teacher_hidden or self.teacher_projections)


def _reduce(values: torch.Tensor, total: float | None) -> torch.Tensor:
    """(M,) per-position or per-block values -> their mean, or their sum over ``total`` (the whole step's count)."""
    return values.mean() if total is None else values.sum() / total


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, total: float | None = None
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V), same vocabulary order as the student's.
        temperature: Softmax temperature T > 0. The T^2 factor keeps gradient magnitudes comparable
            across temperatures (Hinton et al., 2015).
        total: Divide the sum over positions by this count instead of N (see the module docstring).

    Returns:
        A scalar.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    # Reduced inside kl_div: no (N, V) intermediate beyond the one it builds anyway.
    if total is None:
        kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    else:
        kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum") / total
    return kl * temperature**2


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """Mean squared error of the logits, averaged over the vocabulary, then over positions.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V).
        total: Divide the sum over positions by this count instead of N.
    """
    per_position = (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)  # (N,)
    return _reduce(per_position, total)


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """Cross-entropy of the student on the true tokens.

    Args:
        student_logits: (N, V).
        labels: (N,) true token ids.
        total: Divide the sum over positions by this count instead of N.
    """
    if total is None:
        return F.cross_entropy(student_logits.float(), labels)
    return F.cross_entropy(student_logits.float(), labels, reduction="sum") / total


def hidden_cosine_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """1 - cosine similarity of hidden states, averaged over positions (DistilBERT's alignment term).

    Args:
        student_hidden: (M, H).
        teacher_hidden: (M, H).
        total: Divide the sum over positions by this count instead of M.
    """
    return _reduce(1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1), total)


def _split_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H) -> (B, R, T, H / R)."""
    batch, length, width = states.shape
    return states.float().view(batch, length, heads, width // heads).transpose(1, 2)


def relation_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], heads: int, total: float | None = None
) -> torch.Tensor:
    """MiniLMv2's self-attention relation loss: KL(teacher || student) of the Q-Q, K-K and V-V relations.

    For each of Q, K and V, (B, T, H) is split into ``heads`` relation heads of H / R dimensions and
    the relation is softmax(X X^T / sqrt(H / R)) over the block's positions, (B, R, T, T). The KL is
    taken per row, averaged over the rows of a block and over the three relations. Widths and head
    counts of the two models may differ: only R must divide both widths.

    Args:
        student: [q, k, v] of the student's layer, (B, T, H_s) each.
        teacher: [q, k, v] of the teacher's layer, (B, T, H_t) each.
        heads: R.
        total: Divide the sum over blocks by this count instead of B.

    Returns:
        A scalar.
    """
    per_block = torch.zeros(student[0].shape[0], device=student[0].device)
    for student_states, teacher_states in zip(student, teacher, strict=True):
        s, t = _split_heads(student_states, heads), _split_heads(teacher_states, heads)  # (B, R, T, d)
        student_log = F.log_softmax(s @ s.transpose(-1, -2) / s.shape[-1] ** 0.5, dim=-1)  # (B, R, T, T)
        teacher_log = F.log_softmax(t @ t.transpose(-1, -2) / t.shape[-1] ** 0.5, dim=-1)
        kl = F.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)  # (B, R, T)
        per_block = per_block + kl.mean(dim=(1, 2)) / len(student)
    return _reduce(per_block, total)


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) per head, as a softmax-attention layer computes it: (B, T, H) -> (B, R, T, T)."""
    q, k = _split_heads(query, heads), _split_heads(key, heads)
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)


def attention_mse(
    student: list[torch.Tensor], teacher: list[torch.Tensor], heads: int, total: float | None = None
) -> torch.Tensor:
    """Mean squared error of the attention probabilities of two layers with the same number of heads.

    Args:
        student: [q, k, ...] of the student's layer, (B, T, H_s).
        teacher: [q, k, ...] of the teacher's layer, (B, T, H_t).
        heads: R, the heads of both.
        total: Divide the sum over blocks by this count instead of B.
    """
    difference = attention_probabilities(student[0], student[1], heads) - attention_probabilities(
        teacher[0], teacher[1], heads
    )
    return _reduce(difference.pow(2).mean(dim=(1, 2, 3)), total)


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """Mean squared error of (B, T, H) hidden states of equal width, each normalised first, averaged within each block.

    Every state is brought to zero mean and unit variance over H (a layer norm without affine
    parameters), in every family alike. A pre-LayerNorm model (ModernBERT) passes its raw residual
    stream between layers, whose norm grows with depth, and norms only the last: unnormalised, the
    largest middle layers' errors would make up nearly all of the mean over layers. The term is thus
    blind to each state's scale and offset.

    Args:
        student_hidden: (B, T, H), the student's projected to the teacher's width.
        teacher_hidden: (B, T, H).
        total: Divide the sum over blocks by this count instead of B.
    """
    student, teacher = (F.layer_norm(states.float(), states.shape[-1:]) for states in (student_hidden, teacher_hidden))
    return _reduce((student - teacher).pow(2).mean(dim=(1, 2)), total)


def distillation_loss(
    config: LossConfig,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    step_targets: float | None = None,
    step_positions: float | None = None,
) -> dict[str, torch.Tensor]:
    """The logit term (KL or MSE), the MLM cross-entropy and the cosine term, with every part.

    Args:
        config: Weights and temperature.
        student_logits: (N, V) at masked positions.
        teacher_logits: (N, V) at the same positions; needed when ``alpha_kl > 0``.
        labels: (N,) true token ids at those positions.
        student_hidden: (M, H) last hidden states at every position, needed when ``alpha_cosine > 0``.
        teacher_hidden: (M, H) the teacher's, at the same positions.
        step_targets: Masked positions in the whole optimizer step (logit and CE terms are sums over this).
        step_positions: Positions in the whole optimizer step (the cosine term is a sum over this).

    Returns:
        ``{"loss", "mlm"}`` plus ``"kl"`` or ``"mse"`` when the logit term is on (``alpha_kl > 0``) and
        ``"cosine"`` when that term is; parts are unweighted.
    """
    parts = {"mlm": masked_lm_loss(student_logits, labels, step_targets)}
    loss = config.alpha_mlm * parts["mlm"]
    if config.alpha_kl > 0:
        if teacher_logits is None:
            raise ValueError("alpha_kl > 0 needs teacher_logits")
        if config.logit_loss == "mse":
            parts["mse"] = logit_mse(student_logits, teacher_logits, step_targets)
        else:
            parts["kl"] = kl_divergence(student_logits, teacher_logits, config.temperature, step_targets)
        loss = loss + config.alpha_kl * parts[config.logit_loss]
    if config.alpha_cosine > 0:
        if student_hidden is None or teacher_hidden is None:
            raise ValueError("alpha_cosine > 0 needs student_hidden and teacher_hidden")
        parts["cosine"] = hidden_cosine_loss(student_hidden, teacher_hidden, step_positions)
        loss = loss + config.alpha_cosine * parts["cosine"]
    return {"loss": loss, **parts}


def default_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's map: the embeddings to the embeddings, student layer m to teacher layer m * L_t / L_s.

    A map that is not an exact multiple takes the nearest teacher layer, a tie going to the even one
    (Python's ``round``), so it is symmetric end to end: 4 from 6 is 0, 2, 3, 4, 6.
    """
    return [(layer, round(layer * teacher_layers / student_layers)) for layer in range(student_layers + 1)]


class Objective:
    """One student's loss as its ``LossConfig`` says, resolved against both models' depths and heads.

    ``needs`` says what it reads from each model beyond the logits. Calling it gives every part,
    unweighted, and the weighted total ``loss``.
    """

    def __init__(
        self, config: LossConfig, student_layers: int, teacher_layers: int, teacher_heads: int, student_heads: int
    ) -> None:
        self.config = config
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        self.heads = student_heads
        self.relation_layers = (
            config.relation_student_layer or student_layers,
            config.relation_teacher_layer or teacher_layers,
        )
        self.relation_heads = config.relation_heads or teacher_heads
        pairs = parse_layer_map(config.hidden_layers) if config.hidden_layers else None
        self.layer_map = pairs or default_layer_map(student_layers, teacher_layers)
        """(student, teacher) layers of the hidden and attention terms (0: the embeddings)."""
        needs = Needs(teacher_logits=config.alpha_kl > 0)
        if config.alpha_cosine > 0:
            needs |= Needs(frozenset({teacher_layers}), frozenset({student_layers}))
        if config.alpha_hidden > 0:
            needs |= Needs(frozenset(t for _, t in self.layer_map), frozenset(s for s, _ in self.layer_map))
        if config.alpha_attention > 0:
            attended = [(s, t) for s, t in self.layer_map if s > 0]
            needs |= Needs(teacher_projections=frozenset(t for _, t in attended))
            needs |= Needs(student_projections=frozenset(s for s, _ in attended))
        if config.alpha_relation > 0:
            student_layer, teacher_layer = self.relation_layers
            needs |= Needs(
                teacher_projections=frozenset({teacher_layer}), student_projections=frozenset({student_layer})
            )
        self.needs = needs

    @property
    def hidden_pairs(self) -> list[tuple[int, int]]:
        """The (student, teacher) layers whose hidden states the hidden term compares."""
        return self.layer_map if self.config.alpha_hidden > 0 else []

    def __call__(
        self, student: ModelOutputs, teacher: ModelOutputs | None, batch: MaskedBatch
    ) -> dict[str, torch.Tensor]:
        """Every part of the loss and their weighted sum ``loss``, each this batch's share of its step's mean.

        Args:
            student: The student's outputs (hidden states of mapped layers already projected).
            teacher: The teacher's outputs on the same batch (None when ``needs`` asks nothing of it).
            batch: The masked batch, with the counts of its whole optimizer step.
        """
        config = self.config
        step_positions = batch.step_blocks * batch.input_ids.shape[1]
        if teacher is None:  # an MLM-only objective
            teacher = ModelOutputs(logits=student.logits.new_zeros(0))
        parts = distillation_loss(
            config,
            student.logits,
            teacher.logits if self.needs.teacher_logits else None,
            batch.targets,
            student.hidden[self.student_layers].flatten(0, 1) if config.alpha_cosine > 0 else None,
            teacher.hidden[self.teacher_layers].flatten(0, 1) if config.alpha_cosine > 0 else None,
            step_targets=batch.step_targets,
            step_positions=step_positions,
        )
        loss = parts.pop("loss")
        if config.alpha_relation > 0:
            student_layer, teacher_layer = self.relation_layers
            parts["relation"] = relation_loss(
                student.projections[student_layer],
                teacher.projections[teacher_layer],
                self.relation_heads,
                batch.step_blocks,
            )
            loss = loss + config.alpha_relation * parts["relation"]
        if config.alpha_hidden > 0:
            terms = [hidden_mse(student.hidden[s], teacher.hidden[t], batch.step_blocks) for s, t in self.layer_map]
            parts["hidden"] = torch.stack(terms).mean()
            loss = loss + config.alpha_hidden * parts["hidden"]
        if config.alpha_attention > 0:
            attended = [(s, t) for s, t in self.layer_map if s > 0]
            terms = [
                attention_mse(student.projections[s], teacher.projections[t], self.heads, batch.step_blocks)
                for s, t in attended
            ]
            parts["attention"] = torch.stack(terms).mean()
            loss = loss + config.alpha_attention * parts["attention"]
        return {"loss": loss, **parts}


def check_objective(
    config: LossConfig,
    student: dict[str, int],
    teacher: dict[str, int],
    family: str,
    student_family: str | None = None,
) -> None:
    """Refuse, naming the fields, what the two models cannot serve: a layer that does not exist, a width
    that the relation heads do not divide, attention between different head counts.

    Args:
        config: The loss settings.
        student: ``layers``, ``hidden`` and ``heads`` of the student.
        teacher: The same of the teacher.
        family: The teacher's ``model_type`` (attention probabilities are recomputed from Q and K).
        student_family: The student's, when not the teacher's (``student.family``).
    """
    if config.alpha_relation > 0:
        for name, which, model in (
            ("loss.relation_teacher_layer", config.relation_teacher_layer, teacher),
            ("loss.relation_student_layer", config.relation_student_layer, student),
        ):
            if which is not None and which > model["layers"]:
                raise MonodistillError(f"{name}={which}, but the model has {model['layers']} layers")
        heads = config.relation_heads or teacher["heads"]
        for who, model in (("student", student), ("teacher", teacher)):
            if model["hidden"] % heads:
                field = (
                    "loss.relation_heads"
                    if config.relation_heads
                    else "loss.relation_heads (default: the teacher's heads)"
                )
                raise MonodistillError(
                    f"{field}={heads} does not divide the {who}'s width {model['hidden']}; choose relation heads "
                    "that divide both widths"
                )
    # Checked even when no term reads the map: a value that cannot be is refused, not kept for a later run.
    if config.hidden_layers:
        for student_layer, teacher_layer in parse_layer_map(config.hidden_layers):
            if student_layer > student["layers"] or teacher_layer > teacher["layers"]:
                raise MonodistillError(
                    f"loss.hidden_layers={config.hidden_layers!r} maps {student_layer}:{teacher_layer}, but the "
                    f"student has {student['layers']} layers and the teacher {teacher['layers']}"
                )
    if config.alpha_attention > 0:
        if student["heads"] != teacher["heads"]:
            raise MonodistillError(
                f"loss.alpha_attention needs the teacher's head count ({teacher['heads']}); the student has "
                f"{student['heads']} (student.num_heads); use loss.alpha_relation, which needs no equal heads"
            )
        unmatched = next((name for name in (family, student_family or family) if name not in SOFTMAX_ATTENTION), None)
        if unmatched is not None:
            raise MonodistillError(
                f"loss.alpha_attention: {unmatched} attention is not a softmax of its query and key projections "
                "alone (relative-position terms), so its probabilities cannot be matched; use loss.alpha_relation"
            )
