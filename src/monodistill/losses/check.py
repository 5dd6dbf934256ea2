"""What the two models must be for a student's loss terms to be computable, checked before anything is built."""

from __future__ import annotations

from monodistill.config import LossConfig, parse_layer_map
from monodistill.errors import MonodistillError
from monodistill.families import family_of


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
        models = (family, student_family or family)
        unmatched = next((name for name in models if not family_of(name).softmax_attention), None)
        if unmatched is not None:
            raise MonodistillError(
                f"loss.alpha_attention: {unmatched} attention is not a softmax of its query and key projections "
                "alone (relative-position terms), so its probabilities cannot be matched; use loss.alpha_relation"
            )
