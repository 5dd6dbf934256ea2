"""One typed, nested configuration for every stage.

The dataclass defaults in ``schema`` (distillation) and ``experiment`` (evaluation, ``run``) are the only
defaults. YAML files hold only the differences, and
``section.field=value`` overrides on the command line beat both (``loading``). Each section validates
itself in ``__post_init__`` and raises a ``ConfigError`` that names the offending fields.
"""

from monodistill.config.base import (
    MIXED_PRECISIONS,
    STUDENT_INITS,
    TEACHER_DTYPES,
    ConfigError,
    config_to_dict,
    flatten,
    save_config,
)
from monodistill.config.cache import CacheConfig
from monodistill.config.experiment import EvaluateConfig, ExperimentConfig
from monodistill.config.loading import YAML_NULLS, lists_students, load_config, read_text
from monodistill.config.loss import LossConfig, parse_layer_map
from monodistill.config.schema import (
    AdaptConfig,
    DataConfig,
    DistillConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VocabConfig,
)

__all__ = [
    "MIXED_PRECISIONS",
    "STUDENT_INITS",
    "TEACHER_DTYPES",
    "YAML_NULLS",
    "AdaptConfig",
    "CacheConfig",
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
    "parse_layer_map",
    "read_text",
    "save_config",
]
