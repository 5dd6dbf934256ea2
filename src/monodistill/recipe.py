"""The ``distill`` stage end to end: check every input, load, build, train, save the student.

``run_distillation`` is what ``monodistill distill`` runs; the training loop itself is
``monodistill.distill.Distiller``. ``run_distillation_group`` distils several compatible students
(``shared_teacher_groups``) with one teacher pass per batch, each into its own run folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate.utils import set_seed
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill import runfolder
from monodistill.card import build_model_card
from monodistill.config import DistillConfig, config_to_dict, save_config
from monodistill.data.blocks import Blocks, build_blocks, tokenizer_fingerprint
from monodistill.data.corpus import corpus_digest
from monodistill.distill import Distiller, flat_scalars
from monodistill.errors import MonodistillError
from monodistill.processes import process_state
from monodistill.student import StudentShape, build_student, resolve_shape
from monodistill.teacher import load_teacher, max_positions, parameter_counts

RUN_ENTRIES = (
    "config.yaml",
    "environment.json",
    ckpt.METRICS_FILE,
    ckpt.CHECKPOINTS,
    ckpt.STUDENT_DIR,
    "tensorboard",
    "vocab",
)
"""What a distillation run writes into its folder: a folder holding any of them holds a run."""


def run_distillation(config: DistillConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """The ``distill`` stage end to end: validate, load, build, train, save the student.

    The run folder is held exclusively for the whole stage. Every input check runs before training
    starts. A finished run is not redone: with ``resume`` it returns the saved student.

    Args:
        config: The resolved distillation config.
        resume: Continue the run in ``config.output_dir`` from its newest intact checkpoint.
        overwrite: Clear a previous run out of ``config.output_dir`` first.

    Returns:
        The folder of the saved student (``RUN/student``).
    """
    if not config.output_dir:
        raise MonodistillError("no output folder: pass --output DIR or set output_dir")
    run_dir = Path(config.output_dir)
    with runfolder.claim(run_dir):
        latest = _prepare_run_folder(config, run_dir, resume, overwrite)
        return _distill(config, run_dir, latest)


def _distill(config: DistillConfig, run_dir: Path, latest: Path | None) -> Path:
    student_dir = run_dir / ckpt.STUDENT_DIR
    if _is_done(config, run_dir, latest):
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
    fingerprints = {"corpus": corpus_digest(config.data), "tokenizer": tokenizer_fingerprint(tokenizer)}
    if latest is not None:
        _check_same_data(config, latest, fingerprints)
    student = build_student(config.student, _float32_weights(config, teacher), vocab_ids, seed=config.train.seed)

    distiller = build_distiller(config, run_dir, teacher, student, tokenizer, blocks, vocab_ids, fingerprints, latest)
    if distiller.accelerator.is_main_process:
        save_config(config, run_dir / "config.yaml")
        ckpt.write_environment(run_dir, {"blocks_cache": str(blocks.cache_path), "train_blocks": len(blocks.train)})
    distiller.accelerator.print(
        f"distilling {parameter_counts(student)['total']:,}-parameter student from {config.teacher.name_or_path} "
        f"on {len(blocks.train):,} blocks of {config.data.max_seq_length} tokens for {distiller.total_steps:,} steps"
    )
    try:
        metrics = distiller.fit(resume_from=latest)
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


def _is_done(config: DistillConfig, run_dir: Path, latest: Path | None) -> bool:
    finished = latest is not None and ckpt.read_state(latest).get("complete")
    return bool(finished) and not _length_changed(config, run_dir) and (run_dir / ckpt.STUDENT_DIR).is_dir()


def build_distiller(
    config: DistillConfig,
    run_dir: Path,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    blocks: Blocks,
    vocab_ids: torch.Tensor | None,
    fingerprints: dict[str, str],
    latest: Path | None,
) -> Distiller:
    """One student's Distiller, its checkpoints stamped with the data fingerprints, checked against
    the checkpoint it resumes from (before the new config replaces the saved one)."""
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
    distiller.state_extras = fingerprints
    if latest is not None:
        distiller.check_resumable(latest)
    return distiller


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


def _prepare_run_folder(config: DistillConfig, run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Clear (``overwrite``), refuse (a run there without ``resume``) or check the folder for resuming.

    Returns:
        The verified checkpoint to resume from, if any.
    """
    state = process_state()
    if overwrite or not resume:
        found = runfolder.holds_run(run_dir, RUN_ENTRIES)
        if found and not overwrite:
            raise MonodistillError(
                f"{run_dir} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another --output"
            )
        if state.is_main_process:
            runfolder.clear_run(run_dir, RUN_ENTRIES)
        state.wait_for_everyone()
        return None
    # Leftovers of saves that failed (a full disk, a kill) go before anything else is written.
    if state.is_main_process:
        ckpt.clean_staging(run_dir)
    state.wait_for_everyone()
    latest, skipped = ckpt.latest_intact_checkpoint(run_dir)
    if skipped and latest is None:
        problems = "; ".join(f"{path.name}: {problem}" for path, problem in skipped)
        raise MonodistillError(
            f"no intact checkpoint to resume {run_dir} from ({problems}); start it again with --overwrite"
        )
    for path, problem in skipped:
        state.print(f"skipping damaged checkpoint {path}: {problem}")
    _check_resumed_config(config, run_dir, latest)
    if latest is None:
        # Killed before its first checkpoint: it starts again from step 0, without the old records.
        if state.is_main_process:
            runfolder.clear_run(run_dir, (ckpt.METRICS_FILE, "tensorboard"))
        state.wait_for_everyone()
        state.print(f"no checkpoint in {run_dir}; starting from step 0")
    return latest


LENGTH_FIELDS = ("train.max_steps", "train.epochs")
"""Fields that set the run's length: free to change once it is finished (it is then extended)."""
FREE_FIELDS = ("output_dir", "vocab.path", "data.language", "train.compile", "train.share_teacher") + tuple(
    f"train.{name}" for name in ("save_interval", "log_interval", "eval_interval")
)
"""Fields a resumed run may change: where things are, cadence, descriptions. Data and vocabulary
are compared by content (``_check_same_data``), so a moved folder still resumes."""


def _saved_settings(saved: Path) -> dict[str, Any] | None:
    """The flat settings of a run's saved config.yaml, or None when there is none worth comparing."""
    try:
        data = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return flat_scalars(data) if isinstance(data, dict) and data else None


def _length_changed(config: DistillConfig, run_dir: Path) -> bool:
    before = _saved_settings(run_dir / "config.yaml")
    after = flat_scalars(config_to_dict(config))
    return before is not None and any(before.get(key) != after.get(key) for key in LENGTH_FIELDS)


def _check_resumed_config(config: DistillConfig, run_dir: Path, latest: Path | None) -> None:
    saved = run_dir / "config.yaml"
    before = _saved_settings(saved)
    if before is None:
        if saved.exists():
            print(f"{saved} is empty or unreadable; resuming with the settings given now")
        return
    after = flat_scalars(config_to_dict(config))
    # The length of an unfinished run sets its learning-rate schedule, so it is fixed until the run
    # ends; a finished run (or one with no checkpoint yet) may be given a new length.
    unfinished = latest is not None and not ckpt.read_state(latest).get("complete")
    free = set(FREE_FIELDS) if unfinished else {*FREE_FIELDS, *LENGTH_FIELDS}
    changed = sorted(
        key for key in before.keys() | after.keys() if key not in free and before.get(key) != after.get(key)
    )
    if changed:
        bends = [key for key in changed if key in (*LENGTH_FIELDS, "train.warmup_ratio")]
        hint = (
            f"; {', '.join(bends)} set the learning-rate schedule of an unfinished run: let it finish, "
            "then resume it with the new length"
            if bends and unfinished
            else ""
        )
        raise MonodistillError(
            f"cannot resume {run_dir}: the config differs from the saved one in {', '.join(changed)}{hint}"
        )


def _check_same_data(config: DistillConfig, latest: Path, fingerprints: dict[str, str]) -> None:
    """Refuse to resume on a corpus or vocabulary other than the one the checkpoint was trained on."""
    saved = ckpt.read_state(latest)
    what = {"corpus": f"the corpus {config.data.corpus}", "tokenizer": "the student's tokenizer (vocabulary)"}
    for key, value in fingerprints.items():
        if saved.get(key) not in (None, value):
            raise MonodistillError(
                f"{what[key]} changed since {latest} was saved (fingerprint {saved[key]} then, {value} now); "
                "resume on the data it was trained on, or start a new run in another --output"
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
