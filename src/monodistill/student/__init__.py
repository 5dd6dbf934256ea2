"""The student: its shape (``shape``), how it is built and initialised from the teacher (``build``), and the
reduction of teacher layers to a narrower student (``narrow``)."""

from monodistill.student.build import (
    build_student,
    copy_teacher_embeddings,
    copy_teacher_layers,
    project_embeddings,
    teacher_layer_indices,
)
from monodistill.student.shape import PRESETS, StudentShape, intermediate_size, resolve_shape, student_model_config

__all__ = [
    "PRESETS",
    "StudentShape",
    "build_student",
    "copy_teacher_embeddings",
    "copy_teacher_layers",
    "intermediate_size",
    "project_embeddings",
    "resolve_shape",
    "student_model_config",
    "teacher_layer_indices",
]
