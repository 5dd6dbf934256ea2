"""The distillation loop, for one student or several that see the same batches.

Per optimizer step: this rank's masked micro-batches (``BatchStream.step``), one teacher forward per
micro-batch for every student (``TeacherPass``), each student's forward and backward on it
(``StudentRun.train_micro``), then each student's update, log, validation and checkpoint. Students
validating at the same step share the teacher's validation pass too.

Every decision that ends or interrupts training is taken by all ranks together: a non-finite loss
on any rank stops that student on every rank (before its backward pass, whose all-reduce the other
ranks would otherwise wait in forever), and a stop signal delivered to any rank saves every student
and stops all ranks at the same step.
"""

from __future__ import annotations

import functools
import operator
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from monodistill import checkpoint as ckpt
from monodistill import ranks
from monodistill.data.batches import BatchStream
from monodistill.distill.student_run import StudentRun
from monodistill.distill.teacher_pass import TeacherSource
from monodistill.distill.validation import validate
from monodistill.errors import Interrupted, command_to_resume
from monodistill.progress import Progress, progress_bar


def fit(teacher: TeacherSource, stream: BatchStream, runs: list[StudentRun]) -> None:
    """Train every student to its last step, validating, logging and checkpointing on its own cadence.

    Students resumed behind the others first catch up alone, on the same batches, so that the shared
    loop runs them in step. A student whose loss turns non-finite stops alone (``run.error``); the
    others go on. Afterwards every surviving student has its ``final_metrics``.

    Raises:
        Interrupted: after a stop signal, once every unfinished student is saved.
    """
    with stop_requests() as stop:
        lead = max(run.step for run in runs)
        for run in runs:
            if run.step < lead:
                train(teacher, stream, [run], lead, stop)
        train(teacher, stream, runs, runs[0].total_steps, stop)
    # A student resumed from its last checkpoint (killed before its student was saved) needs them for
    # its model card; its log holds them already (validated, logged, then checkpointed), so they are not
    # logged again. Every rank takes this decision alike: it depends on the checkpoint's step alone.
    unscored = [run for run in runs if run.error is None and run.final_metrics is None]
    for run, metrics in zip(unscored, validate(teacher, stream, unscored) if unscored else [], strict=True):
        run.final_metrics = metrics


def train(teacher: TeacherSource, stream: BatchStream, runs: list[StudentRun], end: int, stop: StopRequest) -> None:
    """Take ``runs`` to step ``end``, validating, logging and checkpointing.

    The students still training must be at the same step; one stopped earlier (``run.error``, perhaps
    while catching up, and so behind) is skipped and sets nothing, not even where the loop starts.
    """
    training = [run for run in runs if run.error is None]
    if not training:
        return
    start = training[0].step
    assert all(run.step == start for run in training), "students to train together are at different steps: " + (
        ", ".join(f"{run.name} at step {run.step}" for run in training)
    )
    with progress(runs, start, end) as bar:
        for step in range(start, end):
            active = [run for run in runs if run.error is None]
            if not active:
                return
            metrics = train_step(teacher, stream, active, step)
            # The step is done before it is validated: the bar says so while validation runs below it.
            if len(metrics) == 1:  # the loss and the terms the recipe weighs (TinyBERT's: hidden, attention)
                run, values = next(iter(metrics.items()))
                shown = ("loss", *run.config.loss.trained_parts())
                bar.set_postfix({name: f"{values[name]:.3f}" for name in shown if name in values}, refresh=False)
            bar.update(1)
            # Students validating at this step share the teacher's validation pass too. Validation and
            # checkpoints are not training steps: their time stays out of the bar's rate and ETA.
            with bar.paused():
                due = [run for run in metrics if run.validates_now()]
                validations = dict(zip(due, validate(teacher, stream, due) if due else [], strict=True))
                for run in metrics:
                    run.record_step(metrics[run], validations.get(run))
                    if run in validations:
                        bar.write(describe(run, validations[run], len(runs) > 1))
            for run in active:
                if run.error is not None and len(runs) > 1:
                    bar.write(f"student {run.name}: {run.error}; the other students go on")
            if ranks.any_rank(stop.signal is not None):
                unfinished = [run for run in runs if run.error is None and run.step < run.total_steps]
                for run in unfinished:
                    run.save_before_stop()
                raise interrupted(stop, unfinished)


def train_step(
    teacher: TeacherSource, stream: BatchStream, runs: list[StudentRun], step: int
) -> dict[StudentRun, dict[str, float]]:
    """Optimizer step ``step`` of every run: one teacher forward per micro-batch for all of them.

    Returns:
        The step's metrics of each run that took it (a run whose loss turned non-finite has ``error`` set).
    """
    needs = functools.reduce(operator.or_, (run.needs for run in runs))
    started = time.perf_counter()
    micro_batches = stream.step(step)
    metrics: dict[StudentRun, dict[str, float]] = {}
    for number, batch in enumerate(micro_batches):
        outputs = teacher(batch, needs) if needs.teacher else None  # only what some student's loss reads
        last = number == len(micro_batches) - 1
        for run in runs:
            if run.error is None:
                run.train_micro(batch, outputs, last)
            if last and run.error is None:
                # Stepped at once, so that only one student's gradients are held at a time.
                metrics[run] = run.optimizer_step()
    # The group's step time: what the sweep pays per step, shared by all its students.
    throughput = stream.global_batch * stream.block_length / (time.perf_counter() - started)
    for values in metrics.values():
        values["tokens_per_second"] = throughput
    return metrics


def describe(run: StudentRun, validation: dict[str, float], named: bool) -> str:
    """The line shown for a validation: a token id as an integer."""
    prefix = f"{run.name} " if named else ""
    shown = (f"{name}={int(value) if name.endswith('_id') else f'{value:.4f}'}" for name, value in validation.items())
    return f"{prefix}step {run.step}: " + ", ".join(shown)


@contextmanager
def progress(runs: list[StudentRun], start: int, end: int) -> Iterator[Progress]:
    """A progress bar over optimizer steps, with a live loss and an ETA, on the main rank only."""
    if len(runs) > 1:
        desc = f"distilling {len(runs)} students"
    else:  # masked-LM alone (teacher adaptation) runs no teacher: it trains, it does not distil
        desc = "distilling" if runs[0].needs.teacher else "training on masked-LM"
    bar = progress_bar(
        total=end,
        initial=start,
        desc=desc,
        unit="step",
        disable=not ranks.process_state().is_main_process,
    )
    try:
        yield bar
    finally:
        bar.close()


class StopRequest:
    """The signal that asked this rank to stop, if any (SIGTERM from a scheduler, Ctrl-C's SIGINT)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # a second signal: stop now, without waiting for the checkpoint
        self.signal = signum


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """SIGTERM and SIGINT ask the loop to save and stop after the current step; a second one stops at once."""
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted(stop: StopRequest, runs: list[StudentRun]) -> Interrupted:
    """The error that ends an interrupted run, saying where each student was saved."""
    received = f"signal {stop.signal}" if stop.signal else "a signal sent to another rank"
    if len(runs) == 1:
        run = runs[0]
        where = f"at step {run.step}/{run.total_steps}; checkpoint saved in {ckpt.latest_checkpoint(run.run_dir)}"
    else:
        saved = ", ".join(f"{run.name} step {run.step} in {ckpt.latest_checkpoint(run.run_dir)}" for run in runs)
        where = f"with checkpoints saved for {saved}"
    return Interrupted(f"stopped by {received} {where}; to continue, run `{command_to_resume()}`", signal=stop.signal)
