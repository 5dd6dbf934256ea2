"""Teacher adaptation: continued masked-LM training of the teacher, with distillation's machinery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, BertModel

from monodistill.cli import main
from monodistill.distill import TeacherPass

FAST = ["data.max_seq_length=32", "train.batch_size=4", "data.max_validation_blocks=8", "adapt.learning_rate=2e-3"]


def adapt_args(teacher: Path, corpus: Path, output: Path, cache: Path, steps: int, *extra: str) -> list[str]:
    return [
        "adapt", "--teacher", str(teacher), "--corpus", str(corpus), "--output", str(output),
        "--max-steps", str(steps), *FAST, f"data.cache_dir={cache}", "train.eval_interval=0", *extra,
    ]  # fmt: skip


def test_adaptation_trains_the_teacher_on_masked_lm_alone_and_measures_before_and_after(
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    forwards = {"training": 0}
    real = TeacherPass.__call__

    def counted(self: TeacherPass, *a: object, **k: object) -> object:
        forwards["training"] += not k.get("outside_mass")
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(TeacherPass, "__call__", counted)
    out = tmp_path / "adapted"
    assert main(adapt_args(tiny_teacher_dir, corpus_file, out, cache_dir, 30)) == 0
    assert forwards["training"] == 0  # the frozen teacher runs only to score the held-out blocks
    result = json.loads((out / "adaptation.json").read_text())
    assert result["steps"] == 30
    assert result["after"]["mlm_loss"] < result["before"]["mlm_loss"]  # it learned the corpus language
    assert result["after"]["mlm_perplexity"] < result["before"]["mlm_perplexity"]
    shown = capsys.readouterr()
    line = shown.out
    assert "masked-token accuracy" in line and "masked-LM perplexity" in line
    assert "on its masked-LM alone" in line and "distilling" not in line  # it said "distilling ... student"
    assert "training on masked-LM" in shown.err and "distilling" not in shown.err  # the bar said "distilling"

    # A teacher folder like the original: same shape and vocabulary, usable as --teacher.
    adapted = AutoModelForMaskedLM.from_pretrained(out / "student")
    original = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir)
    assert adapted.config.num_hidden_layers == original.config.num_hidden_layers == 4
    assert adapted.config.vocab_size == original.config.vocab_size
    run = tmp_path / "run"
    distill = ["distill", "--teacher", str(out / "student"), "--corpus", str(corpus_file), "--output", str(run)]
    shape = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16"]
    shape += ["student.intermediate_size=32", "student.num_heads=2"]
    assert main([*distill, "--max-steps", "2", *shape, *FAST[:3], f"data.cache_dir={cache_dir}"]) == 0


def test_adapting_only_the_top_layers_leaves_the_rest_as_it_was(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / "adapted"
    assert main(adapt_args(tiny_teacher_dir, corpus_file, out, cache_dir, 5, "adapt.train_layers=1")) == 0
    before = BertModel.from_pretrained(tiny_teacher_dir).state_dict()
    after = {k.removeprefix("bert."): v for k, v in load_file(str(out / "student" / "model.safetensors")).items()}
    for name, tensor in before.items():
        if name.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1.", "encoder.layer.2.")):
            assert torch.equal(after[name], tensor), f"{name} changed"
    assert not torch.equal(
        after["encoder.layer.3.attention.self.query.weight"], before["encoder.layer.3.attention.self.query.weight"]
    )


def test_run_adapts_once_and_distils_every_student_from_the_adapted_teacher(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    shape = {"preset": "custom", "num_layers": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2}
    experiment = {
        "teacher": {"name_or_path": str(tiny_teacher_dir)},
        "adapt": {"enabled": True, "max_steps": 3, "learning_rate": 1e-3},
        "students": [
            {**shape, "name": "a"},
            {**shape, "name": "b", "overrides": ["loss.temperature=2"]},
            {**shape, "name": "plain", "overrides": ["adapt.enabled=false"]},  # from the original teacher
        ],
        "data": {
            "corpus": str(corpus_file),
            "max_seq_length": 32,
            "cache_dir": str(cache_dir),
            "max_validation_blocks": 8,
        },
        "train": {"max_steps": 2, "batch_size": 4},
    }
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(experiment))
    out = tmp_path / "out"
    assert main(["distill", "--config", str(config), "--output", str(out)]) == 0
    adapted = out / "teacher-adapted" / "student"
    assert (adapted / "model.safetensors").is_file() and (out / "teacher-adapted" / "adaptation.json").is_file()
    for name in ("a", "b"):
        recorded = yaml.safe_load((out / "students" / name / "config.yaml").read_text())
        assert recorded["teacher"]["name_or_path"] == str(adapted.resolve())
        assert recorded["adapt"]["enabled"] is False  # what it trained with: the adapted teacher, adaptation done
    plain = yaml.safe_load((out / "students" / "plain" / "config.yaml").read_text())
    assert plain["teacher"]["name_or_path"] == str(tiny_teacher_dir)
    stamp = (adapted / "model.safetensors").stat().st_mtime_ns
    assert main(["distill", "--config", str(config), "--output", str(out), "--resume"]) == 0
    assert (adapted / "model.safetensors").stat().st_mtime_ns == stamp  # adapted once, not again

    experiment["students"][1]["overrides"] = ["adapt.max_steps=9"]
    config.write_text(yaml.safe_dump(experiment))
    assert main(["distill", "--config", str(config), "--output", str(tmp_path / "other")]) == 2


def test_adapt_refuses_a_checkpoint_without_a_masked_lm_head(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    BertModel.from_pretrained(tiny_teacher_dir).save_pretrained(bare)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).write_bytes((tiny_teacher_dir / name).read_bytes())
    assert main(adapt_args(bare, corpus_file, tmp_path / "out", cache_dir, 2)) == 2
    err = capsys.readouterr().err
    assert "not a masked language model" in err or "no trained masked-LM head" in err
    assert "Traceback" not in err
