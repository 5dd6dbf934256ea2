"""Whether and how a distillation run folder continues, decided from what its checkpoint records.

A checkpoint's ``trainer_state.json`` holds the settings the run was trained with (local paths
resolved), the length it was trained for, its global batch and process count, and fingerprints of
its corpus and vocabulary. Resuming compares what is asked now with that record, never with the
folder's ``config.yaml``, which an interrupted run may have rewritten before it died: a run is done
only when its checkpoint says it finished the length now asked for, and it resumes only with the
settings, data and global batch it was trained with (``FREE_FIELDS`` aside).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from monodistill import checkpoint as ckpt
from monodistill import ranks, runfolder
from monodistill.config import DistillConfig, config_to_dict, flatten
from monodistill.data.batches import BatchStream
from monodistill.errors import MonodistillError
from monodistill.teacher import is_local_reference

RUN_ENTRIES = (
    "config.yaml",
    "environment.json",
    ckpt.METRICS_FILE,
    ckpt.CHECKPOINTS,
    ckpt.STUDENT_DIR,
    "tensorboard",
    "vocab",
)
"""What a distillation run writes into its folder (cleared by ``--overwrite``)."""
PREPARED_ENTRIES = ("vocab",)
"""What a run prepares before it trains: left by a command refused before training (a corpus too small
for two blocks, say), it does not make the folder hold a run, and a fresh start clears it."""

LIVE_TEACHER = "live"
"""The ``teacher_cache`` fingerprint of a run that reads the teacher live (a cached run records its cache's key)."""
DATA_ORDER = "global-batch-v1"
"""How batches and masks are drawn (``data.batches``); a checkpoint made under another order cannot continue."""

LENGTH_FIELDS = ("train.max_steps", "train.epochs")
"""Fields that set the run's length: free to change once it is finished (it is then extended)."""
FREE_FIELDS = (
    "output_dir",
    "teacher_cache",
    "vocab.path",
    "data.corpus",
    "data.cache_dir",
    "data.num_proc",
    "data.language",
    "train.compile",
    "train.share_teacher",
    "train.collective_timeout_minutes",
    "train.keep_checkpoints",
    "train.save_interval",
    "train.log_interval",
    "train.eval_interval",
    "train.batch_size",
    "train.gradient_accumulation_steps",
)
"""Fields a resumed run may change: where things are, cadence, descriptions. The corpus and the
vocabulary are compared by content (``check_same_data``), so a moved corpus still resumes; the batch
fields are compared as the global batch they give with the process count (``check_resumable``)."""


def length_settings(config: DistillConfig) -> dict[str, Any]:
    """The settings that fix a run's length, as a checkpoint records them."""
    return {"max_steps": config.train.max_steps, "epochs": config.train.epochs}


def is_done(config: DistillConfig, run_dir: Path, latest: Path | None) -> bool:
    """Whether the run finished the length ``config`` gives (by its checkpoint's own record) and saved its student."""
    if latest is None:
        return False
    state = ckpt.read_state(latest)
    if not (state.get("complete") and state.get("length") == length_settings(config)):
        return False
    student = run_dir / ckpt.STUDENT_DIR
    problem = ckpt.model_folder_problem(student) if student.is_dir() else "it is missing"
    if problem is not None:
        ranks.process_state().print(
            f"the saved student in {student} is damaged or incomplete ({problem}); "
            "saving it again from the final checkpoint"
        )
    return problem is None


def prepare_run_folder(config: DistillConfig, run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Clear (``overwrite``), refuse (a run there without ``resume``) or check the folder for resuming.

    Damaged checkpoints are moved aside (``damaged-step-N``), so that nothing later takes them for good.

    Returns:
        The verified checkpoint to resume from, if any.
    """
    state = ranks.process_state()
    if overwrite or not resume:
        found = runfolder.holds_run(run_dir, [entry for entry in RUN_ENTRIES if entry not in PREPARED_ENTRIES])
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
        if state.is_main_process:
            print(f"skipping damaged checkpoint {path}: {problem}; moved it to {ckpt.set_aside(path)}")
    state.wait_for_everyone()
    if latest is None:
        # Killed before its first checkpoint: it starts again from step 0, without the old records.
        if state.is_main_process:
            runfolder.clear_run(run_dir, (ckpt.METRICS_FILE, "tensorboard"))
        state.wait_for_everyone()
        state.print(f"no checkpoint in {run_dir}; starting from step 0")
        return None
    check_resumed_settings(config, run_dir, latest)
    return latest


def with_resolved_paths(config: DistillConfig) -> DistillConfig:
    """``config`` with its local teacher, corpus and vocabulary as absolute paths, readable from any folder.

    What a run folder records: a relative spelling would mean another file from another working folder.
    """
    resolved = {}
    for section, name in (("teacher", "name_or_path"), ("data", "corpus"), ("vocab", "path")):
        value = getattr(getattr(config, section), name)
        if isinstance(value, str) and is_local_reference(value):
            value = str(Path(value).expanduser().resolve())
        resolved[section] = replace(getattr(config, section), **{name: value})
    return replace(config, **resolved)


def run_settings(config: DistillConfig) -> dict[str, Any]:
    """The flat settings a run is compared by, local paths resolved (so that any spelling of one compares equal)."""
    return flatten(config_to_dict(with_resolved_paths(config)))


def check_resumed_settings(config: DistillConfig, run_dir: Path, latest: Path) -> None:
    """Refuse to resume with settings other than those the checkpoint was trained with (``FREE_FIELDS`` aside)."""
    state = ckpt.read_state(latest)
    if state.get("data_order") != DATA_ORDER:
        raise MonodistillError(
            f"{latest} was written by an earlier monodistill, which drew batches and masks in another order: "
            "resuming it here would not continue the same run. Finish it with the version that started it, "
            "or start again with --overwrite"
        )
    saved, given = state["settings"], run_settings(config)
    # The length of an unfinished run sets its learning-rate schedule, so it is fixed until the run
    # ends; a finished run may be given a new length.
    unfinished = not state["complete"]
    free = set(FREE_FIELDS) if unfinished else {*FREE_FIELDS, *LENGTH_FIELDS}
    # A setting added since the checkpoint was written is no change where it keeps its default (the old behaviour).
    defaults = flatten(config_to_dict(DistillConfig()))
    saved = {**{key: defaults[key] for key in given.keys() - saved.keys() if key in defaults}, **saved}
    changed = sorted(key for key in saved.keys() | given.keys() if key not in free and saved.get(key) != given.get(key))
    if not changed:
        return
    values = ", ".join(f"{key} ({saved.get(key)!r} then, {given.get(key)!r} now)" for key in changed)
    bends = [key for key in changed if key in (*LENGTH_FIELDS, "train.warmup_ratio")]
    hint = (
        f"; {', '.join(bends)} set the learning-rate schedule of an unfinished run: let it finish, "
        "then resume it with the new length"
        if bends and unfinished
        else "; resume with the settings it was trained with, or start a new run in another --output"
    )
    raise MonodistillError(
        f"cannot resume {run_dir}: the config differs from the one {latest.name} was trained with in {values}{hint}"
    )


def check_resumable(latest: Path, run_dir: Path, stream: BatchStream, total_steps: int) -> None:
    """Refuse a run trained past the length its config now gives, or one whose global batch this launch changes."""
    state = ckpt.read_state(latest)
    if state["step"] > total_steps:
        raise MonodistillError(
            f"{run_dir} has already trained {state['step']} steps, more than the {total_steps} "
            "that train.max_steps/epochs now give; raise them, or start a new run in another --output"
        )
    if state["global_batch"] != stream.global_batch:
        processes = state["processes"]
        per_process = state["global_batch"] // processes
        settings = state["settings"]
        raise MonodistillError(
            f"{run_dir} was trained with {state['global_batch']} blocks per optimizer step ({processes} processes x "
            f"train.batch_size {settings['train.batch_size']} x train.gradient_accumulation_steps "
            f"{settings['train.gradient_accumulation_steps']}); this launch gives {stream.global_batch} "
            f"({stream.processes} x {stream.batch_size} x {stream.accumulation}), which would change its data "
            f"order and schedule. Resume it with {processes} processes (torchrun --nproc_per_node {processes}), "
            f"or with train.batch_size x train.gradient_accumulation_steps = {per_process * processes} "
            "divided by the process count"
        )
    if state["processes"] != stream.processes:
        # Dropout is drawn per micro-batch place in the step: the same places need the same micro-batch size.
        trained_batch = state["settings"]["train.batch_size"]
        same = "the same data order, masks, dropout and schedule"
        if trained_batch != stream.batch_size:
            same = (
                f"the same data order, masks and schedule; dropout is drawn otherwise (train.batch_size "
                f"{trained_batch} then, {stream.batch_size} now: keep it, and set the accumulation, for the same)"
            )
        print(
            f"resuming {run_dir} on {stream.processes} processes (trained on {state['processes']}) with the same "
            f"{stream.global_batch} blocks per step: {same}"
        )


def check_same_data(config: DistillConfig, latest: Path, fingerprints: dict[str, str]) -> None:
    """Refuse to resume on a corpus or vocabulary other than the one the checkpoint was trained on."""
    saved = ckpt.read_state(latest)
    what = {
        "corpus": f"the corpus {config.data.corpus}",
        "tokenizer": "the student's tokenizer (vocabulary)",
        "teacher_cache": "the teacher's outputs (read live, or from which teacher cache)",
    }
    for key in what:
        if saved.get(key) not in (None, fingerprints[key]):
            raise MonodistillError(
                f"{what[key]} changed since {latest} was saved (fingerprint {saved[key]} then, {fingerprints[key]} "
                "now); resume on the data it was trained on, or start a new run in another --output"
            )
