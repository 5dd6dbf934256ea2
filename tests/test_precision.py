"""Half precision at run time, float32 in everything written for fine-tuning; fp16 schedule; validation masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, PreTrainedTokenizerFast

from monodistill import recipe
from monodistill.cli import main
from monodistill.data.batches import Masking

from .test_distill import args
from .test_distill_trimmed import make_run

BF16_TOLERANCE = 2e-2  # bf16 keeps 8 significant bits: relative error up to 2^-8 per rounding


def stored_dtypes(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return {str(handle.get_slice(name).get_dtype()) for name in handle.keys()}  # noqa: SIM118


def test_trimmed_teacher_exported_from_a_bf16_run_is_float32_and_matches(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vocab"
    argv = ["vocab", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(out)]
    assert main([*argv, "--max-size", "60", "--export-teacher", "teacher.dtype=bfloat16"]) == 0
    assert stored_dtypes(out / "teacher") == {"F32"}
    classifier = AutoModelForSequenceClassification.from_pretrained(out / "teacher", num_labels=2)
    assert {p.dtype for p in classifier.parameters()} == {torch.float32}

    kept = torch.tensor(json.loads((out / "id_map.json").read_text())["id_map"])
    exported = AutoModelForMaskedLM.from_pretrained(out / "teacher").eval()
    original = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir, dtype=torch.float32).eval()
    student_ids = torch.randint(5, len(kept), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, theirs = exported(input_ids=student_ids).logits, original(input_ids=kept[student_ids]).logits[..., kept]
    scale = theirs.abs().max()
    assert (ours - theirs).abs().max() <= BF16_TOLERANCE * scale
    # Loaded from the stored float32 weights, not rounded through the bf16 runtime copy: exact.
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_student_of_a_bf16_run_is_saved_in_float32_with_unrounded_teacher_layers(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured: dict[str, Any] = {}
    save_student = recipe.save_student
    build_student = recipe.build_student
    probe = torch.randint(5, 100, (2, 16), generator=torch.Generator().manual_seed(3))

    def capture_build(config: Any, teacher: Any, *a: Any, **k: Any) -> Any:
        captured["source_dtype"] = teacher.dtype
        return build_student(config, teacher, *a, **k)

    def capture_save(path: Path, student: Any, *a: Any) -> None:
        with torch.inference_mode():
            captured["logits"] = student.eval()(input_ids=probe).logits.clone()
        save_student(path, student, *a)

    monkeypatch.setattr(recipe, "build_student", capture_build)
    monkeypatch.setattr(recipe, "save_student", capture_save)
    run = tmp_path / "run"
    # Same width as the teacher, so the student starts from copies of the teacher's layers.
    extra = [
        "teacher.dtype=bfloat16",
        "train.mixed_precision=bf16",
        "student.init=teacher-layers",
        "student.hidden_size=32",
        "student.num_heads=4",
        "student.intermediate_size=64",
    ]
    assert main(args(tiny_teacher_dir, corpus_file, run, cache_dir, 2, *extra)) == 0
    assert captured["source_dtype"] == torch.float32  # copied from stored weights, not the bf16 teacher
    assert stored_dtypes(run / "student") == {"F32"}
    classifier = AutoModelForSequenceClassification.from_pretrained(run / "student", num_labels=2)
    assert {p.dtype for p in classifier.parameters()} == {torch.float32}
    reloaded = AutoModelForMaskedLM.from_pretrained(run / "student").eval()
    with torch.inference_mode():
        logits = reloaded(input_ids=probe).logits
    assert (logits - captured["logits"]).abs().max() <= BF16_TOLERANCE * captured["logits"].abs().max()


def test_the_schedule_waits_when_the_grad_scaler_skipped_the_optimizer_step(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher, stream, run, _ = make_run(tiny_tokenizer, tmp_path)

    def one_step() -> float:
        for batch in stream.step(run.step):
            run.train_micro(batch, teacher(batch, run.needs), last=True)
        return run.optimizer_step()["learning_rate"]

    one_step()
    updates, rate = run.updates, run.learning_rate()
    # An fp16 overflow: the scaler skips the update, so the schedule must stay where it is.
    monkeypatch.setattr(type(run.accelerator), "optimizer_step_was_skipped", property(lambda self: True))
    assert one_step() == rate
    assert run.updates == updates and run.learning_rate() == rate and run.step == 2


def test_validation_masks_whole_words_when_training_does(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, stream, _, _ = make_run(tiny_tokenizer, tmp_path)
    starts = torch.ones(24, 24, dtype=torch.long)
    starts[:, 2::2] = 0  # every other token continues a word
    stream.blocks.validation = stream.blocks.validation.add_column("word_starts", starts[16:].tolist())
    stream.blocks.validation = stream.blocks.validation.with_format("torch")
    seen: list[torch.Tensor | None] = []
    mask = Masking.__call__

    def spy(self: Masking, input_ids: torch.Tensor, generator: torch.Generator, word_starts: Any = None) -> Any:
        seen.append(word_starts)
        return mask(self, input_ids, generator, word_starts)

    monkeypatch.setattr(Masking, "__call__", spy)
    batches = stream.validation()
    assert [len(batch.input_ids) for batch in batches] == [4, 4]  # 8 validation blocks in batches of 4
    assert len(seen) == 8  # each block masked by its own generator, once
    assert all(ws is not None and torch.equal(ws, starts[:1].bool()) for ws in seen)
    assert stream.validation() is batches  # masked once, then reused
