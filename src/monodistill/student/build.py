"""Build the student: the teacher's architecture family (or ``student.family``) at a smaller shape, and its
initialisation.

Init modes:
- ``random``: a blank student (the paper's choice).
- ``teacher-embeddings``: the paper's "teacher conditioning" ablation. The teacher's word embeddings
  are copied (only the kept rows when the vocabulary is trimmed). When the student's hidden size is
  smaller than the teacher's, the rows are projected onto their top principal components and
  rescaled to the student's initialisation scale: the closest linear fit that keeps the geometry of
  the teacher's token space. A larger student hidden size is an error: there is nothing to project.
- ``teacher-layers``: DistilBERT-style. Embeddings, the MLM head and evenly spaced teacher layers
  (first and last included: 12 -> 6 takes 0, 2, 4, 7, 9, 11): every student weight comes from the
  teacher. As wide as the teacher (hidden, intermediate and head counts), the weights are copied
  unchanged; a factorised embedding size (ELECTRA's) is kept as the teacher has it.

A narrower student's reduction is in ``student.narrow``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from monodistill.config import StudentConfig
from monodistill.errors import MonodistillError
from monodistill.families import family_of
from monodistill.student.family import check_family_init
from monodistill.student.narrow import narrow_teacher_state
from monodistill.student.shape import embedding_weight, intermediate_size, resolve_shape, student_model_config


def build_student(
    config: StudentConfig,
    teacher: PreTrainedModel,
    vocab_ids: torch.Tensor | None = None,
    seed: int = 0,
    sample_ids: torch.Tensor | None = None,
) -> PreTrainedModel:
    """Build and initialise the student.

    Args:
        config: Shape and init mode.
        teacher: The loaded teacher; its family and config are reused.
        vocab_ids: Teacher ids of the student's vocabulary (student id -> teacher id) when trimmed.
        seed: Seeds the random initialisation.
        sample_ids: (B, T) corpus blocks in the teacher's ids, read only by ``teacher-layers`` for a
            narrower student: the statistics of the teacher's activations on them choose the
            projections. Without them that init falls back to a data-free reduction (the SVD of the
            embeddings for the residual stream, the weights elsewhere); see the module docstring.

    Returns:
        A float32 model of the family's class (``*ForMaskedLM``, ``*ForCausalLM``) in train mode.
    """
    shape = resolve_shape(config)
    check_family_init(config, teacher.config)
    vocab_size = len(vocab_ids) if vocab_ids is not None else teacher.config.vocab_size
    embedding_size = getattr(teacher.config, "embedding_size", teacher.config.hidden_size)
    model_config = student_model_config(
        teacher.config,
        shape,
        vocab_size,
        # Only a factorised size (ELECTRA's) is kept; one equal to the teacher's hidden size follows the student's.
        keep_embedding_size=config.init == "teacher-layers" and embedding_size != teacher.config.hidden_size,
        family=config.family,
    )
    if config.init == "teacher-layers":
        indices = teacher_layer_indices(teacher.config.num_hidden_layers, shape.num_layers)
        family_of(teacher).copied_layers_config(model_config, teacher.config, indices)
    if vocab_ids is not None:
        from monodistill.vocab import remap_special_ids

        remap_special_ids(model_config, vocab_ids.tolist())
    torch.manual_seed(seed)
    student = family_of(model_config).model_class.from_config(model_config)
    if config.init == "teacher-embeddings":
        copy_teacher_embeddings(student, teacher, vocab_ids)
    elif config.init == "teacher-layers":
        copy_teacher_layers(student, teacher, vocab_ids, sample_ids)
    student.tie_weights()
    return student.float().train()


def copy_teacher_embeddings(student: PreTrainedModel, teacher: PreTrainedModel, vocab_ids: torch.Tensor | None) -> None:
    """Copy the teacher's word embeddings (kept rows only), projecting them when the student is narrower."""
    source = embedding_weight(teacher).detach().float()  # (V_teacher, H_teacher)
    if vocab_ids is not None:
        source = source[vocab_ids]  # (V_student, H_teacher)
    target = embedding_weight(student)
    if source.shape[1] < target.shape[1]:
        raise MonodistillError(
            f"student.init=teacher-embeddings: the student hidden size {target.shape[1]} is larger than the "
            f"teacher's {source.shape[1]}; there is no embedding to copy into the extra dimensions"
        )
    if source.shape[1] > target.shape[1]:
        source = project_embeddings(source, target.shape[1], target_std=float(target.detach().std()))
    with torch.no_grad():
        target.copy_(source)


def project_embeddings(embeddings: torch.Tensor, dim: int, target_std: float) -> torch.Tensor:
    """(V, H) -> (V, dim): centred PCA projection, rescaled to ``target_std``."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    # Randomised PCA: exact enough for the top components, and fast on a 119k x 768 matrix.
    _, _, components = torch.pca_lowrank(centred, q=dim, center=False, niter=4)  # (H, dim)
    projected = centred @ components  # (V, dim)
    return projected * (target_std / projected.std().clamp_min(1e-12))


def teacher_layer_indices(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (12 -> 6: [0, 2, 4, 7, 9, 11])."""
    if student_layers > teacher_layers:
        raise MonodistillError(
            f"student.init=teacher-layers: the student has {student_layers} layers, the teacher only {teacher_layers}"
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [round(index * step) for index in range(student_layers)]


def copy_teacher_layers(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    vocab_ids: torch.Tensor | None,
    sample_ids: torch.Tensor | None = None,
) -> None:
    """DistilBERT-style init: every weight (embeddings, MLM head, evenly spaced layers) from the teacher.

    As wide as the teacher, copied unchanged; narrower, reduced to the student's widths from statistics
    of the teacher's activations on ``sample_ids``, or data-free without them (module docstring).
    """
    narrower = check_teacher_layers_shape(student.config, teacher.config)
    teacher_state = {key: value.detach().float() for key, value in teacher.state_dict().items()}
    layer_indices = teacher_layer_indices(teacher.config.num_hidden_layers, student.config.num_hidden_layers)
    if narrower:
        teacher_state.update(narrow_teacher_state(teacher, student.config, layer_indices, vocab_ids, sample_ids))
    student_state = student.state_dict()
    layer_map = dict(enumerate(layer_indices))
    container = family_of(teacher).layers_path.rsplit(".", 1)[-1]  # the layer list's name: layer, layers, h
    vocab_size = student.config.vocab_size
    copied: dict[str, torch.Tensor] = {}
    for key, value in student_state.items():
        source_key = _teacher_key(key, layer_map, container)
        if source_key not in teacher_state:
            continue
        source = teacher_state[source_key]
        if vocab_ids is not None and source.shape[:1] == (teacher.config.vocab_size,) and value.shape[0] == vocab_size:
            source = source[vocab_ids]  # word embeddings, decoder weight and bias: kept rows only
        if source.shape == value.shape:
            copied[key] = source
    # Every weight comes from the teacher: a silently skipped one (a shape that differs) would stay random.
    missing = [key for key in student_state if key not in copied]
    if missing:
        raise MonodistillError(f"student.init=teacher-layers could not map student weights {missing[:3]}")
    student.load_state_dict(copied, strict=False)


def check_teacher_layers_shape(student_config: Any, teacher_config: Any) -> bool:
    """Whether ``teacher-layers`` must narrow the teacher's weights; a shape it cannot fill is refused in one line."""
    sizes = {
        "hidden_size": (student_config.hidden_size, teacher_config.hidden_size),
        "intermediate_size": (intermediate_size(student_config), intermediate_size(teacher_config)),
    }
    for name, (student_size, teacher_size) in sizes.items():
        if student_size > teacher_size:
            raise MonodistillError(
                f"student.init=teacher-layers: student.{name} {student_size} is larger than the teacher's "
                f"{teacher_size}, and nothing of the teacher fills the extra dimensions; use random"
            )
    if student_config.num_attention_heads != teacher_config.num_attention_heads:
        raise MonodistillError(
            f"student.init=teacher-layers needs the teacher's {teacher_config.num_attention_heads} attention heads "
            f"(each student head is one of the teacher's), student.num_heads is {student_config.num_attention_heads}; "
            "use teacher-embeddings or random"
        )
    if all(student_size == teacher_size for student_size, teacher_size in sizes.values()):
        return False
    unsupported = family_of(teacher_config).narrow_support(teacher_config)
    if unsupported:
        raise MonodistillError(
            f"student.init=teacher-layers cannot narrow a {teacher_config.model_type} teacher ({unsupported} "
            f"are not reduced); give the student the teacher's widths (hidden {teacher_config.hidden_size}, "
            f"intermediate {intermediate_size(teacher_config)}), or use teacher-embeddings or random"
        )
    embedding_size = getattr(teacher_config, "embedding_size", teacher_config.hidden_size)
    if embedding_size != teacher_config.hidden_size and student_config.hidden_size == embedding_size:
        raise MonodistillError(
            f"student.init=teacher-layers: a student hidden size equal to the teacher's embedding size "
            f"({embedding_size}) has no embeddings_project to take the teacher's; choose another student.hidden_size"
        )
    return True


def _teacher_key(student_key: str, layer_map: dict[int, int], container: str) -> str:
    """The teacher's name of a student weight: layer ``i`` of the layer list ``container`` is teacher layer
    ``layer_map[i]``."""
    parts = student_key.split(".")
    for position, part in enumerate(parts[:-1]):
        if part == container and parts[position + 1].isdigit():
            parts[position + 1] = str(layer_map[int(parts[position + 1])])
            break
    return ".".join(parts)


# ---------------------------------------------------------------------------------------------------
# teacher-layers for a narrower student: the reduction described in the module docstring.
