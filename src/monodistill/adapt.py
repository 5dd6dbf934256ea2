"""Teacher adaptation: continued masked-LM training of the teacher on the target-language corpus.

Gurgurov et al. (2025) adapt mBERT or XLM-R to the target language first and distil from the adapted
teacher. Adaptation here is a distillation run of its own, so it has the same data order, masking,
checkpoints, resume and run folder as any other: the student is the teacher itself (every weight
copied, its own shape and vocabulary), the objective is the masked-LM cross-entropy alone (so the
frozen teacher never runs during training), and validation scores the adapted model beside the
frozen original on the same held-out blocks: that is the accuracy before and after.

    OUT/student/             the adapted teacher, usable as --teacher (save_pretrained + tokenizer)
    OUT/adaptation.json      masked-token accuracy and masked-LM perplexity on held-out blocks, before and after
    OUT/...                  the usual run folder: config.yaml, metrics.jsonl, checkpoints/
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from monodistill import checkpoint as ckpt
from monodistill.config import AdaptConfig, DistillConfig, LossConfig, StudentConfig, VocabConfig
from monodistill.errors import MonodistillError
from monodistill.student import intermediate_size
from monodistill.teacher import load_model_config

RESULT_FILE = "adaptation.json"


def adaptation_config(config: DistillConfig, adapt: AdaptConfig, output: Path) -> DistillConfig:
    """The distillation run that adapts ``config.teacher``: a teacher-shaped student initialised with every
    teacher weight, trained on masked-LM alone with the ``adapt`` settings, on the teacher's own vocabulary."""
    teacher = load_model_config(config.teacher.name_or_path, config.teacher.revision)
    student = StudentConfig(
        preset="custom",
        num_layers=int(teacher.num_hidden_layers),
        hidden_size=int(teacher.hidden_size),
        intermediate_size=intermediate_size(teacher),
        num_heads=int(teacher.num_attention_heads),
        init="teacher-layers",
        name="teacher-adapted",
        trainable_layers=adapt.train_layers,
    )
    train = replace(
        config.train,
        learning_rate=adapt.learning_rate,
        warmup_ratio=adapt.warmup_ratio,
        max_steps=adapt.max_steps,
        epochs=adapt.epochs,
        batch_size=adapt.batch_size or config.train.batch_size,
    )
    return replace(
        config,
        vocab=VocabConfig(),  # adaptation comes before any trimming: the teacher keeps its vocabulary
        student=student,
        loss=LossConfig(alpha_kl=0.0, alpha_mlm=1.0),
        train=train,
        adapt=AdaptConfig(),
        output_dir=str(output),
    )


def adapt_teacher(config: DistillConfig, output: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Adapt ``config.teacher`` to ``config.data``'s corpus into ``output``; returns the adapted teacher's folder.

    Resumable and done once, as a distillation run is. ``config.adapt`` holds the settings.

    Raises:
        MonodistillError: as ``recipe.distill_students`` does (a teacher without a trained MLM head included).
    """
    from monodistill.recipe import distill_students

    if not config.data.corpus:
        raise MonodistillError("adapt needs a corpus: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    folder = distill_students([adaptation_config(config, config.adapt, output)], resume=resume, overwrite=overwrite)[0]
    result = adaptation_result(output)
    ckpt.atomic_write_text(output / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    before, after = result["before"], result["after"]
    print(
        f"adapted {config.teacher.name_or_path} on {config.data.corpus} in {result['steps']} steps: masked-token "
        f"accuracy {before['masked_token_accuracy']:.2%} -> {after['masked_token_accuracy']:.2%}, masked-LM "
        f"perplexity {before['mlm_perplexity']:,.1f} -> {after['mlm_perplexity']:,.1f} on held-out blocks; "
        f"teacher in {folder}"
    )
    return folder


def adaptation_result(output: Path) -> dict[str, Any]:
    """Before (the original teacher) and after (the adapted one), from the run's last validation."""
    validations = [record for record in ckpt.read_metrics(output) if record["split"] == "validation"]
    if not validations:
        raise MonodistillError(f"{output} holds no validation of the adaptation")
    last = validations[-1]

    def scores(accuracy: float, loss: float) -> dict[str, float]:
        return {"masked_token_accuracy": accuracy, "mlm_loss": loss, "mlm_perplexity": math.exp(loss)}

    return {
        "steps": last["step"],
        "before": scores(last["teacher_accuracy"], last["teacher_mlm_loss"]),
        "after": scores(last["student_accuracy"], last["mlm_loss"]),
        "note": "held-out blocks, fixed masks (80/10/10); mlm_perplexity = exp(masked-token cross-entropy)",
    }
