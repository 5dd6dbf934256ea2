"""The distillation loop: ``Distiller.fit -> fit_together -> train_step_together -> student_step``, with
``evaluate`` and ``save_checkpoint``.

Both LM heads run only at masked positions, so no (B, T, V) tensor is ever built. The teacher is
frozen where it is loaded and called under ``torch.inference_mode()``. Data order and masks are pure
functions of (seed, step), and Accelerate checkpoints hold model, optimizer, scheduler and RNG
state, so a resumed run ends with the same weights as an uninterrupted one.

Under several processes every decision that ends or interrupts training is taken by all ranks
together: a non-finite loss on any rank (checked before the backward pass, whose gradient
all-reduce the other ranks would otherwise wait in forever) and a stop signal delivered to any rank
are reduced across ranks, so every rank saves and stops at the same step.

The loop (``fit_together``) is written once for a list of students: ``Distiller.fit`` is that loop
for one. Several students that see the same batches share one teacher pass: per micro-batch (and
per validation batch) the teacher runs once on one set of masked positions, then every student runs
its forward and backward. Each student stays a ``Distiller`` of its own (optimizer, scheduler,
checkpoints, metrics, TensorBoard run, folder) and draws dropout from its own random stream,
swapped in around everything it does and saved in its checkpoints, so a student trained in a group
ends with the weights it would have had alone.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig, config_to_dict
from monodistill.data.blocks import Blocks
from monodistill.data.masking import IGNORE_INDEX, mask_tokens, step_generator
from monodistill.errors import MonodistillError
from monodistill.losses import distillation_loss, kl_divergence
from monodistill.teacher import MaskedLMHead, encoder, mlm_head


class Interrupted(MonodistillError):
    """The run was stopped by a signal after saving a checkpoint.

    ``signal`` is the number of the signal this process received, or ``None`` when another rank
    received it; the CLI exits with 130 for SIGINT, as a shell does for Ctrl-C.
    """

    def __init__(self, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal


class NonFiniteLoss(MonodistillError):
    """A student's loss was NaN or infinite; in a group only that student stops."""


class StudentWithHead(nn.Module):
    """The student as one module whose forward scores masked positions only.

    Wrapping matters for multi-GPU: DDP synchronises gradients only through the forward of the
    module it wraps, so the masked-position head must be part of that forward.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.head = mlm_head(model)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, return_hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) ids and (B, T) bool positions -> (N, V) logits and optionally (B*T, H) hidden states."""
        hidden = encoder(self.model)(input_ids=input_ids).last_hidden_state  # (B, T, H)
        logits = self.head.logits(hidden[positions])  # (N, V)
        return logits, hidden.flatten(0, 1) if return_hidden else None


class Distiller:
    """Distils ``student`` from the frozen ``teacher`` on packed blocks; see ``fit``."""

    def __init__(
        self,
        config: DistillConfig,
        run_dir: Path,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        special_ids: list[int],
        mask_token_id: int,
        blocks: Blocks,
        vocab_ids: torch.Tensor | None = None,
    ) -> None:
        self.config = config
        self.train_config = config.train
        self.run_dir = run_dir
        self.blocks = blocks
        # The Accelerator's settings are a process-wide singleton, but one process may distil several
        # students (`monodistill run`), each with its own precision: start them afresh, keeping the
        # process group (Accelerate offers no public call for this).
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision=config.train.mixed_precision, log_with="tensorboard", project_dir=str(run_dir)
        )
        device = self.accelerator.device
        self.mask_token_id = mask_token_id
        self.vocab_size = student.config.vocab_size
        self.special_ids = torch.tensor(sorted(set(special_ids)), device=device)
        # Student id -> teacher id, when the vocabulary is trimmed.
        self.vocab_ids = vocab_ids.to(device) if vocab_ids is not None else None

        self.teacher = teacher.to(device)
        self.teacher_encoder = encoder(teacher)
        if config.train.compile:
            # In place: parameter names, checkpoints and the saved student stay those of the plain model.
            self.teacher_encoder.compile()
            encoder(student).compile()
        self.teacher_full_head = mlm_head(teacher)
        # Sliced once: the teacher's distribution over the kept vocabulary, renormalised by softmax.
        self.teacher_head: MaskedLMHead = (
            self.teacher_full_head.restricted(self.vocab_ids) if self.vocab_ids is not None else self.teacher_full_head
        )

        self.micro_batches_per_epoch, self.total_steps = self._schedule_length()
        # The fused kernel updates every parameter in one pass instead of a loop of per-tensor kernels,
        # which matters when a 119k-row embedding matrix is most of the student.
        optimizer = torch.optim.AdamW(
            _parameter_groups(student, config.train.weight_decay),
            lr=config.train.learning_rate,
            fused=device.type in ("cuda", "cpu"),
        )
        self.scheduler = get_linear_schedule_with_warmup(
            optimizer, round(config.train.warmup_ratio * self.total_steps), self.total_steps
        )
        self.student, self.optimizer = self.accelerator.prepare(StudentWithHead(student), optimizer)
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.step = 0
        self.state_extras: dict[str, Any] = {}
        """Saved with every checkpoint's step (e.g. the corpus fingerprint, checked on resume)."""
        # One name for the staging folder of every rank of this job, unlike any other job's.
        self._job_id = broadcast_object_list([os.getpid()])[0]
        self._epoch_orders: dict[int, torch.Tensor] = {}
        self._stop_signal: int | None = None
        self.name = config.student.name or run_dir.name
        self.rng_state: dict[str, torch.Tensor] | None = None
        """This student's own random stream (dropout) when it trains in a group; None: the global one."""
        # Train sums since the last log line, and how many steps they hold (fewer right after a resume).
        self._running: dict[str, float] = {}
        self._running_steps = 0

    # ----------------------------------------------------------------------------------- schedule

    def _schedule_length(self) -> tuple[int, int]:
        """Micro-batches per epoch per process (a multiple of accumulation) and total optimizer steps."""
        train = self.train_config
        processes = self.accelerator.num_processes
        per_step = train.batch_size * train.gradient_accumulation_steps * processes
        steps_per_epoch = len(self.blocks.train) // per_step
        if steps_per_epoch == 0:
            raise MonodistillError(
                f"only {len(self.blocks.train)} training blocks, fewer than one optimizer step "
                f"(train.batch_size x gradient_accumulation_steps x processes = {per_step}); "
                "lower train.batch_size or data.max_seq_length, or add text"
            )
        total = train.max_steps or math.ceil(train.epochs * steps_per_epoch)
        return steps_per_epoch * train.gradient_accumulation_steps, total

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's block indices for an epoch: a seeded permutation, sharded by rank."""
        if epoch not in self._epoch_orders:
            generator = torch.Generator().manual_seed(self.train_config.seed * 10_007 + epoch)
            order = torch.randperm(len(self.blocks.train), generator=generator)
            rank, processes = self.accelerator.process_index, self.accelerator.num_processes
            self._epoch_orders = {epoch: order[rank::processes]}
        return self._epoch_orders[epoch]

    def micro_batch(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th micro-batch of this process, counted from the start of training."""
        epoch, offset = divmod(index, self.micro_batches_per_epoch)
        size = self.train_config.batch_size
        indices = self._epoch_order(epoch)[offset * size : (offset + 1) * size]
        rows = self.blocks.train[indices.tolist()]
        return {name: tensor.to(self.accelerator.device) for name, tensor in rows.items()}

    # ----------------------------------------------------------------------------------- training

    def fit(self, resume_from: Path | None = None) -> dict[str, float]:
        """Train to ``total_steps``, validating, logging and checkpointing; returns the final validation metrics.

        Args:
            resume_from: A verified checkpoint of this run to continue from
                (``checkpoint.latest_intact_checkpoint``).
        """
        outcome = fit_together([self], [resume_from])[0]
        if isinstance(outcome, MonodistillError):
            raise outcome
        return outcome

    def _init_trackers(self) -> None:
        self.accelerator.init_trackers("tensorboard", config=flat_scalars(config_to_dict(self.config)))

    def _after_step(
        self, parts: dict[str, float], progress: Any, prefix: str = "", validation: dict[str, float] | None = None
    ) -> None:
        """Log, record this step's validation metrics (when it validated) and checkpoint after an optimizer step."""
        for name, value in parts.items():
            self._running[name] = self._running.get(name, 0.0) + value
        self._running_steps += 1
        if self.step % self.train_config.log_interval == 0 or self.step == self.total_steps:
            self._log("train", {name: value / self._running_steps for name, value in self._running.items()})
            self._running, self._running_steps = {}, 0
        if validation is not None:
            self._log("validation", validation)
            if self.accelerator.is_main_process:
                progress.write(f"{prefix}step {self.step}: " + ", ".join(f"{k}={v:.4f}" for k, v in validation.items()))
        if self.step % self.train_config.save_interval == 0 or self.step == self.total_steps:
            self.save_checkpoint()

    def _save_before_stop(self) -> None:
        """Checkpoint the current step before stopping on a signal, unless the cadence just did."""
        if self.step % self.train_config.save_interval and self.step != self.total_steps:
            self.save_checkpoint()

    def _interrupted(self, distillers: list[Distiller]) -> Interrupted:
        received = f"signal {self._stop_signal}" if self._stop_signal else "a signal sent to another rank"
        if len(distillers) == 1:
            latest = ckpt.latest_checkpoint(self.run_dir)
            where = f"at step {self.step}/{self.total_steps}; checkpoint saved in {latest}"
        else:
            saved = ", ".join(f"{d.name} step {d.step} in {ckpt.latest_checkpoint(d.run_dir)}" for d in distillers)
            where = f"with checkpoints saved for {saved}"
        return Interrupted(
            f"stopped by {received} {where}; to continue, run the same command again "
            "(`distill` with --resume; `run` resumes by itself)",
            signal=self._stop_signal,
        )

    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns averaged loss parts."""
        result = train_step_together([self])[0]
        if isinstance(result, MonodistillError):
            raise result
        return result

    def student_step(
        self,
        masked_ids: torch.Tensor,
        positions: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_hidden: torch.Tensor | None,
        last_micro: bool,
    ) -> dict[str, torch.Tensor]:
        """This student's forward and backward on one masked micro-batch, given the teacher's outputs.

        Raises:
            NonFiniteLoss: before the backward pass, on every rank, when any rank's loss is not finite.
        """
        accumulation = self.train_config.gradient_accumulation_steps
        with self.accelerator.no_sync(self.student) if not last_micro else nullcontext():
            parts = self.student_loss(masked_ids, positions, targets, teacher_logits, teacher_hidden)
            loss = parts["loss"]
            failed_ranks = self._ranks_where(not bool(torch.isfinite(loss)))
            if failed_ranks:
                self._fail_non_finite(parts, failed_ranks)
            self.accelerator.backward(loss / accumulation)
        return parts

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step the optimizer and the schedule, clear gradients; returns grad norm and learning rate."""
        totals: dict[str, float] = {}
        if self.train_config.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(self.student.parameters(), self.train_config.max_grad_norm)
            totals["grad_norm"] = float(grad_norm)
        totals["learning_rate"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        # With fp16 the grad scaler skips steps whose gradients overflowed; the schedule must not advance
        # on those either (as transformers' Trainer does).
        if not self.accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return totals

    def student_loss(
        self,
        masked_ids: torch.Tensor,
        positions: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_hidden: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The student at the masked positions against the teacher's (N, V) logits and (N,) targets."""
        with_hidden = self.config.loss.alpha_cosine > 0
        student_logits, student_hidden = self.student(masked_ids, positions, return_hidden=with_hidden)
        return distillation_loss(
            self.config.loss,
            student_logits,
            teacher_logits,
            targets,
            student_hidden,
            teacher_hidden if with_hidden else None,
        )

    def masked_micro_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``index``-th micro-batch of this process, masked as a pure function of (seed, index, rank)."""
        batch = self.micro_batch(index)
        generator = step_generator(
            self.train_config.seed, index, self.accelerator.process_index, self.accelerator.device
        )
        word_starts = batch["word_starts"].bool() if "word_starts" in batch else None
        return self.mask(batch["input_ids"], generator, word_starts)

    def mask(
        self, input_ids: torch.Tensor, generator: torch.Generator, word_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) ids -> masked ids, labels (IGNORE_INDEX where not selected) and (B, T) bool positions."""
        masked_ids, labels = mask_tokens(
            input_ids,
            torch.isin(input_ids, self.special_ids),
            self.mask_token_id,
            self.vocab_size,
            self.config.data.mlm_probability,
            generator,
            word_starts=word_starts,
        )
        return masked_ids, labels, labels != IGNORE_INDEX

    def teacher_forward(
        self, masked_ids: torch.Tensor, positions: torch.Tensor, with_hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher logits over the student's vocabulary at masked positions: (N, V), and (B*T, H) hidden states."""
        with torch.inference_mode():
            teacher_ids = self.vocab_ids[masked_ids] if self.vocab_ids is not None else masked_ids
            hidden = self.teacher_encoder(input_ids=teacher_ids).last_hidden_state  # (B, T, H)
            logits = self.teacher_head.logits(hidden[positions])  # (N, V)
        # Inference tensors cannot be saved for backward; a clone outside the context is a normal tensor.
        return logits.clone(), hidden.flatten(0, 1).clone() if with_hidden else None

    # --------------------------------------------------------------------------------- validation

    def evaluate(self) -> dict[str, float]:
        """Validate (``validation_metrics``) and log the metrics."""
        metrics = validation_metrics([self])[0]
        self._log("validation", metrics)
        return metrics

    def validates_now(self) -> bool:
        """Whether the step just taken is followed by a validation."""
        interval = self.train_config.eval_interval
        return bool(interval and self.step % interval == 0) or self.step == self.total_steps

    # -------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        """Save model, optimizer, scheduler, RNG and step atomically; prune old checkpoints.

        Raises:
            MonodistillError: on every rank when any rank could not write (a full disk above all), after
                removing the partial save; the previous checkpoints are untouched.
        """
        path = ckpt.checkpoint_path(self.run_dir, self.step)
        staging = ckpt.staging_path(path, self._job_id)
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(staging), safe_serialization=False)
            error = None
        except (OSError, RuntimeError) as failure:  # torch's writer reports a full disk as a RuntimeError
            error = failure
        # Every process writes its own RNG state into the staging folder before it is published.
        self._raise_if_save_failed(error, staging)
        if self.accelerator.is_main_process:
            state = {
                "step": self.step,
                "total_steps": self.total_steps,
                "complete": self.step >= self.total_steps,
                **self.state_extras,
            }
            try:
                ckpt.publish_checkpoint(staging, path, state)
                ckpt.prune_checkpoints(self.run_dir, self.train_config.keep_checkpoints)
            except (OSError, RuntimeError) as failure:
                error = failure
        self._raise_if_save_failed(error, staging)
        return path

    def _raise_if_save_failed(self, error: Exception | None, staging: Path) -> None:
        failed_ranks = self._ranks_where(error is not None)  # also the barrier between save and publish
        if not failed_ranks:
            return
        if self.accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        if error is None:
            raise MonodistillError(f"saving checkpoint step {self.step} failed on rank {failed_ranks[0]}")
        latest = ckpt.latest_checkpoint(self.run_dir)
        needed = self._checkpoint_bytes()
        if ckpt.is_disk_full(error) or ckpt.free_bytes(staging.parent) < needed:
            reason = f"no space left on device (needs about {needed / 1e6:,.1f} MB in {staging.parent})"
        elif isinstance(error, OSError):
            reason = f"{error.strerror or error} ({error.filename or staging.parent})"
        else:
            reason = str(error).splitlines()[0]
        raise MonodistillError(
            f"could not save the checkpoint of step {self.step}: {reason}; the partial save was removed. "
            f"Last good checkpoint: {latest or 'none'}; make room, then run the same command again to resume"
        )

    def _checkpoint_bytes(self) -> int:
        """About how much one checkpoint takes: the last one's size, else weights plus two AdamW moments."""
        latest = ckpt.latest_checkpoint(self.run_dir)
        if latest is not None:
            return sum(file.stat().st_size for file in latest.rglob("*") if file.is_file())
        return 3 * sum(p.numel() * p.element_size() for p in self.student.parameters())

    def _resume(self, latest: Path) -> None:
        self.check_resumable(latest)
        state = ckpt.read_state(latest)
        self.accelerator.load_state(str(latest))
        self.step = state["step"]
        if self.accelerator.is_main_process:
            ckpt.truncate_metrics(self.run_dir, self.step)
        if state.get("complete") and self.step < self.total_steps:
            # A finished run made longer continues on the schedule of the new length: the learning rate
            # jumps from the old schedule's end to the value the new one has at this step.
            self._set_learning_rate_for_step()
            self.accelerator.print(
                f"extending the finished run {self.run_dir} from {self.step} to {self.total_steps} steps; "
                f"the learning rate follows the schedule of the new length ({self.scheduler.get_last_lr()[0]:.3g} now)"
            )
            return
        self.accelerator.print(f"resumed from {latest} at step {self.step}/{self.total_steps}")

    def check_resumable(self, latest: Path) -> None:
        """Refuse to resume a run that has already trained past the length its config now gives."""
        trained = ckpt.read_state(latest)["step"]
        if trained > self.total_steps:
            raise MonodistillError(
                f"{self.run_dir} has already trained {trained} steps, more than the {self.total_steps} "
                "that train.max_steps/epochs now give; raise them, or start a new run in another --output"
            )

    def _set_learning_rate_for_step(self) -> None:
        """Point the optimizer and scheduler at the learning rate the current schedule gives ``self.step``."""
        scheduler: Any = self.scheduler
        rates = [
            base * factor(self.step) for factor, base in zip(scheduler.lr_lambdas, scheduler.base_lrs, strict=True)
        ]
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler.last_epoch = self.step
        scheduler._last_lr = rates

    # ------------------------------------------------------------------------------------ helpers

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt  # a second signal: stop now, without waiting for the checkpoint
        self._stop_signal = signum

    def _agree_on_step(self, parts: dict[str, float]) -> tuple[dict[str, float], bool]:
        """Train metrics averaged over ranks, and whether any rank was asked to stop (one collective)."""
        values = [*parts.values(), float(self._stop_signal is not None)]
        summed = self.accelerator.reduce(
            torch.tensor(values, dtype=torch.float64, device=self.accelerator.device), reduction="sum"
        ).tolist()
        processes = self.accelerator.num_processes
        means = {name: total / processes for name, total in zip(parts, summed, strict=False)}
        return means, summed[-1] > 0

    def _ranks_where(self, flag: bool) -> list[int]:
        """The ranks on which ``flag`` holds; every rank gets the same answer."""
        flags = torch.zeros(self.accelerator.num_processes, device=self.accelerator.device)
        flags[self.accelerator.process_index] = float(flag)
        flags = self.accelerator.reduce(flags, reduction="sum")
        return [rank for rank, value in enumerate(flags.tolist()) if value > 0]

    def _fail_non_finite(self, parts: dict[str, torch.Tensor], failed_ranks: list[int]) -> None:
        latest = ckpt.latest_checkpoint(self.run_dir)
        values = ", ".join(f"{name}={value.item():.4g}" for name, value in parts.items())
        where = f" on rank {', '.join(map(str, failed_ranks))}" if self.accelerator.num_processes > 1 else ""
        mine = f" ({values})" if self.accelerator.process_index in failed_ranks else ""
        raise NonFiniteLoss(
            f"non-finite loss at step {self.step + 1}{where}{mine}; stopped without saving. "
            f"Last good checkpoint: {latest or 'none'}. Lower train.learning_rate, raise train.warmup_ratio, "
            "or use train.mixed_precision=bf16 instead of fp16"
        )

    def _tokens_per_step(self) -> int:
        train = self.train_config
        length = self.config.data.max_seq_length
        return train.batch_size * train.gradient_accumulation_steps * self.accelerator.num_processes * length

    def _log(self, split: str, metrics: dict[str, float]) -> None:
        if self.accelerator.is_main_process:
            ckpt.append_metrics(self.run_dir, {"step": self.step, "split": split, **metrics})
        self.accelerator.log({f"{split}/{name}": value for name, value in metrics.items()}, step=self.step)

    def unwrapped_student(self) -> PreTrainedModel:
        """The student ``*ForMaskedLM`` model, outside any distributed wrapper."""
        return self.accelerator.unwrap_model(self.student).model

    def keep_own_rng(self) -> None:
        """From now on draw from a random stream of this student's own, starting from the current global state."""
        self.rng_state = capture_rng(self.accelerator.device)

    @contextmanager
    def own_rng(self) -> Iterator[None]:
        """Swap this student's random stream in for the block (a no-op for a student trained alone).

        Accelerate saves and loads the global random state with a checkpoint, so saves and resumes run
        inside this block too: the checkpoint then holds the student's own stream.
        """
        if self.rng_state is None:
            yield
            return
        device = self.accelerator.device
        outer = capture_rng(device)
        _set_rng_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = capture_rng(device)
            _set_rng_state(outer)


def train_step_together(distillers: list[Distiller]) -> list[dict[str, float] | NonFiniteLoss]:
    """One optimizer step for students at the same step: one teacher pass per micro-batch for all of them.

    Masks and batches are those of the first student; the compatibility rules (``recipe``) make them
    the same for every student. Returns each student's averaged loss parts, or the error of a student
    whose loss was not finite (its step is not taken; the others' are).
    """
    lead = distillers[0]
    accumulation = lead.train_config.gradient_accumulation_steps
    with_hidden = any(d.config.loss.alpha_cosine > 0 for d in distillers)
    totals: list[dict[str, float]] = [{} for _ in distillers]
    failed: dict[int, NonFiniteLoss] = {}
    for micro in range(accumulation):
        masked_ids, labels, positions = lead.masked_micro_batch(lead.step * accumulation + micro)
        teacher_logits, teacher_hidden = lead.teacher_forward(masked_ids, positions, with_hidden)  # (N, V)
        targets = labels[positions]  # (N,)
        for number, distiller in enumerate(distillers):
            if number in failed:
                continue
            try:
                with distiller.own_rng():
                    parts = distiller.student_step(
                        masked_ids, positions, targets, teacher_logits, teacher_hidden, micro == accumulation - 1
                    )
            except NonFiniteLoss as error:
                failed[number] = error
                continue
            for name, value in parts.items():
                totals[number][name] = totals[number].get(name, 0.0) + float(value.detach()) / accumulation
        if len(failed) == len(distillers):
            break
    results: list[dict[str, float] | NonFiniteLoss] = []
    for number, distiller in enumerate(distillers):
        if number in failed:
            distiller.optimizer.zero_grad(set_to_none=True)
            results.append(failed[number])
        else:
            results.append({**totals[number], **distiller.optimizer_step()})
    return results


def fit_together(
    distillers: list[Distiller], resume_from: list[Path | None]
) -> list[dict[str, float] | MonodistillError]:
    """The training loop, for one student (``Distiller.fit``) or several that see the same batches,
    with one teacher pass per micro-batch and per validation batch for all of them.

    Each student logs, validates and checkpoints on its own cadence, exactly as it would alone.
    Students resumed from different steps train apart until the lagging ones catch up. A student whose
    loss is not finite stops alone (its error is returned); the others go on. A stop signal saves every
    unfinished student, then raises ``Interrupted``.

    Returns:
        Per student, its final validation metrics or the error that stopped it.
    """
    group = len(distillers) > 1
    if group and distillers[0].accelerator.num_processes > 1:
        raise MonodistillError(
            "students sharing a teacher pass train in one process; launch them without torchrun/accelerate "
            "launch, or set train.share_teacher=false to distil them one after another"
        )
    for distiller, latest in zip(distillers, resume_from, strict=True):
        if distiller.rng_state is None:
            distiller.keep_own_rng()
        with distiller.own_rng():
            if latest is not None:
                distiller._resume(latest)
        distiller._init_trackers()
    outcomes: dict[int, dict[str, float] | MonodistillError] = {}
    validations: dict[int, dict[str, float]] = {}
    main = distillers[0].accelerator.is_main_process
    progress = tqdm(
        total=max(d.total_steps for d in distillers),
        initial=min(d.step for d in distillers),
        desc=f"distilling {len(distillers)} students" if group else "distilling",
        unit="step",
        disable=not main,
        dynamic_ncols=True,
    )
    previous_handlers = _install_stop_handlers(distillers)
    try:
        while True:
            for number, distiller in enumerate(distillers):
                if number not in outcomes and distiller.step >= distiller.total_steps:
                    with distiller.own_rng():
                        outcomes[number] = validations.get(number) or distiller.evaluate()
            active = [number for number in range(len(distillers)) if number not in outcomes]
            if not active:
                break
            low = min(distillers[number].step for number in active)
            cohort = [number for number in active if distillers[number].step == low]
            started = time.perf_counter()
            results = train_step_together([distillers[number] for number in cohort])
            elapsed = time.perf_counter() - started
            stop = False
            stepped: dict[int, dict[str, float]] = {}
            for number, result in zip(cohort, results, strict=True):
                distiller = distillers[number]
                if isinstance(result, MonodistillError):
                    outcomes[number] = result
                    if main and group:
                        progress.write(f"student {distiller.name}: {result}; the other students go on")
                    continue
                distiller.step += 1
                # The group's step time: what the sweep pays per step, shared by all its students.
                result["tokens_per_second"] = distiller._tokens_per_step() / elapsed
                stepped[number], stopped = distiller._agree_on_step(result)
                stop = stop or stopped
                if not group:
                    parts = stepped[number]
                    progress.set_postfix(
                        loss=f"{parts['loss']:.3f}", kl=f"{parts['kl']:.3f}", mlm=f"{parts['mlm']:.3f}"
                    )
            # Students validating at this step share the teacher's validation pass too.
            due = [number for number in stepped if distillers[number].validates_now()]
            if due:
                validations.update(zip(due, validation_metrics([distillers[n] for n in due]), strict=True))
            for number, parts in stepped.items():
                distiller = distillers[number]
                with distiller.own_rng():
                    distiller._after_step(
                        parts,
                        progress,
                        prefix=f"{distiller.name} " if group else "",
                        validation=validations[number] if number in due else None,
                    )
            progress.update(min(d.step for d in distillers) - progress.n)
            unfinished = [d for number, d in enumerate(distillers) if number not in outcomes and d.step < d.total_steps]
            if stop and unfinished:
                for distiller in unfinished:
                    with distiller.own_rng():
                        distiller._save_before_stop()
                raise unfinished[0]._interrupted(unfinished)
    finally:
        progress.close()
        _restore_handlers(previous_handlers)
    return [outcomes[number] for number in range(len(distillers))]


def validation_metrics(distillers: list[Distiller]) -> list[dict[str, float]]:
    """Validation on the held-out blocks with fixed masks, one teacher pass per batch for students that
    see the same blocks (a group, or one student): per student its MLM loss and accuracy, KL to the
    teacher at T=1, top-1 agreement with the teacher and, for a trimmed vocabulary, the teacher
    probability mass outside the kept tokens. Nothing is logged."""
    lead = distillers[0]
    device = lead.accelerator.device
    # The unwrapped modules: DDP's forward broadcasts buffers, a collective that would deadlock
    # when ranks hold different numbers of validation batches.
    students = [distiller.accelerator.unwrap_model(distiller.student) for distiller in distillers]
    for student in students:
        student.eval()
    rank, processes = lead.accelerator.process_index, lead.accelerator.num_processes
    generator = step_generator(lead.train_config.seed + 1, 0, rank, device)
    sums = torch.zeros(len(distillers), 7, dtype=torch.float64, device=device)
    validation = lead.blocks.validation
    size = lead.train_config.batch_size
    for start in range(rank * size, len(validation), size * processes):
        rows = validation[start : start + size]
        input_ids = rows["input_ids"].to(device)
        # Masked as in training: whole words when the blocks carry word starts.
        word_starts = rows["word_starts"].to(device).bool() if "word_starts" in rows else None
        masked_ids, labels, positions = lead.mask(input_ids, generator, word_starts)
        targets = labels[positions]
        count = targets.numel()
        with torch.inference_mode():
            teacher_ids = lead.vocab_ids[masked_ids] if lead.vocab_ids is not None else masked_ids
            teacher_hidden = lead.teacher_encoder(input_ids=teacher_ids).last_hidden_state[positions]
            teacher_logits = lead.teacher_head.logits(teacher_hidden).float()
            kept_mass = 1.0
            if lead.vocab_ids is not None:
                full = lead.teacher_full_head.logits(teacher_hidden).float()
                kept_mass = (teacher_logits.logsumexp(-1) - full.logsumexp(-1)).exp().sum().item() / count
            teacher_correct = (teacher_logits.argmax(-1) == targets).sum().item()
            for number, student in enumerate(students):
                student_logits = student(masked_ids, positions)[0].float()
                sums[number] += torch.tensor(
                    [
                        torch.nn.functional.cross_entropy(student_logits, targets, reduction="sum").item(),
                        kl_divergence(student_logits, teacher_logits, 1.0).item() * count,
                        (student_logits.argmax(-1) == teacher_logits.argmax(-1)).sum().item(),
                        (student_logits.argmax(-1) == targets).sum().item(),
                        teacher_correct,
                        (1.0 - kept_mass) * count,
                        count,
                    ],
                    dtype=torch.float64,
                    device=device,
                )
    sums = lead.accelerator.reduce(sums, reduction="sum")
    results = []
    for student, row in zip(students, sums.tolist(), strict=True):
        count = max(row[6], 1.0)
        metrics = {
            "mlm_loss": row[0] / count,
            "kl_to_teacher": row[1] / count,
            "teacher_agreement": row[2] / count,
            "student_accuracy": row[3] / count,
            "teacher_accuracy": row[4] / count,
        }
        if lead.vocab_ids is not None:
            metrics["teacher_mass_outside_vocab"] = row[5] / count
        results.append(metrics)
        student.train()
    return results


def _install_stop_handlers(distillers: list[Distiller]) -> dict[int, Any]:
    """SIGTERM/SIGINT ask every student to save and stop after the current step; a second one stops now."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        for distiller in distillers:
            distiller._request_stop(signum, frame)

    return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch random state that dropout draws from: the CPU one, and the GPU's on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def flat_scalars(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"section.field": scalar}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
    return flat
