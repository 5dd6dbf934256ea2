"""teacher-layers for a narrower student (BiStil, Ansell et al. 2023; Gurgurov et al. 2025) reduces each
taken weight to the student's widths. It needs the teacher's head count (each student head is one
teacher head, narrowed) and no size above the teacher's. What it reads of the teacher is either
statistics of its activations on ``sample_ids`` (corpus blocks), or, without them, stand-ins computed
from its weights alone (noted as "data-free" below). The choices, and why:

- The residual stream: one projection P (H_t x H_s, orthonormal columns) shared by every layer, since
  the residual connections add every layer's output into the same coordinates. Its span is the
  top principal directions of the teacher's hidden states (all layers' outputs pooled, uncentred
  across tokens, so that the stream's mean, which biases and LayerNorm betas put there, survives),
  always including the all-ones direction; data-free, of the word-embedding rows as they enter the
  stream. Within the span, the basis lines the ones direction up with the student's, so that the
  student's LayerNorm subtracts exactly the mean the teacher's subtracts, and is otherwise the
  closest to a selection of teacher coordinates (orthogonal Procrustes), since LayerNorm gains and
  the MLM head's activation act coordinate by coordinate (data-free on mmt-mini, where the head
  keeps its GELU, the KL to the teacher fell from 10.2 to 2.9; with a sample it changes little).
  Embeddings (word, position, token type) become E P; a map that reads the stream becomes W P, one
  that writes it P^T W (and its bias P^T b). The decoder stays tied to the projected word embeddings
  (kept rows of a trimmed vocabulary) and its bias is sliced as before.
- The MLM head's transform becomes P^T W P. Its activation, elementwise in the teacher's
  coordinates, does not commute with P: with a sample, the teacher's is replaced by its affine
  least-squares fit per coordinate and the student's kept in its linear range by a constant that
  the head's LayerNorm subtracts again (on mmt-mini: masked-token accuracy 0.03 -> 0.10). Data-free
  the activation stays as it is (an affine fit on the embedding rows measured worse).
- LayerNorm cannot be projected exactly (its gain is diagonal in the teacher's coordinates, not in
  P's): gamma_s[j] = s * sum_i P[i, j]^2 gamma_t[i], the diagonal of P^T diag(gamma) P, and
  beta_s = P^T beta. The factor s = r * sqrt(H_t / H_s) makes up for the student normalising over
  H_s coordinates: r^2 is the mean share of the centred input's squared norm that P keeps (on the
  sample; data-free, on the embedding rows).
- Attention, one head at a time. Q K^T is unchanged only by a transform applied to both sides, so a
  head's queries and keys share one orthonormal basis U (d_t x d_s): the top eigenvectors of the sum
  of their trace-normalised second moments (data-free, those of the embedding rows' queries and keys).
  Queries are scaled by sqrt(d_s / d_t), since the student divides scores by sqrt(d_s). Values get
  their own basis V, the principal directions of the head's attention output (data-free, of its
  values); the attention output projection takes its inverse side, P^T W_o V.
- Feed-forward: the I_s neurons of each taken layer with the most mean |activation| times the norm of
  their projected output weights (data-free, input-weight norm times output-weight norm), kept in
  order: their rows of the input map and columns of the output map.
- With a sample, what a projection drops is replaced by its mean: each bias gains W (x_mean minus its
  projection), and the output map's bias the dropped neurons' mean output.

Families: those whose adapter names ``layer_roles`` (``families``): BERT, RoBERTa, XLM-R, CamemBERT,
ELECTRA generators and RemBERT (the factorised embeddings kept; the map into the stream reduced) and
DistilBERT. DeBERTa-v2 and ModernBERT are refused for a narrower student (``Family.narrow_support``).

The package keeps the maths apart from the model: ``parts`` finds the taken layers and the modules outside
them, the family adapter reads a layer as ``LayerWeights`` and writes it back (``Family.read_layer``,
``Family.layer_state``); ``hooks`` collects ``TeacherStatistics`` on a sample (``statistics.weight_statistics``
data-free); ``bases`` chooses P, the head bases and the kept neurons; and ``reduce`` holds the reduction as
pure maps of float64 tensors (``reduce_layer(weights, statistics, bases) -> LayerWeights``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from monodistill.families import family_of
from monodistill.student.narrow.bases import Bases, layer_bases, stream_basis
from monodistill.student.narrow.hooks import sample_statistics
from monodistill.student.narrow.parts import reduce_part, stream_embeddings, teacher_parts
from monodistill.student.narrow.reduce import reduce_layer
from monodistill.student.narrow.statistics import LayerStatistics, TeacherStatistics, weight_statistics
from monodistill.student.shape import intermediate_size

__all__ = [
    "Bases",
    "LayerStatistics",
    "TeacherStatistics",
    "narrow_teacher_state",
    "reduce_layer",
    "stream_basis",
    "weight_statistics",
]


def narrow_teacher_state(
    teacher: PreTrainedModel,
    student_config: Any,
    layer_indices: list[int],
    vocab_ids: torch.Tensor | None,
    sample_ids: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The teacher's weights (taken layers only, teacher names) reduced to the student's widths, float32.

    Args:
        teacher: The teacher, of a family with ``layer_roles``.
        student_config: The student's model config (its hidden and FFN sizes, its heads: the teacher's count).
        layer_indices: The teacher layers the student takes, in order.
        vocab_ids: The kept vocabulary (teacher ids), whose embedding rows stand for the stream data-free.
        sample_ids: (B, T) corpus blocks in the teacher's ids to read statistics on; None for data-free.
    """
    family = family_of(teacher)
    layers, parts = teacher_parts(teacher, family, layer_indices)
    weights = [family.read_layer(layer.module) for layer in layers]
    if sample_ids is not None:
        statistics = sample_statistics(teacher, family, layers, parts, sample_ids)
    else:
        rows = stream_embeddings(teacher, family, vocab_ids)  # (V, H_t)
        outer_norms = [part.name for part in parts if part.role == "norm"]
        statistics = weight_statistics(rows, weights, outer_norms, teacher.config.num_attention_heads)
    stream = stream_basis(statistics.stream, student_config.hidden_size)  # P (H_t, H_s)
    head_dim = student_config.hidden_size // student_config.num_attention_heads
    width = intermediate_size(student_config)
    state: dict[str, torch.Tensor] = {}
    for layer, layer_weights, layer_statistics in zip(layers, weights, statistics.layers, strict=True):
        bases = layer_bases(layer_weights, layer_statistics, stream, head_dim, width)
        state.update(family.layer_state(reduce_layer(layer_weights, layer_statistics, bases), layer.name))
    for part in parts:
        state.update(reduce_part(part, statistics, stream))
    return {name: value.float() for name, value in state.items()}
