"""Loading a masked LM with a task head: one line for the expected head swap, warnings for anything else."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

from monodistill.evaluate.loading import load_for_task

from ..conftest import save_teacher


@pytest.fixture
def transformers_records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """transformers' log records, which its library logger does not propagate by default."""
    transformers_logging.enable_propagation()
    caplog.set_level(logging.INFO, logger="transformers")
    yield caplog
    transformers_logging.disable_propagation()


def test_expected_head_swap_is_one_line_not_the_load_table(
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    transformers_records: pytest.LogCaptureFixture,
) -> None:
    path = str(save_teacher("bert", tiny_tokenizer, tmp_path / "mlm"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the expected cls.* / classifier.* keys
        load_for_task(AutoModelForSequenceClassification, path, num_labels=2)
        load_for_task(AutoModelForSequenceClassification, path, num_labels=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "task head" in line]
    assert lines == [f"{path}: new task head (classifier.*, pooler.*), unused masked-LM head (cls.*), as expected"]
    messages = [record.getMessage() for record in transformers_records.records]
    assert not any("LOAD REPORT" in m or "UNEXPECTED" in m or "not sharded" in m for m in messages), messages


def test_an_unexpected_key_outside_the_heads_still_warns(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    folder = save_teacher("bert", tiny_tokenizer, tmp_path / "mlm")
    weights = load_file(folder / "model.safetensors")
    save_file({**weights, "bert.encoder.extra.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.warns(UserWarning, match=r"unexpected weights outside the task and masked-LM heads: .*extra"):
        load_for_task(AutoModelForSequenceClassification, str(folder), num_labels=2)
