"""The ``distill`` stage end to end, for one student or several that share a teacher pass.

``distill_students`` checks every input, loads the teacher once, builds the vocabulary, the blocks
and each student, trains them together (``distill.loop.fit``) and saves each student into its own
run folder. ``run_distillation`` is that stage for one student (``monodistill distill``). Every
check that can fail runs before training starts; a finished student is not redone.

Resuming is decided from the checkpoint's own record (``trainer_state.json``): the settings it was
trained with, the length it was trained for, its global batch, and fingerprints of its corpus and
vocabulary. The run's ``config.yaml`` describes the run; it is never what a resume trusts.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from filelock import FileLock
from safetensors import SafetensorError
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill import ranks, runfolder
from monodistill.card import build_model_card
from monodistill.compatibility import check_compatible
from monodistill.config import DistillConfig, save_config
from monodistill.data.batches import BatchStream, Masking, NextToken
from monodistill.data.blocks import Blocks, build_blocks, tokenizer_fingerprint
from monodistill.distill import StudentRun, TeacherPass, fit
from monodistill.distill.random_stream import capture_rng, set_rng_state
from monodistill.distill.teacher_pass import TeacherSource
from monodistill.errors import MonodistillError, command_to_resume
from monodistill.evaluate.summary import counted_as, encoder_counts
from monodistill.families import family_of
from monodistill.internals import freeze_below, num_layers
from monodistill.losses import ModelSizes
from monodistill.resume import (
    DATA_ORDER,
    LIVE_TEACHER,
    check_resumable,
    check_same_data,
    is_done,
    length_settings,
    prepare_run_folder,
    run_settings,
    with_resolved_paths,
)
from monodistill.student import StudentShape, build_student, resolve_shape
from monodistill.student.generation import generation_config
from monodistill.student.sentence import save_sentence_transformers_config
from monodistill.sweep import check_group_fits, check_groupable
from monodistill.teacher import MLM_HEAD_TRAINED, load_teacher
from monodistill.teacher_cache import CachedTeacher, check_cacheable, open_teacher_cache
from monodistill.teacher_cache.build import cache_key


def run_distillation(config: DistillConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """``monodistill distill``: one student; returns the folder of the saved student (``RUN/student``), having
    said what the run folder takes on disk (``checkpoint.describe_disk``)."""
    student = distill_students([config], resume=resume, overwrite=overwrite)[0]
    print(ckpt.describe_disk(student.parent))
    return student


def distill_students(configs: list[DistillConfig], resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Distil students that see the same batches (``sweep.shared_teacher_groups``), one teacher pass for all.

    Each run folder is held exclusively for the whole stage, and prepared, resumed and finished as it
    would be for its student alone; finished students are not redone.

    Args:
        configs: The resolved config of each student; one output folder each.
        resume: Continue each run from its newest intact checkpoint.
        overwrite: Clear previous runs out of the output folders first.

    Returns:
        The folders of the saved students, in the order of ``configs``.

    Raises:
        MonodistillError: for bad input, before training; when students cannot share batches or do not
            fit in memory together; after training, when a student stopped on a non-finite loss (the
            others are saved first).
    """
    if any(not config.output_dir for config in configs):
        raise MonodistillError("no output folder: pass --output DIR or set output_dir")
    if len(configs) > 1:
        check_groupable(configs)
    ranks.process_state(configs[0].train.collective_timeout_minutes)
    run_dirs = [Path(config.output_dir or "") for config in configs]
    with ExitStack() as stack:
        for run_dir in run_dirs:
            stack.enter_context(runfolder.claim(run_dir, runfolder.DISTILLATION_RUN))
        latests = [
            prepare_run_folder(config, run_dir, resume, overwrite)
            for config, run_dir in zip(configs, run_dirs, strict=True)
        ]
        pending = []
        for number, (config, run_dir, latest) in enumerate(zip(configs, run_dirs, latests, strict=True)):
            if is_done(config, run_dir, latest):
                print(f"{run_dir} is already complete; the student is in {run_dir / ckpt.STUDENT_DIR}")
            else:
                pending.append(number)
        if pending:
            _distil([configs[n] for n in pending], [run_dirs[n] for n in pending], [latests[n] for n in pending])
    return [run_dir / ckpt.STUDENT_DIR for run_dir in run_dirs]


def _distil(configs: list[DistillConfig], run_dirs: list[Path], latests: list[Path | None]) -> None:
    """Distil the students of ``configs`` with one teacher pass: check them against the teacher, prepare the
    shared vocabulary and batches, build each student from the same random state, train them together, save
    each, and raise what stopped any."""
    _check_stage(configs)
    lead = configs[0]
    group = len(configs) > 1
    names = [config.student.name or run_dir.name for config, run_dir in zip(configs, run_dirs, strict=True)]
    shapes = [resolve_shape(config.student) for config in configs]  # an unknown preset fails before loading
    set_seed(lead.train.seed)

    teacher, teacher_tokenizer = load_teacher(lead.teacher)
    _check_students(configs, names, shapes, teacher, teacher_tokenizer)
    tokenizer, vocab_ids = _shared_vocabulary(configs, run_dirs, names, teacher_tokenizer)
    objective = family_of(teacher).objective  # checked against each config's (check_objective_kind)
    blocks = build_blocks(lead.data, tokenizer, lead.train.seed, objective)
    state = ranks.process_state()
    vocab_size = len(vocab_ids) if vocab_ids is not None else teacher.config.vocab_size
    masking = Masking.of(tokenizer, vocab_size, lead.data.mlm_probability) if objective == "masked" else NextToken()
    static = lead.data.static_masks or lead.teacher_cache is not None
    stream = BatchStream(blocks, masking, lead.train, state.process_index, state.num_processes, state.device, static)
    total_steps = stream.total_steps(lead.train)
    cache = None
    if lead.teacher_cache is not None:
        _check_cacheable(configs, names, shapes, teacher, len(blocks.train) * stream.block_length)
        cache = open_teacher_cache(lead, teacher, tokenizer, vocab_ids, blocks, stream, total_steps, objective)
    fingerprints = {
        "corpus": blocks.corpus_digest,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data_order": DATA_ORDER,
        "teacher_cache": cache_key(cache.manifest["settings"]) if cache is not None else LIVE_TEACHER,
    }
    for config, run_dir, latest in zip(configs, run_dirs, latests, strict=True):
        if latest is not None:
            check_same_data(config, latest, fingerprints)
            check_resumable(latest, run_dir, stream, total_steps)

    students, rng_states = _build_students(configs, teacher, blocks, vocab_ids, state.device)
    if group:
        check_group_fits(names, students, state.device)
    runs = [
        StudentRun(
            config,
            run_dir,
            student,
            total_steps,
            stream.global_batch,
            {**fingerprints, "settings": run_settings(config), "length": length_settings(config)},
            rng_state,
            teacher_config=teacher.config,
        )
        for config, run_dir, student, rng_state in zip(configs, run_dirs, students, rng_states, strict=True)
    ]
    for run, latest in zip(runs, latests, strict=True):
        if latest is not None:
            run.resume(latest)
    if state.is_main_process:
        for config, run_dir in zip(configs, run_dirs, strict=True):
            save_config(with_resolved_paths(config), run_dir / "config.yaml")
            ckpt.write_environment(run_dir, {"blocks_cache": str(blocks.cache_path), "train_blocks": len(blocks.train)})
    where = f"on {len(blocks.train):,} blocks of {lead.data.max_seq_length} tokens for {total_steps:,} steps"
    source = f"the teacher cache {cache.folder}" if cache is not None else lead.teacher.name_or_path
    _announce(state, configs, names, runs, students[0], where, source)
    teacher_counts = encoder_counts(teacher)
    try:
        teacher_pass: TeacherSource
        if cache is not None:
            teacher_pass = CachedTeacher(cache, state.device)
            del teacher  # the students are built: the teacher is read from the cache, and held nowhere
        else:
            read = frozenset().union(*(run.needs.teacher_projections for run in runs))
            teacher_pass = TeacherPass(
                teacher, vocab_ids, state.device, lead.train.compile, read, lead.train.logit_chunk
            )
        fit(teacher_pass, stream, runs)
        if state.is_main_process:
            _save_students(runs, students, teacher_counts, tokenizer, len(blocks.train))
        state.wait_for_everyone()
    finally:
        # Trackers only: the process group outlives one stage (`run` distils several groups) and is
        # closed when the command ends.
        for run in runs:
            for tracker in run.accelerator.trackers:
                tracker.finish()
    _raise_failures(runs, group)


def _check_stage(configs: list[DistillConfig]) -> None:
    """Refuse, before the teacher loads, a distillation without a corpus or one that asks to adapt first."""
    if not configs[0].data.corpus:
        raise MonodistillError("no corpus given: pass --corpus PATH_OR_HUB_ID or set data.corpus")
    if any(config.adapt.enabled for config in configs):
        raise MonodistillError(
            "adapt.enabled makes adaptation a stage of `monodistill run`; for one student, adapt first with "
            "`monodistill adapt --teacher T --corpus C --output DIR` and distil from DIR/student (--teacher)"
        )


def _check_students(
    configs: list[DistillConfig],
    names: list[str],
    shapes: list[StudentShape],
    teacher: PreTrainedModel,
    teacher_tokenizer: PreTrainedTokenizerBase,
) -> None:
    """``check_compatible`` for each student, naming the student when there are several."""
    for name, config, shape in zip(names, configs, shapes, strict=True):
        try:
            check_compatible(config, teacher, shape, teacher_tokenizer)
        except MonodistillError as error:
            raise MonodistillError(f"student {name!r}: {error}" if len(configs) > 1 else str(error)) from None


def _shared_vocabulary(
    configs: list[DistillConfig], run_dirs: list[Path], names: list[str], teacher_tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedTokenizerBase, torch.Tensor | None]:
    """The students' one tokenizer (and its ids in the teacher's vocabulary when trimmed); students whose
    vocabularies differ cannot share batches."""
    vocabularies = [
        resolve_vocabulary(config, teacher_tokenizer, run_dir)
        for config, run_dir in zip(configs, run_dirs, strict=True)
    ]
    if len({tokenizer_fingerprint(other) for other, _ in vocabularies}) > 1:
        raise MonodistillError(f"students {', '.join(names)} have different vocabularies; distil them apart")
    return vocabularies[0]


def _check_cacheable(
    configs: list[DistillConfig], names: list[str], shapes: list[StudentShape], teacher: PreTrainedModel, tokens: int
) -> None:
    """``check_cacheable`` for each student, naming the student when there are several."""
    for name, config, shape in zip(names, configs, shapes, strict=True):
        sizes = ModelSizes(
            shape.num_layers, num_layers(teacher), shape.num_heads, int(teacher.config.num_attention_heads)
        )
        try:
            check_cacheable(config, sizes, int(teacher.config.hidden_size), tokens)
        except MonodistillError as error:
            raise MonodistillError(f"student {name!r}: {error}" if len(configs) > 1 else str(error)) from None


def _build_students(
    configs: list[DistillConfig],
    teacher: PreTrainedModel,
    blocks: Blocks,
    vocab_ids: torch.Tensor | None,
    device: torch.device,
) -> tuple[list[PreTrainedModel], list[dict[str, torch.Tensor]]]:
    """Each student, built (and frozen below its trainable layers), and the random state it trains from.

    Each student starts from the random state it would have alone: the one after the shared preparation,
    then its own build (which seeds its initialisation).
    """
    shared_state = capture_rng(device)
    sample = (
        initialisation_sample(blocks, vocab_ids) if any(c.student.init == "teacher-layers" for c in configs) else None
    )
    students, rng_states = [], []
    for config in configs:
        set_rng_state(shared_state)
        student = build_student(
            config.student, _float32_weights(config, teacher), vocab_ids, config.train.seed, sample_ids=sample
        )
        if config.student.trainable_layers is not None:
            freeze_below(student, config.student.trainable_layers)
        students.append(student)
        rng_states.append(capture_rng(device))
    return students, rng_states


def _announce(
    state: PartialState,
    configs: list[DistillConfig],
    names: list[str],
    runs: list[StudentRun],
    student: PreTrainedModel,
    where: str,
    teacher: str,
) -> None:
    """Say what is distilled from what (``teacher``: the teacher, or its cache), on what (``where``): the students of
    a group, or one student's size."""
    if len(configs) > 1:
        state.print(
            f"distilling {len(configs)} students ({', '.join(names)}) with one teacher pass of {teacher} {where}"
        )
        return
    # Counted as the card, the report and the summary count them.
    size = f"({encoder_counts(student)['total']:,} parameters: {counted_as(student)})"
    if not runs[0].needs.teacher:  # its own LM loss alone (adaptation, the from-scratch control): no teacher logits
        own = "masked-LM" if family_of(student).objective == "masked" else "next-token cross-entropy"
        tokenizer = configs[0].teacher.name_or_path
        state.print(f"training {runs[0].name} {size} on its {own} alone, with {tokenizer}'s tokenizer, {where}")
    else:
        state.print(f"distilling {runs[0].name} {size} from {teacher} {where}")


def _save_students(
    runs: list[StudentRun],
    students: list[PreTrainedModel],
    teacher_counts: dict[str, int],
    tokenizer: PreTrainedTokenizerBase,
    num_blocks: int,
) -> None:
    """Save every student that finished, with its model card, into its run folder's ``student/``.

    The card describes the student's objective as its family's adapter gives it (masked or causal), not the
    config's ``objective``, which may say ``auto``."""
    for student, run in zip(students, runs, strict=True):
        if run.error is not None:
            continue
        assert run.final_metrics is not None
        config = run.config
        described = replace(
            config, student=replace(config.student, name=run.name), objective=family_of(student).objective
        )
        card = build_model_card(
            with_resolved_paths(described),
            run.final_metrics,
            encoder_counts(student),
            teacher_counts,
            num_blocks,
        )
        student_dir, head = run.run_dir / ckpt.STUDENT_DIR, config.loss.trains_mlm_head()
        save_student(student_dir, run.unwrapped_student(), tokenizer, card, head, config.data.max_seq_length)


def _raise_failures(runs: list[StudentRun], group: bool) -> None:
    """Raise what stopped a student: its own error when it is alone; for a group, one error naming each
    student that stopped and where the others were saved."""
    failed = [run for run in runs if run.error is not None]
    if not group and runs[0].error is not None:
        raise runs[0].error
    if failed:
        saved = [str(run.run_dir / ckpt.STUDENT_DIR) for run in runs if run.error is None]
        kept = f"; the others were saved: {', '.join(saved)}" if saved else ""
        messages = " | ".join(f"{run.name}: {run.error}" for run in failed)
        raise MonodistillError(f"{len(failed)} of {len(runs)} students stopped: {messages}{kept}")


INIT_SAMPLE_BLOCKS = 128
"""Training blocks whose teacher activations set a narrow student's teacher-layers reduction (about 16k tokens)."""


def initialisation_sample(blocks: Blocks, vocab_ids: torch.Tensor | None) -> torch.Tensor:
    """The first training blocks in the teacher's ids: what ``student.init=teacher-layers`` measures the teacher on
    when the student is narrower (a student as wide as the teacher copies its weights and ignores them)."""
    ids = blocks.train[: min(INIT_SAMPLE_BLOCKS, len(blocks.train))]["input_ids"]
    return vocab_ids[ids] if vocab_ids is not None else ids


def resolve_vocabulary(
    config: DistillConfig, teacher_tokenizer: PreTrainedTokenizerBase, run_dir: Path
) -> tuple[PreTrainedTokenizerBase, torch.Tensor | None]:
    """The student's tokenizer, and its ids in the teacher's vocabulary when trimmed."""
    if not config.vocab.active:
        return teacher_tokenizer, None
    from monodistill.vocab import load_trimmed_vocab

    path = Path(config.vocab.path) if config.vocab.path else run_dir / "vocab"
    if config.vocab.path is None:
        ensure_vocabulary(config, path)
    if not path.is_dir():
        raise MonodistillError(f"vocab.path {path} does not exist; build it with `monodistill vocab`")
    tokenizer, id_map = load_trimmed_vocab(path, teacher_tokenizer)
    return tokenizer, torch.tensor(id_map, dtype=torch.long)


def ensure_vocabulary(config: DistillConfig, path: Path) -> None:
    """Trim the vocabulary into ``path`` unless it is there already.

    One process builds while any other (a rank of the same job, another run) waits on the folder's
    file lock, however long counting takes, and then reads what was written.
    """
    from monodistill.vocab.folder import ID_MAP_FILE, run_vocab

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if not (path / ID_MAP_FILE).is_file():
            run_vocab(config, path)


def _float32_weights(config: DistillConfig, teacher: PreTrainedModel) -> PreTrainedModel:
    """The teacher whose weights a student copies: the stored float32 weights, not a bf16/fp16 runtime copy."""
    if config.student.init == "random" or teacher.dtype == torch.float32:
        return teacher
    return load_teacher(replace(config.teacher, dtype="float32"))[0]


def save_student(
    path: Path,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    card: str,
    mlm_head_trained: bool = True,
    max_seq_length: int = 512,
) -> None:
    """Write the student, its tokenizer (with its chat template, if any) and model card atomically, loadable with
    ``from_pretrained``. Beside an encoder, a sentence-transformers configuration (mean pooling over
    ``max_seq_length`` tokens, the length it was distilled on: ``student.sentence``); a decoder (its family's
    objective is causal) gets a ``generation_config.json`` in its own token ids instead (``student.generation``),
    and loads with ``AutoModelForCausalLM`` and in ``pipeline("text-generation")``.

    A student whose loss never trained its masked-LM head keeps it, so that every student loads, resumes,
    evaluates and exports alike (the head is a transform and a bias: its decoder is the tied embedding), and
    says so in config.json (``teacher.MLM_HEAD_TRAINED``: false), which ``--teacher`` refuses; its card
    describes it as an encoder (``card.front_matter``).

    A manifest of every file (``checkpoint.MODEL_MANIFEST``) is written last, so that a damaged or
    half-copied student is never taken for a finished one.

    Raises:
        MonodistillError: when it cannot be written (a full disk above all), after removing the partial
            folder; the final checkpoint it comes from is intact, and the command to save it again is named.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with ckpt.atomic_dir(path) as staging:
            if not mlm_head_trained:
                setattr(student.config, MLM_HEAD_TRAINED, False)
            causal = family_of(student).objective == "causal"
            if causal:
                student.generation_config = generation_config(student, tokenizer)
            student.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            if not causal:
                save_sentence_transformers_config(staging, student, max_seq_length)
            (staging / "README.md").write_text(card)
            ckpt.write_manifest(staging, ckpt.MODEL_MANIFEST, leave_out=("README.md",))
    except (OSError, RuntimeError, SafetensorError) as error:  # safetensors reports a full disk as its own error
        raise MonodistillError(
            f"could not save the student in {path}: {ckpt.describe_write_error(error, path.parent)}; the partial "
            f"folder was removed and the final checkpoint is intact: make room, then run `{command_to_resume()}` "
            "to save it"
        ) from None
