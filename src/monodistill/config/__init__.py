"""One typed, nested configuration for every stage.

The dataclass defaults in ``schema`` are the only defaults. YAML files hold only the differences, and
``section.field=value`` overrides on the command line beat both (``loading``). Each section validates
itself in ``__post_init__`` and raises a ``ConfigError`` that names the offending fields.
"""

from monodistill.config.loading import YAML_NULLS, lists_students, load_config, read_text
from monodistill.config.schema import (
    MIXED_PRECISIONS,
    STUDENT_INITS,
    TEACHER_DTYPES,
    ConfigError,
    DataConfig,
    DistillConfig,
    EvaluateConfig,
    ExperimentConfig,
    LossConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VocabConfig,
    config_to_dict,
    flatten,
    save_config,
)

__all__ = [
    "MIXED_PRECISIONS",
    "STUDENT_INITS",
    "TEACHER_DTYPES",
    "YAML_NULLS",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "LossConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "VocabConfig",
    "config_to_dict",
    "flatten",
    "lists_students",
    "load_config",
    "read_text",
    "save_config",
]
