"""The ``distill`` stage end to end: check every input, load, build, train, save the student.

``run_distillation`` is what ``monodistill distill`` runs; the training loop itself is
``monodistill.distill.Distiller``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import yaml
from accelerate.utils import set_seed
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.card import build_model_card
from monodistill.config import DistillConfig, config_to_dict, save_config
from monodistill.data.blocks import build_blocks
from monodistill.distill import Distiller, flat_scalars
from monodistill.errors import MonodistillError
from monodistill.processes import process_state
from monodistill.student import StudentShape, build_student, resolve_shape
from monodistill.teacher import load_teacher, max_positions, parameter_counts


def run_distillation(config: DistillConfig, resume: bool = False) -> Path:
    """The ``distill`` stage end to end: validate, load, build, train, save the student.

    Every input check runs before training starts. A finished run is not redone: with ``resume``
    it returns the saved student.

    Returns:
        The folder of the saved student (``RUN/student``).
    """
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR or set output_dir")
    run_dir = Path(config.output_dir)
    _check_run_folder(config, run_dir, resume)
    student_dir = run_dir / ckpt.STUDENT_DIR
    if resume and _is_complete(run_dir) and not _length_changed(config, run_dir) and student_dir.is_dir():
        print(f"{run_dir} is already complete; the student is in {student_dir}")
        return student_dir
    if not config.data.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    shape = resolve_shape(config.student)  # an unknown preset fails before anything is loaded
    set_seed(config.train.seed)

    teacher, teacher_tokenizer = load_teacher(config.teacher)
    _check_compatible(config, teacher, shape)
    # Under several processes the main one trims the vocabulary (and tokenises the corpus, inside
    # build_blocks) while the others wait, then they read what it wrote.
    with process_state().main_process_first():
        tokenizer, vocab_ids = resolve_vocabulary(config, teacher_tokenizer, run_dir)
    blocks = build_blocks(config.data, tokenizer, config.train.seed)
    student = build_student(config.student, _float32_weights(config, teacher), vocab_ids, seed=config.train.seed)

    distiller = Distiller(
        config,
        run_dir,
        teacher,
        student,
        special_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        blocks=blocks,
        vocab_ids=vocab_ids,
    )
    if resume:
        distiller.check_resumable()  # before the new config replaces the saved one
    run_dir.mkdir(parents=True, exist_ok=True)
    if distiller.accelerator.is_main_process:
        save_config(config, run_dir / "config.yaml")
        ckpt.write_environment(run_dir, {"blocks_cache": str(blocks.cache_path), "train_blocks": len(blocks.train)})
    distiller.accelerator.print(
        f"distilling {parameter_counts(student)['total']:,}-parameter student from {config.teacher.name_or_path} "
        f"on {len(blocks.train):,} blocks of {config.data.max_seq_length} tokens for {distiller.total_steps:,} steps"
    )
    try:
        metrics = distiller.fit(resume=resume)
        if distiller.accelerator.is_main_process:
            counts = parameter_counts(student), parameter_counts(teacher)
            card = build_model_card(config, metrics, *counts, len(blocks.train))
            save_student(student_dir, distiller.unwrapped_student(), tokenizer, card)
        distiller.accelerator.wait_for_everyone()
    finally:
        # Trackers only: the process group outlives one student (`run` distils several in one process)
        # and is closed when the command ends.
        for tracker in distiller.accelerator.trackers:
            tracker.finish()
    return student_dir


def resolve_vocabulary(
    config: DistillConfig, teacher_tokenizer: PreTrainedTokenizerBase, run_dir: Path
) -> tuple[PreTrainedTokenizerBase, torch.Tensor | None]:
    """The student's tokenizer, and its ids in the teacher's vocabulary when trimmed."""
    if not config.vocab.active:
        return teacher_tokenizer, None
    from monodistill.vocab import load_trimmed_vocab, run_vocab

    path = Path(config.vocab.path) if config.vocab.path else run_dir / "vocab"
    if config.vocab.path is None and not (path / "id_map.json").is_file():
        run_vocab(config, path)
    if not path.is_dir():
        raise MonodistillError(f"vocab.path {path} does not exist; build it with `monodistill vocab`")
    tokenizer, id_map = load_trimmed_vocab(path, teacher_tokenizer)
    return tokenizer, torch.tensor(id_map, dtype=torch.long)


def _float32_weights(config: DistillConfig, teacher: PreTrainedModel) -> PreTrainedModel:
    """The teacher whose weights a student copies: the stored float32 weights, not a bf16/fp16 runtime copy."""
    if config.student.init == "random" or teacher.dtype == torch.float32:
        return teacher
    return load_teacher(replace(config.teacher, dtype="float32"))[0]


def save_student(path: Path, student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, card: str) -> None:
    """Write the student, its tokenizer and model card atomically, loadable with ``from_pretrained``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.atomic_dir(path) as staging:
        student.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(card)


LENGTH_FIELDS = ("train.max_steps", "train.epochs")
"""Fields that set the run's length: free to change once it is finished (it is then extended)."""


def _is_complete(run_dir: Path) -> bool:
    latest = ckpt.latest_checkpoint(run_dir)
    return latest is not None and bool(ckpt.read_state(latest).get("complete"))


def _length_changed(config: DistillConfig, run_dir: Path) -> bool:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return False
    before, after = flat_scalars(yaml.safe_load(saved.read_text()) or {}), flat_scalars(config_to_dict(config))
    return any(before.get(key) != after.get(key) for key in LENGTH_FIELDS)


def _check_run_folder(config: DistillConfig, run_dir: Path, resume: bool) -> None:
    saved = run_dir / "config.yaml"
    if not resume:
        if ckpt.list_checkpoints(run_dir) or (run_dir / ckpt.STUDENT_DIR).exists():
            raise MonodistillError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose another --output"
            )
        return
    if saved.is_file():
        before = flat_scalars(yaml.safe_load(saved.read_text()))
        after = flat_scalars(config_to_dict(config))
        # Cadence, length and descriptions may change on resume; anything that changes the trajectory may not.
        free = {
            "data.language",
            "train.compile",
            "train.save_interval",
            "train.log_interval",
            "train.eval_interval",
        }
        # The length of an unfinished run sets its learning-rate schedule, so it is fixed until the run
        # ends; a finished run (or one with no checkpoint yet) may be given a new length.
        if _is_complete(run_dir) or ckpt.latest_checkpoint(run_dir) is None:
            free.update(LENGTH_FIELDS)
        changed = sorted(
            key for key in before.keys() | after.keys() if key not in free and before.get(key) != after.get(key)
        )
        if changed:
            bends = [key for key in changed if key in LENGTH_FIELDS or key == "train.warmup_ratio"]
            hint = (
                f"; {', '.join(bends)} set the learning-rate schedule of an unfinished run: let it finish, "
                "then resume it with the new length"
                if bends and not _is_complete(run_dir)
                else ""
            )
            raise MonodistillError(
                f"cannot resume {run_dir}: the config differs from the saved one in {', '.join(changed)}{hint}"
            )


def _check_compatible(config: DistillConfig, teacher: PreTrainedModel, shape: StudentShape) -> None:
    limit = max_positions(teacher.config)
    if config.data.max_seq_length > limit:
        raise MonodistillError(
            f"data.max_seq_length={config.data.max_seq_length} is beyond the teacher's {limit} positions"
        )
    if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise MonodistillError("train.mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on this machine")
    if config.loss.alpha_cosine > 0 and shape.hidden_size != teacher.config.hidden_size:
        raise MonodistillError(
            f"loss.alpha_cosine needs equal hidden sizes; the student has {shape.hidden_size}, "
            f"the teacher {teacher.config.hidden_size}"
        )
