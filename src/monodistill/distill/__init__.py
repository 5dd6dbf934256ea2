"""Distillation: the loop and its parts, in the order a step uses them.

- ``teacher_pass``: the frozen teacher, run once per batch for every student (``TeacherPass``),
  returning the logits at the masked positions and whatever hidden states the students' losses
  declared (``TeacherOutputs``).
- ``student_run``: one student's model and head, optimizer, learning rate, log and checkpoints
  (``StudentRun``), and the step's one formula of the loss from its terms (``StudentRun.train_micro``).
- ``random_stream``: a student's dropout, drawn from each micro-batch's seed, and its own random stream.
- ``validation``: the held-out metrics, one teacher pass per batch for every student due.
- ``loop``: ``fit``, the loop itself, for one student or several that see the same batches.

The batches come from ``monodistill.data.batches``, the losses from ``monodistill.losses``, and the
stage that builds all of this from a config is ``monodistill.recipe``.
"""

from monodistill.distill.loop import fit, train, train_step
from monodistill.distill.student_run import StudentRun, StudentWithHead, learning_rate
from monodistill.distill.teacher_pass import TeacherOutputs, TeacherPass
from monodistill.distill.validation import ValidationTotals, validate
from monodistill.errors import Interrupted, NonFiniteLoss

__all__ = [
    "Interrupted",
    "NonFiniteLoss",
    "StudentRun",
    "StudentWithHead",
    "TeacherOutputs",
    "TeacherPass",
    "ValidationTotals",
    "fit",
    "learning_rate",
    "train",
    "train_step",
    "validate",
]
