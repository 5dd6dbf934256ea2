"""``monodistill evaluate`` on decoders end to end: language-model tasks with no fine-tuning beside a sequence and
a token task fine-tuned on the decoders, results reused, and the summary's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, PreTrainedTokenizerFast

from monodistill.cli import main

from ..conftest import make_lines, save_decoder, write_keyword_task

Tokenizers = dict[str, PreTrainedTokenizerFast]
BELEBELE = (
    "flores_passage\tquestion\tmc_answer1\tmc_answer2\tmc_answer3\tmc_answer4\tcorrect_answer_num\n"
    "Ang bata ay kumain ng mangga.\tAno ang kinain?\tmangga\tisda\tkanin\ttinapay\t1\n"
    "Si Maria ay guro.\tAno si Maria?\tdoktor\tguro\tpulis\tmagsasaka\t2\n"
)


def write_language_tasks(folder: Path) -> list[Path]:
    """A held-out text, a Belebele-format file and two prompts, each with its task file."""
    (folder / "held-out.txt").write_text("\n".join(make_lines(30, seed=9)) + "\n")
    (folder / "belebele.tsv").write_text(BELEBELE)
    specs = {
        "lm.yaml": "name: held-out\nkind: language-modeling\nfile: held-out.txt\nstride: 8\n",
        "mc.yaml": "name: belebele-mini\nkind: multiple-choice\nfile: belebele.tsv\n",
        "gen.yaml": "name: samples\nkind: generation\nprompts: [ka ma, Ang bata]\nmax_new_tokens: 5\n",
    }
    for name, spec in specs.items():
        (folder / name).write_text(spec)
    return [folder / name for name in specs]


def write_ner_task(folder: Path) -> Path:
    lines = make_lines(40, seed=7)
    sentences = ["\n".join(f"{w}\t{'B-LOC' if w.startswith('ka') else 'O'}" for w in line.split()) for line in lines]
    (folder / "train.iob").write_text("\n\n".join(sentences[:30]) + "\n")
    (folder / "test.iob").write_text("\n\n".join(sentences[30:]) + "\n")
    (folder / "ner.yaml").write_text("name: ner\nkind: token-classification\ntrain: train.iob\ntest: test.iob\n")
    return folder / "ner.yaml"


def test_decoders_are_scored_as_language_models_and_fine_tuned_on_tasks(
    decoder_tokenizers: Tokenizers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = decoder_tokenizers["byte-level"]
    teacher = save_decoder("llama", tokenizer, tmp_path / "teacher")
    student = save_decoder("qwen2", tokenizer, tmp_path / "student")
    # Qwen2.5's config names no padding token: its classifier takes the tokenizer's.
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    tasks = [*write_language_tasks(tmp_path), write_keyword_task(tmp_path, count=100), write_ner_task(tmp_path)]
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(teacher), "--model", str(student), "--output", str(out)]
    argv += [item for task in tasks for item in ("--task", str(task))]
    argv += ["epochs=1", "learning_rate=3e-3", "batch_size=16", "gradient_accumulation_steps=1", "max_length=32"]
    argv += ["save_models=true"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["keyword", "ner"]
    assert set(summary["language_tasks"]) == {"held-out", "belebele-mini", "samples"}
    for label in ("teacher", "student"):
        entry = summary["models"][label]
        held_out = entry["language"]["held-out"]
        assert held_out["metrics"]["bits_per_byte"] > 0 and held_out["stride"] == 8 and held_out["max_length"] == 32
        assert entry["language"]["belebele-mini"]["chance"] == 0.25
        assert len(entry["language"]["samples"]["samples"]) == 2
        assert {"keyword", "ner"} <= set(entry["tasks"])  # a sequence and a token classifier on each decoder
    kept = next((out / "results").glob("student-*")) / "keyword" / "model"
    assert AutoConfig.from_pretrained(kept).pad_token_id == tokenizer.pad_token_id
    table = (out / "summary.md").read_text()
    assert "bits per byte (lower is better)" in table and "| chance | belebele-mini | 25.00 | 25.00 | |" in table
    assert "Generation samples (samples): greedy decoding" in table and "Prompt: Ang bata" in table
    assert "bits per byte (lower is better)" in printed and "(language-modeling, no fine-tuning)" in printed

    # Stored results hold: a second run scores nothing again.
    result = next((out / "results").glob("teacher-*")) / "held-out" / "result.json"
    stamp = result.stat().st_mtime_ns
    assert main(argv) == 0
    assert result.stat().st_mtime_ns == stamp and "scoring teacher" not in capsys.readouterr().out


def test_language_model_tasks_alone_show_sizes_and_scores(decoder_tokenizers: Tokenizers, tmp_path: Path) -> None:
    teacher = save_decoder("gpt2", decoder_tokenizers["byte-level"], tmp_path / "teacher")
    lm, _, _ = write_language_tasks(tmp_path)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(teacher), "--task", str(lm), "--output", str(out), "max_length=16"]
    assert main([*argv, "max_eval_samples=5"]) == 0  # a quick run scores 5 of the 30 documents
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["teacher"]["language"]["held-out"]["documents"] == 5
    table = (out / "summary.md").read_text()
    assert table.startswith("Size (") and "| teacher | held-out |" in table and "Speed" not in table
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["language_tasks"]["held-out"]["source"]["documents"] == 30
    assert main(["report", str(out), "--output", str(tmp_path / "report")]) == 0  # no fine-tuned result to draw
    assert "| teacher | held-out |" in (tmp_path / "report" / "report.md").read_text()
    assert not (tmp_path / "report" / "quality.png").exists()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_decoder_fine_tuned_as_a_sequence_classifier_learns_the_task(
    family: str, decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    """The classifier reads each example at its last token that is not padding (right-padded batches): a tiny
    random decoder learns whether a line holds the word "ng", as a tiny encoder does."""
    model = save_decoder(family, decoder_tokenizers["byte-level"], tmp_path / family)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model), "--task", str(write_keyword_task(tmp_path)), "--output", str(out)]
    argv += ["epochs=8", "learning_rate=3e-3", "batch_size=16", "gradient_accumulation_steps=1", "max_length=32"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"][family]["tasks"]["keyword"]["metric.accuracy"]["mean"] > 0.9
