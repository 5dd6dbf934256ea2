"""Validation on the held-out blocks: one teacher pass per batch for every student validating at that step.

Per student: its masked-LM loss and accuracy on the true tokens, the KL to the teacher at T = 1
(unlike the training ``kl`` part, which is at the loss's temperature and times T^2), top-1 agreement
with the teacher beside the agreement a constant prediction of the teacher's most frequent top token
would get (``agreement_constant``: a student that predicts ``,`` everywhere agrees 70% of the time with
a teacher that predicts ``,`` at 70% of positions, and shows no more than that), the teacher's own
accuracy and masked-LM loss (over the student's vocabulary), the share of positions at which the
student predicts its most frequent token (and which: a share near 1 is a degenerate student, e.g.
after a smoke-test budget) and, for a trimmed vocabulary, the teacher's probability mass outside the
kept tokens. The masks are fixed (``data.batches``), so every validation of every student scores the
same positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from monodistill import ranks
from monodistill.data.batches import BatchStream, MaskedBatch
from monodistill.distill.logits import chunk_slices
from monodistill.distill.student_run import StudentRun
from monodistill.distill.teacher_pass import TeacherOutputs, TeacherSource
from monodistill.losses import Needs, kl_divergence
from monodistill.progress import progress_bar


@dataclass
class ValidationTotals:
    """Sums over the scored positions of one student, to be reduced over ranks and divided by ``targets``."""

    vocab_size: int
    """V, the student's vocabulary: every rank reduces (V,) counts, also one that holds no validation batch."""
    targets: float = 0.0
    mlm_loss: float = 0.0
    kl_to_teacher: float = 0.0
    teacher_agreement: float = 0.0
    student_accuracy: float = 0.0
    teacher_accuracy: float = 0.0
    teacher_mlm_loss: float = 0.0
    teacher_mass_outside_vocab: float = 0.0
    predictions: torch.Tensor = field(init=False, repr=False)
    """(V,) how often the student predicted each token: a student stuck on one token is degenerate."""
    teacher_predictions: torch.Tensor = field(init=False, repr=False)
    """(V,) how often the teacher predicted each token: its most frequent one is the constant prediction."""

    def __post_init__(self) -> None:
        self.predictions = torch.zeros(self.vocab_size, dtype=torch.float64)
        self.teacher_predictions = torch.zeros(self.vocab_size, dtype=torch.float64)

    def add(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        outside_mass: torch.Tensor | None,
        targets: torch.Tensor,
    ) -> None:
        """Add (part of) one batch: (n, V) student and teacher logits at scored positions, the teacher's (n,)
        probability outside a trimmed vocabulary (or None), (n,) true tokens."""
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        student_top, teacher_top = student_logits.argmax(-1), teacher_logits.argmax(-1)
        self.targets += targets.numel()
        self.mlm_loss += F.cross_entropy(student_logits, targets, reduction="sum").item()
        self.kl_to_teacher += kl_divergence(student_logits, teacher_logits, 1.0, "sum").item()
        self.teacher_agreement += (student_top == teacher_top).sum().item()
        self.student_accuracy += (student_top == targets).sum().item()
        self.teacher_accuracy += (teacher_top == targets).sum().item()
        self.teacher_mlm_loss += F.cross_entropy(teacher_logits, targets, reduction="sum").item()
        if outside_mass is not None:
            self.teacher_mass_outside_vocab += outside_mass.sum().item()
        self.predictions += torch.bincount(student_top, minlength=self.vocab_size).double().cpu()
        self.teacher_predictions += torch.bincount(teacher_top, minlength=self.vocab_size).double().cpu()

    def metrics(self, trimmed: bool) -> dict[str, float]:
        """Every sum over all ranks, divided by the positions scored.

        One collective of the same length on every rank, whether or not it held a batch: a rank with no
        validation block (fewer blocks than processes) that skipped it would leave the others waiting.
        """
        counts = ("vocab_size", "predictions", "teacher_predictions")
        names = [item.name for item in fields(self) if item.name not in counts]
        summed = ranks.sum_over_ranks(
            [getattr(self, name) for name in names] + self.predictions.tolist() + self.teacher_predictions.tolist()
        )
        totals = dict(zip(names, summed[: len(names)], strict=True))
        predictions = torch.tensor(summed[len(names) : len(names) + self.vocab_size])  # (V,)
        teacher_predictions = torch.tensor(summed[len(names) + self.vocab_size :])  # (V,)
        scored = totals.pop("targets")
        count = max(scored, 1.0)
        if not trimmed:
            totals.pop("teacher_mass_outside_vocab")
        metrics: dict[str, float] = {}
        for name, value in totals.items():
            metrics[name] = value / count
            if name == "teacher_agreement" and scored > 0:  # read beside it: the floor a constant reaches
                metrics["agreement_constant"] = float(teacher_predictions.max()) / count
        if scored > 0:
            metrics["student_top_prediction_share"] = float(predictions.max()) / count
            metrics["student_top_prediction_id"] = float(predictions.argmax())
        return metrics


def validate(teacher: TeacherSource, stream: BatchStream, runs: list[StudentRun]) -> list[dict[str, float]]:
    """Validation metrics of each of ``runs`` (nothing is logged)."""
    totals = [ValidationTotals(run.vocab_size) for run in runs]
    batches = stream.validation()
    # A pass can take a minute on a CPU: a transient bar with an ETA, under the distillation's.
    main = ranks.process_state().is_main_process
    with progress_bar(len(batches), "validating", "batch", leave=False, disable=not main) as bar:
        for batch in batches:
            outputs = teacher(batch, Needs(), outside_mass=True)
            for run, total in zip(runs, totals, strict=True):
                add_batch(total, run, outputs, batch)
            bar.update(1)
    return [total.metrics(teacher.trimmed) for total in totals]


def add_batch(total: ValidationTotals, run: StudentRun, teacher: TeacherOutputs, batch: MaskedBatch) -> None:
    """Add a validation batch to a student's totals, ``train.logit_chunk`` scored positions at a time."""
    scored = run.score(batch)  # (N, H)
    logits = teacher.scored_logits()
    for piece in chunk_slices(scored.shape[0], run.logit_chunk) or [slice(0, 0)]:
        teacher_logits = logits.at(piece)
        mass = teacher.outside_mass_at(piece, teacher_logits)
        total.add(run.logits(scored[piece]), teacher_logits, mass, batch.targets[piece])
