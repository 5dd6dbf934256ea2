"""Distillation losses: small pure functions, and one object per loss term that a ``LossConfig`` turns on.

- ``functions``: the losses as pure functions of tensors (``kl_divergence``, ``masked_lm_loss``,
  ``relation_loss``, ``hidden_mse``, ...), each a mean or a sum, shapes in the docstrings.
- ``terms``: one class per term (``LogitKL``, ``MaskedLM``, ``HiddenMSE``, ...): its logged name, its
  weight, what it reads (``Needs``), ``sum`` over a micro-batch and the count that sum is divided by.
  ``build_terms`` makes a config's list of terms; the training step forms the loss from it
  (``StudentRun.train_micro``).
- ``check``: what the two models must be for the terms to be computable (``check_objective``).
"""

from monodistill.losses.check import check_objective
from monodistill.losses.functions import (
    Reduction,
    attention_mse,
    attention_probabilities,
    default_layer_map,
    hidden_cosine_loss,
    hidden_mse,
    jensen_shannon_divergence,
    kl_divergence,
    logit_mse,
    masked_lm_loss,
    relation_loss,
    reverse_kl_divergence,
)
from monodistill.losses.sparse import SparseTargets, sparse_kl_divergence
from monodistill.losses.terms import (
    TERMS,
    AttentionMSE,
    Count,
    HiddenCosine,
    HiddenMSE,
    LogitJSD,
    LogitKL,
    LogitMSE,
    LogitReverseKL,
    LossTerm,
    MaskedLM,
    ModelOutputs,
    ModelSizes,
    Needs,
    Relation,
    build_terms,
    layer_map,
    needs_of,
    step_count,
)

__all__ = [
    "TERMS",
    "AttentionMSE",
    "Count",
    "HiddenCosine",
    "HiddenMSE",
    "LogitJSD",
    "LogitKL",
    "LogitMSE",
    "LogitReverseKL",
    "LossTerm",
    "MaskedLM",
    "ModelOutputs",
    "ModelSizes",
    "Needs",
    "Reduction",
    "Relation",
    "SparseTargets",
    "attention_mse",
    "attention_probabilities",
    "build_terms",
    "check_objective",
    "default_layer_map",
    "hidden_cosine_loss",
    "hidden_mse",
    "jensen_shannon_divergence",
    "kl_divergence",
    "layer_map",
    "logit_mse",
    "masked_lm_loss",
    "needs_of",
    "relation_loss",
    "reverse_kl_divergence",
    "sparse_kl_divergence",
    "step_count",
]
