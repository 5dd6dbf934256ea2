"""The loss section: the paper's recipe by default, and the field's other terms as options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from monodistill.config.base import LOGIT_LOSSES
from monodistill.config.base import require as _require


@dataclass
class LossConfig:
    """L = alpha_kl * logit term + alpha_mlm * CE + alpha_cosine * (1 - cos) + alpha_relation * relations
    + alpha_hidden * hidden MSE + alpha_attention * attention MSE; the defaults are the paper's recipe.

    The logit term is T^2 * KL(teacher_T || student_T) (``logit_loss: kl``, the paper), the reverse KL or the JSD
    (``reverse_kl``, ``jsd``) or the mean squared error of the logits (``mse``); each, and the CE, is over the
    scored positions (masked ones, or every next token).
    """

    section: ClassVar[str] = "loss"

    alpha_kl: float = 0.5
    """Weight of the logit term, KL or MSE (prototype script: 0.5; DistilBERT: 5.0; Gurgurov et al.: 0.5 MSE)."""
    alpha_mlm: float = 0.5
    """Weight of the masked-LM cross-entropy on the true tokens (prototype: 0.5; DistilBERT: 2.0)."""
    temperature: float = 4.0
    """Softmax temperature T for the KL term."""
    logit_loss: str = "kl"
    """The logit term: kl (KL(teacher_T || student_T), the paper), reverse_kl (KL(student_T || teacher_T), MiniLLM),
    jsd (their Jensen-Shannon divergence, GKD), each times T^2, or mse (mean squared error of the logits)."""
    alpha_cosine: float = 0.0
    """Weight of the last hidden states' cosine term (needs equal hidden sizes; DistilBERT: 1.0)."""
    alpha_relation: float = 0.0
    """Weight of MiniLMv2's self-attention relation loss (Q-Q, K-K, V-V; TiME uses it alone)."""
    relation_teacher_layer: int | None = None
    """Teacher layer (1-based) whose relations are taught; default the last (MiniLMv2: upper-middle for large ones)."""
    relation_student_layer: int | None = None
    """Student layer (1-based) that learns them; default its last."""
    relation_heads: int | None = None
    """Heads Q, K and V are split into for the relations; default the teacher's; must divide both widths."""
    alpha_hidden: float = 0.0
    """Weight of the hidden-state MSE of mapped layers, through a learned projection when widths differ."""
    alpha_attention: float = 0.0
    """Weight of the attention-probability MSE of mapped layers (TinyBERT; needs equal head counts)."""
    hidden_layers: str | None = None
    """Student:teacher layers of the hidden and attention terms, e.g. "1:2,2:4"; 0 is the embeddings (hidden
    term only); default TinyBERT's evenly spaced map (embeddings, then student layer i to teacher i * L_t / L_s)."""

    WEIGHTS: ClassVar[tuple[str, ...]] = (
        "alpha_kl",
        "alpha_mlm",
        "alpha_cosine",
        "alpha_relation",
        "alpha_hidden",
        "alpha_attention",
    )

    def __post_init__(self) -> None:
        for name in (*self.WEIGHTS, "temperature"):
            value = getattr(self, name)
            _require(math.isfinite(value), f"loss.{name} must be a finite number, got {value}", f"loss.{name}")
        _require(self.temperature > 0, f"loss.temperature must be > 0, got {self.temperature}", "loss.temperature")
        # The message names every weight; the error is about the negative ones only.
        negative = [f"loss.{name}" for name in self.WEIGHTS if getattr(self, name) < 0]
        weights = ", ".join(f"loss.{name}" for name in self.WEIGHTS)
        values = ", ".join(f"{name}={getattr(self, name.removeprefix('loss.'))}" for name in negative)
        _require(not negative, f"loss weights ({weights}) must be >= 0, got {values}", *negative)
        _require(
            any(getattr(self, name) > 0 for name in self.WEIGHTS),
            "every loss weight (loss.alpha_*) is zero: nothing would train the student",
            *(f"loss.{name}" for name in self.WEIGHTS),
        )
        _require(
            self.logit_loss in LOGIT_LOSSES,
            f"loss.logit_loss must be one of {LOGIT_LOSSES}, got {self.logit_loss!r}",
            "loss.logit_loss",
        )
        for name in ("relation_teacher_layer", "relation_student_layer", "relation_heads"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"loss.{name} must be >= 1, got {value}", f"loss.{name}")
        if self.hidden_layers is not None:
            pairs = parse_layer_map(self.hidden_layers)
            # Teacher layer 0 is its embeddings' output, which attends to nothing: the attention term would
            # read transformer layer 0 - 1, i.e. the teacher's last.
            embeddings = next((student for student, teacher in pairs if student > 0 and teacher == 0), None)
            _require(
                self.alpha_attention == 0 or embeddings is None,
                f"loss.hidden_layers={self.hidden_layers!r} maps student layer {embeddings} to teacher layer 0, "
                "the embeddings, which have no attention for loss.alpha_attention; map transformer layers (>= 1) "
                "to transformer layers, or 0:0",
                "loss.hidden_layers",
                "loss.alpha_attention",
            )

    def trained_parts(self) -> tuple[str, ...]:
        """The logged loss parts this objective weighs (weight > 0), as its terms name them (``losses.build_terms``,
        held to this by the tests): ``kl`` or ``mse`` (the logit term), ``mlm``, ``cosine``, ``relation``,
        ``hidden``, ``attention``. ``mlm`` is logged also when it weighs nothing, so a reader of the log (the
        progress bar, the report's curves) asks this."""
        weights = {
            self.logit_loss: self.alpha_kl,
            "mlm": self.alpha_mlm,
            "cosine": self.alpha_cosine,
            "relation": self.alpha_relation,
            "hidden": self.alpha_hidden,
            "attention": self.alpha_attention,
        }
        return tuple(part for part, weight in weights.items() if weight > 0)

    def trains_mlm_head(self) -> bool:
        """Whether a term trains the student's masked-LM head (the logit term or the MLM cross-entropy): TinyBERT's
        and TiME's objectives alone (hidden states, attention, relations) leave it as it was initialised."""
        return self.alpha_kl > 0 or self.alpha_mlm > 0


def parse_layer_map(text: str) -> list[tuple[int, int]]:
    """``"1:2,2:4"`` -> ``[(1, 2), (2, 4)]`` (student, teacher); refuses anything else, naming loss.hidden_layers."""
    pairs = []
    for item in text.replace(" ", "").split(","):
        student, _, teacher = item.partition(":")
        _require(
            student.isdigit() and teacher.isdigit(),
            f'loss.hidden_layers must be student:teacher layer pairs such as "1:2,2:4", got {text!r}',
            "loss.hidden_layers",
        )
        pairs.append((int(student), int(teacher)))
    students = [student for student, _ in pairs]
    _require(
        len(set(students)) == len(students),
        f"loss.hidden_layers maps a student layer twice: {text!r}",
        "loss.hidden_layers",
    )
    return pairs
