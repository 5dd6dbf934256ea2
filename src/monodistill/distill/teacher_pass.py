"""The teacher at distillation time: one forward per batch for every student, computing only what they need.

The teacher is frozen where it is loaded (``teacher.load_teacher``) and runs here under
``torch.inference_mode()``. Its MLM head runs at the masked positions only, restricted to the
student's vocabulary when that is trimmed (the softmax over the kept rows is the teacher's
distribution renormalised to them). Hidden states and attention projections are returned only for
the layers that some student's loss terms read (``losses.Needs``); the projections' hooks are
installed when the pass is built, for every layer any of its students reads, since a compiled
encoder would not see hooks added later (``internals.ProjectionHooks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from transformers import PreTrainedModel

from monodistill.data.batches import MaskedBatch
from monodistill.distill.logits import TeacherLogits, chunk_positions
from monodistill.errors import MonodistillError
from monodistill.internals import ProjectionHooks
from monodistill.losses import ModelOutputs, Needs
from monodistill.teacher import MaskedLMHead, encoder, mlm_head


@dataclass
class TeacherOutputs(ModelOutputs):
    """What the teacher gives the students for one batch: logits at the masked positions over the student's
    vocabulary, the hidden states and projections some student's loss terms read, and on request the
    probability outside a trimmed vocabulary."""

    outside_mass: torch.Tensor | None = None
    """(N,) the teacher's probability outside the trimmed vocabulary, when asked for and trimmed."""
    scored: torch.Tensor | None = None
    """(N, H) the hidden states at the scored positions, kept instead of ``logits`` (left empty) when there are more
    than ``train.logit_chunk`` of them: the logits are then computed a chunk at a time (``distill.logits``)."""
    head: MaskedLMHead | None = None
    """The head that gives the logits from ``scored`` (over the students' vocabulary)."""
    full_head: MaskedLMHead | None = None
    """The head over the teacher's whole vocabulary, for the mass outside a trimmed one from ``scored``."""
    vocab_size: int = 0
    """V, the students' vocabulary: what a summary's logits are spread over where validation reads them."""

    def scored_logits(self) -> TeacherLogits:
        """The logits at the scored positions, computed or to be computed a chunk at a time, or a cache's summary."""
        if self.sparse is not None:
            return TeacherLogits(None, None, None, self.sparse, self.vocab_size)
        return TeacherLogits(self.logits if self.scored is None else None, self.scored, self.head)

    def outside_mass_at(self, piece: slice, logits: torch.Tensor) -> torch.Tensor | None:
        """(n,) the probability outside the trimmed vocabulary at scored positions ``piece``, whose kept
        ``logits`` are given; None when not asked for or not trimmed."""
        if self.scored is None:  # computed at once, or read from a cache
            return self.outside_mass[piece] if self.outside_mass is not None else None
        if self.full_head is None:
            return None
        with torch.no_grad():
            full = self.full_head.logits(self.scored[piece]).float()
        return 1.0 - (logits.float().logsumexp(-1) - full.logsumexp(-1)).exp()


class TeacherSource(Protocol):
    """What the loop and validation ask of the teacher: a ``TeacherPass``, or a teacher cache read in its place
    (``teacher_cache.CachedTeacher``)."""

    @property
    def trimmed(self) -> bool:
        """Whether the students' vocabulary is a trimmed one."""

    def __call__(self, batch: MaskedBatch, needs: Needs, outside_mass: bool = False) -> TeacherOutputs:
        """The teacher's outputs on ``batch``: what ``needs`` asks for, at its scored positions."""


class TeacherPass:
    """The frozen teacher, on the run's device, read through the student's vocabulary.

    Args:
        model: The frozen ``*ForMaskedLM`` teacher.
        vocab_ids: (V,) student id -> teacher id, when the vocabulary is trimmed.
        device: Where it runs.
        compile: Compile its encoder (``torch.compile``, in place).
        projection_layers: The layers whose Q, K, V some student reads (every student's
            ``Needs.teacher_projections``), hooked before the first forward. An uncompiled pass hooks
            others when a call asks for them; a compiled one refuses.
        logit_chunk: ``train.logit_chunk``: a batch with more scored positions keeps their hidden states, and the
            logits are computed a chunk at a time where they are read.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        vocab_ids: torch.Tensor | None,
        device: torch.device,
        compile: bool = False,
        projection_layers: Iterable[int] = (),
        logit_chunk: int | None = None,
    ) -> None:
        nn.Module.to(model, device)  # in place (transformers types its own `to` for dtypes only)
        self.model = model
        self.encoder = encoder(model)
        self.compiled = compile
        self.projection_hooks = ProjectionHooks(model, projection_layers)  # before the encoder first runs
        if compile:
            # In place: parameter names stay those of the plain model.
            self.encoder.compile()
        self.vocab_ids = vocab_ids.to(device) if vocab_ids is not None else None
        self.full_head = mlm_head(model)
        # Sliced once, not per batch.
        self.head: MaskedLMHead = (
            self.full_head.restricted(self.vocab_ids) if self.vocab_ids is not None else self.full_head
        )
        self.logit_chunk = chunk_positions(logit_chunk, self.head.weight.shape[0])

    @property
    def trimmed(self) -> bool:
        """Whether the students' vocabulary is a trimmed one."""
        return self.vocab_ids is not None

    def __call__(self, batch: MaskedBatch, needs: Needs, outside_mass: bool = False) -> TeacherOutputs:
        """The teacher's outputs on ``batch``: logits at its masked positions, and what ``needs`` asks for."""
        self._hook(needs.teacher_projections)
        with torch.inference_mode(), self.projection_hooks.capture() as projections:
            input_ids = self.vocab_ids[batch.input_ids] if self.vocab_ids is not None else batch.input_ids
            output = self.encoder(input_ids=input_ids, output_hidden_states=bool(needs.teacher_hidden))
            masked = output.last_hidden_state[batch.positions]  # (N, H)
            hidden = {layer: output.hidden_states[layer] for layer in needs.teacher_hidden}  # (B, T, H) each
            chunked = masked.shape[0] > self.logit_chunk
            logits = masked.new_zeros(0) if chunked else self.head.logits(masked)  # (N, V)
            mass = None
            if outside_mass and self.vocab_ids is not None and not chunked:
                full = self.full_head.logits(masked).float()
                mass = 1.0 - (logits.float().logsumexp(-1) - full.logsumexp(-1)).exp()
        # Inference tensors cannot be saved for backward; a clone outside the context is a normal tensor.
        return TeacherOutputs(
            logits.clone(),
            {layer: states.clone() for layer, states in hidden.items()},
            {layer: [states.clone() for states in projections[layer]] for layer in needs.teacher_projections},
            outside_mass=mass.clone() if mass is not None else None,
            scored=masked.clone() if chunked else None,
            head=self.head,
            full_head=self.full_head if outside_mass and self.vocab_ids is not None else None,
        )

    def _hook(self, layers: frozenset[int]) -> None:
        """Hook ``layers`` too, unless they are already: refused once compiled (the graph would not run the hooks)."""
        if layers <= self.projection_hooks.layers:
            return
        if self.compiled:
            hooked, missing = sorted(self.projection_hooks.layers), sorted(layers - self.projection_hooks.layers)
            raise MonodistillError(
                f"the compiled teacher was built to read the projections of layers {hooked}, not of {missing}: "
                "build it with every student's layers (TeacherPass's projection_layers)"
            )
        self.projection_hooks.remove()
        self.projection_hooks = ProjectionHooks(self.model, layers | self.projection_hooks.layers)
