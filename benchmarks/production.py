"""monodistill's own distillation step on synthetic blocks, for the benchmarks.

The benchmarks time the production code, not a copy of it: ``TeacherPass`` (one teacher forward per
micro-batch), ``BatchStream`` (masks drawn per step) and ``StudentRun`` (forward, backward, AdamW),
driven by ``distill.train_step`` exactly as the loop drives them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import datasets
import torch
from transformers import PreTrainedModel

from monodistill.config import DistillConfig
from monodistill.data.batches import BatchStream, Masking, NextToken
from monodistill.data.blocks import Blocks
from monodistill.distill import StudentRun, TeacherPass, train_step
from monodistill.ranks import process_state


def random_blocks(count: int, seq_length: int, low: int, high: int, seed: int = 0) -> Blocks:
    """``count`` blocks of random ids in ``[low, high)``: speed does not depend on which tokens they are."""
    ids = torch.randint(low, high, (count, seq_length), generator=torch.Generator().manual_seed(seed))
    rows = datasets.Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    return Blocks(
        train=rows, validation=rows.select(range(1)), cache_path=Path(tempfile.gettempdir()), corpus_digest="random"
    )


class ProductionStep:
    """The teacher, the batch stream and one ``StudentRun`` per student, as ``recipe`` builds them."""

    def __init__(
        self,
        configs: list[DistillConfig],
        teacher: PreTrainedModel,
        students: list[PreTrainedModel],
        blocks: Blocks,
        special_ids: list[int],
        mask_token_id: int | None,
        vocab_ids: torch.Tensor | None = None,
    ) -> None:
        device = process_state().device
        lead = configs[0]
        vocab_size = students[0].config.vocab_size
        # A causal teacher (no mask token) scores every next token; a masked one, BERT's masks.
        masking = (
            Masking(torch.tensor(special_ids), mask_token_id, vocab_size, lead.data.mlm_probability)
            if mask_token_id is not None
            else NextToken()
        )
        self.stream = BatchStream(blocks, masking, lead.train, device=device)
        self.teacher = TeacherPass(teacher, vocab_ids, device, lead.train.compile, logit_chunk=lead.train.logit_chunk)
        self._folder = tempfile.TemporaryDirectory()
        total = self.stream.total_steps(lead.train)
        self.runs = [
            StudentRun(
                config,
                Path(self._folder.name) / f"student-{number}",
                student,
                total,
                self.stream.global_batch,
                {},
                teacher_config=teacher.config,
            )
            for number, (config, student) in enumerate(zip(configs, students, strict=True))
        ]

    def __call__(self, step: int, runs: list[StudentRun] | None = None) -> dict[StudentRun, dict[str, float]]:
        """Optimizer step ``step`` of ``runs`` (default: every student), one teacher pass for all of them."""
        return train_step(self.teacher, self.stream, runs or self.runs, step)

    def close(self) -> None:
        """Close the students' trackers and remove their folders."""
        for run in self.runs:
            for tracker in run.accelerator.trackers:
                tracker.finish()
        self._folder.cleanup()
