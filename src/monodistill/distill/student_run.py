"""One student's side of distillation: model and head, optimizer, learning rate, random stream, log, checkpoints.

A ``StudentRun`` knows nothing of the teacher or the data order: the loop (``distill.loop``) hands
it each masked micro-batch with the teacher's outputs. Each student has an ``Accelerator`` of its
own (its DDP wrapper, mixed precision and grad scaler, TensorBoard run and checkpoint files), and a
random stream of its own (``distill.random_stream``). Its loss is a list of terms (``losses.terms``),
weighed in ``train_micro``: the one place the loss is formed from them.

The learning rate is a pure function of the number of optimizer updates applied (``learning_rate``),
so a resumed run, or a finished one given more steps, needs no scheduler state.
"""

from __future__ import annotations

import functools
import operator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from transformers import PreTrainedModel

from monodistill import checkpoint as ckpt
from monodistill import ranks
from monodistill.config import DistillConfig, config_to_dict, flatten
from monodistill.data.batches import MaskedBatch
from monodistill.distill.logits import chunk_positions, term_sums
from monodistill.distill.random_stream import RandomStream
from monodistill.distill.teacher_pass import TeacherOutputs
from monodistill.errors import NonFiniteLoss
from monodistill.internals import ProjectionHooks, num_heads, num_layers
from monodistill.losses import ModelOutputs, ModelSizes, Needs, build_terms, needs_of, step_count
from monodistill.teacher import encoder, mlm_head


class StudentWithHead(nn.Module):
    """The student as one module whose forward scores masked positions only and returns what its objective reads.

    Wrapping matters for multi-GPU: DDP synchronises gradients only through the forward of the module
    it wraps, so the masked-position head and the hidden-state projections must be part of that forward.
    The projections (one per layer read at the teacher's width, ``Needs.projected_hidden``, where the widths
    differ) train with the student and are saved in its checkpoints, but are no part of the saved student
    (``.model``).
    """

    def __init__(self, model: PreTrainedModel, needs: Needs | None = None, teacher_width: int = 0) -> None:
        super().__init__()
        self.model = model
        self.head = mlm_head(model)
        needs = needs or Needs()
        self.hidden_layers = needs.student_hidden
        # Installed once, before the encoder's first (perhaps compiled) forward (``ProjectionHooks``).
        self.projection_hooks = ProjectionHooks(model, needs.student_projections)
        width = model.config.hidden_size
        self.projections = nn.ModuleDict(
            {
                str(layer): nn.Linear(width, teacher_width, bias=False)
                for layer in needs.projected_hidden
                if width != teacher_width
            }
        )

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, list[torch.Tensor]]]:
        """(B, T) ids and bool positions -> (N, H) last hidden states at the scored positions (``head`` gives their
        logits, a chunk at a time: ``distill.logits``), hidden states (B, T, H) and Q/K/V projections by layer."""
        with self.projection_hooks.capture() as projections:
            output = encoder(self.model)(input_ids=input_ids, output_hidden_states=bool(self.hidden_layers))
        hidden = {}
        for layer in self.hidden_layers:
            states = output.hidden_states[layer]  # (B, T, H_s)
            if str(layer) in self.projections:
                states = self.projections[str(layer)](states)  # (B, T, H_t)
            hidden[layer] = states
        return output.last_hidden_state[positions], hidden, projections


AT_STEP = ("learning_rate",)
"""Train metrics logged as their value at the logged step; the others are means over the log interval."""


def learning_rate(update: int, peak: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

    The schedule of transformers' ``get_linear_schedule_with_warmup``, as a function of the 0-based
    index of the update being applied.
    """
    if update < warmup_steps:
        return peak * update / max(1, warmup_steps)
    return peak * max(0.0, (total_steps - update) / max(1, total_steps - warmup_steps))


class StudentRun:
    """One student being distilled into ``run_dir``; see the module docstring."""

    def __init__(
        self,
        config: DistillConfig,
        run_dir: Path,
        student: PreTrainedModel,
        total_steps: int,
        global_batch: int,
        state_extras: dict[str, Any],
        rng_state: dict[str, torch.Tensor] | None = None,
        teacher_config: Any = None,
    ) -> None:
        self.config = config
        self.train = config.train
        self.run_dir = run_dir
        self.name = config.student.name or run_dir.name
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.state_extras = state_extras
        """Saved with every checkpoint: what the stage checks on resume (settings, length, data fingerprints)."""
        # Accelerate keeps its settings in a process-wide singleton, but one process distils students of
        # several precisions one after another (`monodistill run`): start them afresh, keeping the
        # process group (Accelerate offers no public call for this).
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision=self.train.mixed_precision, log_with="tensorboard", project_dir=str(run_dir)
        )
        device = self.accelerator.device
        if self.train.compile:
            encoder(student).compile()  # in place: parameter names and the saved student stay plain
        teacher = teacher_config or student.config  # a student alone is distilled against its own shape
        sizes = ModelSizes(
            num_layers(student), int(teacher.num_hidden_layers), num_heads(student), int(teacher.num_attention_heads)
        )
        self.terms = build_terms(config.loss, sizes)
        self.needs = needs_of(self.terms)
        wrapped = StudentWithHead(student.to(device), self.needs, int(teacher.hidden_size))
        # The fused kernel updates every parameter in one pass instead of a loop of per-tensor kernels,
        # which matters when a 119k-row embedding matrix is most of the student.
        optimizer = torch.optim.AdamW(
            parameter_groups(wrapped, self.train.weight_decay),
            lr=self.train.learning_rate,
            fused=device.type in ("cuda", "cpu"),
        )
        self.model, self.optimizer = self.accelerator.prepare(wrapped, optimizer)
        self.logit_chunk = chunk_positions(self.train.logit_chunk, self.vocab_size)
        self.step = 0
        """Optimizer steps taken."""
        self.updates = 0
        """Optimizer updates applied: the schedule's clock (an fp16 step that overflowed is skipped)."""
        self.error: NonFiniteLoss | None = None
        """Set when the student's loss turned non-finite: it trains no further."""
        self.final_metrics: dict[str, float] | None = None
        """The validation metrics at the last step."""
        self.random = RandomStream(device, rng_state)
        """This student's own random stream (dropout draws from each batch's own seed)."""
        self._parts: dict[str, float] = {}  # this step's loss parts so far, over its micro-batches
        # Train sums since the last log line and the steps they hold; carried in checkpoints, so that a
        # resumed run logs exactly what the uninterrupted one logs.
        self.running: dict[str, float] = {}
        self.running_steps = 0
        self._job_id = ranks.job_id()
        self.accelerator.init_trackers("tensorboard", config=_scalars(flatten(config_to_dict(config))))

    # -------------------------------------------------------------------------------------- train

    def train_micro(self, batch: MaskedBatch, teacher: TeacherOutputs | None, last: bool) -> None:
        """Forward and backward on one micro-batch; a non-finite loss (on any rank) sets ``error`` instead.

        Each term's part is its sum over this micro-batch divided by its count over the whole optimizer
        step (masked targets, positions or blocks): the parts of every micro-batch and rank add up to the
        step's means, and the loss to their weighted sum.
        """
        with (
            self.random.dropout(batch.dropout_seed),
            self.accelerator.no_sync(self.model) if not last else nullcontext(),
        ):
            scored, hidden, projections = self.model(batch.input_ids, batch.positions)
            student = ModelOutputs(scored.new_zeros(0), hidden, projections)
            head = self.accelerator.unwrap_model(self.model).head
            parts = term_sums(self.terms, scored, head, student, teacher, batch, self.logit_chunk)
            parts = {term.name: parts[term.name] / step_count(batch, term.count) for term in self.terms}
            loss = functools.reduce(operator.add, (term.weight * parts[term.name] for term in self.terms))
            parts = {"loss": loss, **parts}
            # Checked before the backward pass, on every rank together: a rank that skipped it would
            # leave the others waiting in the gradient all-reduce forever.
            failed = ranks.ranks_where(not bool(torch.isfinite(loss)))
            if failed:
                self._stop_non_finite(parts, failed)
                return
            # This rank's share of the step's mean: DDP averages gradients over ranks, so it is scaled back up.
            self.accelerator.backward(loss * self.accelerator.num_processes)
        for name, value in parts.items():
            self._parts[name] = self._parts.get(name, 0.0) + float(value.detach())

    def optimizer_step(self) -> dict[str, float]:
        """Clip, apply the update at the scheduled learning rate, clear gradients; returns the step's metrics.

        The loss parts are summed over ranks: each rank holds its share of the mean over the step's tokens.
        """
        rate = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        metrics: dict[str, float] = {}
        if self.train.max_grad_norm > 0:
            metrics["grad_norm"] = float(
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.train.max_grad_norm)
            )
        self.optimizer.step()
        # With fp16 the grad scaler skips steps whose gradients overflowed; the schedule waits for them too.
        if not self.accelerator.optimizer_step_was_skipped:
            self.updates += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        names = list(self._parts)  # "loss", then the terms' parts in their order
        summed = ranks.sum_over_ranks([self._parts[name] for name in names])
        self._parts = {}
        metrics["learning_rate"] = rate
        return {**dict(zip(names, summed, strict=True)), **metrics}

    def learning_rate(self) -> float:
        """The learning rate of the next update, on the schedule of this run's length."""
        warmup = round(self.train.warmup_ratio * self.total_steps)
        return learning_rate(self.updates, self.train.learning_rate, warmup, self.total_steps)

    def validates_now(self) -> bool:
        """Whether the step just taken is followed by a validation."""
        interval = self.train.eval_interval
        return bool(interval and self.step % interval == 0) or self.step == self.total_steps

    def record_step(self, metrics: dict[str, float], validation: dict[str, float] | None) -> None:
        """Log the step (every ``log_interval`` steps, averaged) and its validation, and checkpoint on cadence."""
        for name, value in metrics.items():
            self.running[name] = self.running.get(name, 0.0) + value
        self.running_steps += 1
        if self.step % self.train.log_interval == 0 or self.step == self.total_steps:
            means = {name: value / self.running_steps for name, value in self.running.items()}
            # A setting of the step, not a measurement: the value at the logged step, as the schedule has it.
            means |= {name: metrics[name] for name in AT_STEP if name in metrics}
            self.log("train", means)
            self.running, self.running_steps = {}, 0
        if validation is not None:
            self.log("validation", validation)
            if self.step == self.total_steps:
                self.final_metrics = validation
        if self.step % self.train.save_interval == 0 or self.step == self.total_steps:
            self.save_checkpoint()

    def save_before_stop(self) -> None:
        """Checkpoint the current step before stopping on a signal, unless the cadence just did."""
        if self.step % self.train.save_interval and self.step != self.total_steps:
            self.save_checkpoint()

    def log(self, split: str, metrics: dict[str, float]) -> None:
        """One record in metrics.jsonl (written by the main rank) and in TensorBoard."""
        if self.accelerator.is_main_process:
            ckpt.append_metrics(self.run_dir, {"step": self.step, "split": split, **metrics})
        self.accelerator.log({f"{split}/{name}": value for name, value in metrics.items()}, step=self.step)

    def _stop_non_finite(self, parts: dict[str, torch.Tensor], failed_ranks: list[int]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._parts = {}
        latest = ckpt.latest_checkpoint(self.run_dir)
        values = ", ".join(f"{name}={value.item():.4g}" for name, value in parts.items())
        where = f" on rank {', '.join(map(str, failed_ranks))}" if self.accelerator.num_processes > 1 else ""
        mine = f" ({values})" if self.accelerator.process_index in failed_ranks else ""
        self.error = NonFiniteLoss(
            f"non-finite loss at step {self.step + 1}{where}{mine}; stopped without saving. "
            f"Last good checkpoint: {latest or 'none'}. Lower train.learning_rate, raise train.warmup_ratio, "
            "or use train.mixed_precision=bf16 instead of fp16"
        )

    # --------------------------------------------------------------------------------- validation

    def score(self, batch: MaskedBatch) -> torch.Tensor:
        """(N, H) last hidden states at the scored positions, in eval mode, outside the DDP wrapper (``logits``
        gives their logits a chunk at a time).

        DDP's forward broadcasts buffers, a collective that would deadlock when ranks hold different
        numbers of validation batches.
        """
        module = self.accelerator.unwrap_model(self.model)
        module.eval()
        with torch.inference_mode():
            scored = module(batch.input_ids, batch.positions)[0]  # (hidden states and projections unused)
        module.train()
        return scored

    def logits(self, scored: torch.Tensor) -> torch.Tensor:
        """(n, V) the student's logits from (n, H) hidden states ``score`` gave, without gradients."""
        with torch.inference_mode():
            return self.accelerator.unwrap_model(self.model).head.logits(scored)

    @property
    def vocab_size(self) -> int:
        """V, the rows of the student's MLM head: the width of its logits."""
        return int(self.accelerator.unwrap_model(self.model).head.weight.shape[0])

    def unwrapped_student(self) -> PreTrainedModel:
        """The student ``*ForMaskedLM`` model, outside any distributed wrapper."""
        return self.accelerator.unwrap_model(self.model).model

    # -------------------------------------------------------------------------------- checkpoints

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint records besides the weights: how far, for how long, with what, on how many processes."""
        return {
            "step": self.step,
            "updates": self.updates,
            "total_steps": self.total_steps,
            "complete": self.step >= self.total_steps,
            "processes": self.accelerator.num_processes,
            "global_batch": self.global_batch,
            "running": {"sums": self.running, "steps": self.running_steps},
            **self.state_extras,
        }

    def save_checkpoint(self) -> Path:
        """Save model, optimizer, RNG and state atomically; prune old checkpoints (``checkpoint.save_checkpoint``)."""
        with self.random.own():  # Accelerate saves the global random state: here, this student's own stream
            return ckpt.save_checkpoint(
                self.run_dir,
                self.step,
                lambda staging: self.accelerator.save_state(str(staging), safe_serialization=False),
                self.checkpoint_state(),
                keep=self.train.checkpoints_kept(self.total_steps),
                job_id=self._job_id,
                estimate=3 * sum(p.numel() * p.element_size() for p in self.model.parameters()),
            )

    def resume(self, checkpoint: Path) -> None:
        """Continue from a verified checkpoint of this run (``checkpoint.latest_intact_checkpoint``)."""
        state = ckpt.read_state(checkpoint)
        with self.random.own():
            self.accelerator.load_state(str(checkpoint))
        self.step, self.updates = state["step"], state["updates"]
        self.running, self.running_steps = dict(state["running"]["sums"]), state["running"]["steps"]
        if self.accelerator.is_main_process:
            ckpt.truncate_metrics(self.run_dir, self.step)
        if state["complete"] and self.step < self.total_steps:
            self.accelerator.print(
                f"extending the finished run {self.run_dir} from {self.step} to {self.total_steps} steps; "
                f"the learning rate follows the schedule of the new length ({self.learning_rate():.3g} now)"
            )
        else:
            self.accelerator.print(f"resumed from {checkpoint} at step {self.step}/{self.total_steps}")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _scalars(flat: dict[str, Any]) -> dict[str, Any]:
    """What TensorBoard's hyperparameter table takes: numbers, text and booleans."""
    return {key: value for key, value in flat.items() if isinstance(value, (int, float, str, bool))}
