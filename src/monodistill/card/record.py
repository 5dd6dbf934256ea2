"""What a distillation run folder recorded, read for its card and the report: the config it trained
with, whether its loss trains the MLM head, and what its last validation says of the student.

A student whose last validation predicts one token at most masked positions is called what it is,
degenerate; one whose loss never trains its MLM head (no logit or MLM term) is said to have fill-mask
predictions that mean nothing instead (``validation_note``, which the report's distillation table
shows too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoTokenizer

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig, LossConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.families import family_of

DEGENERATE_SHARE = 0.5
"""A student that predicts one token at more than this share of masked positions is degenerate."""
FLAT_METRICS = ("mlm_loss", "kl_to_teacher", "teacher_agreement", "student_accuracy", "student_top_prediction_share")
"""The student's validation metrics that a stuck student repeats from one validation to the next."""


def read_run_config(run_dir: Path) -> DistillConfig:
    """The config a distillation run recorded in ``RUN/config.yaml``, as it trained.

    Never the defaults in its place: they would name a teacher (mBERT) and settings the run did not use.

    Raises:
        MonodistillError: naming the file, when it is empty, not valid YAML, not a mapping of sections, or
            not a distillation config.
    """
    path = run_dir / "config.yaml"
    remedy = "restore the run's config there (the settings it was distilled with), or distil the student again"
    try:
        recorded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise MonodistillError(f"{path} cannot be read ({error.__class__.__name__}: {error}); {remedy}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise MonodistillError(f"{path} is not valid YAML{at}; {remedy}") from None
    if recorded is None:
        raise MonodistillError(f"{path} is empty: the card is written from the config the run recorded; {remedy}")
    if not isinstance(recorded, dict):
        raise MonodistillError(
            f"{path} holds a {type(recorded).__name__}, not the mapping of sections a run records; {remedy}"
        )
    try:
        return load_config(DistillConfig, updates=recorded)
    except MonodistillError as error:
        raise MonodistillError(f"{path} is not a distillation run's config ({error}); {remedy}") from None


def mlm_head_trained(run_dir: Path) -> bool:
    """Whether a distillation run's loss trains the student's MLM head (``LossConfig.trains_mlm_head`` of
    the config it recorded); a folder that recorded none is taken as the default recipe's."""
    if not (run_dir / "config.yaml").is_file():
        return LossConfig().trains_mlm_head()
    return read_run_config(run_dir).loss.trains_mlm_head()


def student_objective(student_dir: Path) -> str:
    """What a saved model predicts, as its family's adapter says: ``masked`` tokens or the ``causal`` next token.

    Read from its ``config.json`` (``model_type``); a folder without one, or a family no adapter serves, is taken
    for a masked LM, as every student was before decoders.
    """
    try:
        model_type = json.loads((student_dir / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return "masked"
    return family_of(str(model_type), required=False).objective


def run_objective(run_dir: Path) -> str:
    """What a distillation run's student predicts: the objective its ``config.yaml`` names, or where that says
    ``auto`` (or cannot be read) its student's family's (``student_objective``)."""
    try:
        objective = read_run_config(run_dir).objective
    except MonodistillError:
        objective = "auto"
    return objective if objective != "auto" else student_objective(run_dir / ckpt.STUDENT_DIR)


def validation_note(run_dir: Path, records: list[dict[str, Any]], name: str) -> str | None:
    """A plain word on what the last validation of a run says about its student, or None.

    A student whose loss never trains its MLM head (TinyBERT's or TiME's recipe alone) predicts masked
    tokens through a head left as it was initialised: its masked-token metrics mean nothing, and one
    token at most positions is no sign of a degenerate student. Otherwise a degenerate student: one that
    predicts one token at more than ``DEGENERATE_SHARE`` of masked positions (the token decoded with the
    student's own tokenizer), and whether its validation metrics stopped changing.
    """
    student_dir = run_dir / ckpt.STUDENT_DIR
    causal = student_objective(student_dir) == "causal"
    if not mlm_head_trained(run_dir) and causal:
        return (
            f"{name}'s language-model head is never trained (its loss has no logit or next-token term): its "
            "next-token accuracy, agreement, KL and top prediction say nothing about its hidden states."
        )
    if not mlm_head_trained(run_dir):
        return (
            f"{name}'s masked-LM head is never trained (its loss has no logit or MLM term): its masked-token "
            "accuracy, agreement, KL and top prediction say nothing about the encoder, which fine-tuning uses."
        )
    validations = [record for record in records if record.get("split") == "validation"]
    last = validations[-1] if validations else {}
    share = last.get("student_top_prediction_share")
    if share is None or share <= DEGENERATE_SHARE:
        return None
    token_id = int(last["student_top_prediction_id"])
    positions = "next-token positions" if causal else "masked positions"
    try:
        token = (
            f"the token `{AutoTokenizer.from_pretrained(student_dir).convert_ids_to_tokens(token_id)}` (id {token_id})"
        )
    except (OSError, ValueError):  # no tokenizer beside it (the student folder was moved away)
        token = f"token id {token_id}"
    note = (
        f"{name} predicts {token} at {share:.0%} of {positions} at its last validation (step {last['step']}): "
        "a degenerate student, typical of a smoke-test budget (too few steps)."
    )
    flat = _unchanged_since(validations)
    if flat is not None:
        note += f" Its validation metrics did not change between steps {flat} and {last['step']}."
    return note


def _unchanged_since(validations: list[dict[str, Any]]) -> int | None:
    """The first step of the validations that end the run with the same metrics (to 4 decimals), or None."""

    def metrics(record: dict[str, Any]) -> list[float]:
        return [round(record[key], 4) for key in FLAT_METRICS if isinstance(record.get(key), float | int)]

    first = len(validations) - 1
    while first > 0 and metrics(validations[first - 1]) == metrics(validations[-1]):
        first -= 1
    return int(validations[first]["step"]) if first < len(validations) - 1 else None
