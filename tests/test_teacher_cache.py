"""The teacher cache: sparse summaries and the KL read from them, building, resuming, damage, sharing, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.losses import SparseTargets, kl_divergence, sparse_kl_divergence
from monodistill.teacher_cache.store import MANIFEST
from monodistill.teacher_cache.summary import sample_summary, topk_summary, validation_summary

from .conftest import REPO_ROOT, build_tiny_teacher, decoder_tokenizer, save_decoder
from .test_distill import STUDENT, stop_at, weights


def targets_of(summary: object, samples: int | None = None) -> SparseTargets:
    lengths, ids, probs = summary.lengths, summary.ids, summary.probs  # type: ignore[attr-defined]
    counts = summary.counts  # type: ignore[attr-defined]
    weights_ = counts.float() / samples if counts is not None and samples else probs
    return SparseTargets(lengths, ids, probs, weights_, summary.rest)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------- summaries and the KL


def test_top_k_over_the_whole_vocabulary_is_the_exact_kl_and_its_gradient() -> None:
    torch.manual_seed(0)
    teacher, student = torch.randn(6, 50) * 3, torch.randn(6, 50, requires_grad=True)
    probs = torch.log_softmax(teacher / 2.0, -1).exp()
    sparse = targets_of(topk_summary(probs, 50))
    assert float(sparse.rest.abs().max()) == 0.0  # type: ignore[union-attr]
    exact = kl_divergence(student, teacher, 2.0, "sum")
    (exact_grad,) = torch.autograd.grad(exact, student)
    cached = sparse_kl_divergence(student, sparse, 2.0, "sum")
    (cached_grad,) = torch.autograd.grad(cached, student)
    assert torch.allclose(cached, exact, rtol=1e-5)
    assert torch.equal(cached_grad, exact_grad)  # the same tensor: -p scattered where kl_div puts -exp(log p)


def test_top_k_is_the_kl_of_k_plus_one_outcomes() -> None:
    torch.manual_seed(1)
    teacher, student = torch.randn(4, 30) * 2, torch.randn(4, 30)
    p, q = teacher.softmax(-1), student.softmax(-1)
    summary = topk_summary(p, 5)
    cached = sparse_kl_divergence(student, targets_of(summary), 1.0, "sum")
    expected = 0.0
    for row in range(4):
        top = p[row].topk(5).indices
        rest_p, rest_q = 1 - p[row, top].sum(), 1 - q[row, top].sum()
        expected += float((p[row, top] * (p[row, top] / q[row, top]).log()).sum() + rest_p * (rest_p / rest_q).log())
    assert float(cached) == pytest.approx(expected, rel=1e-4)
    assert float(cached) < float(kl_divergence(student, teacher, 1.0, "sum"))  # coarser: never more than the KL


def test_a_sample_keeps_distinct_tokens_with_counts_that_add_up() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 1.0]])
    summary = sample_summary(probs, 40, torch.Generator().manual_seed(0))
    assert summary.counts is not None and int(summary.counts.sum()) == 80
    assert summary.lengths.tolist()[1] == 1 and summary.ids[-1] == 3 and summary.counts[-1] == 40
    assert 3 not in summary.ids[: int(summary.lengths[0])].tolist()  # a token of probability 0 is never drawn


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(3, 40), temperature=st.sampled_from([1.0, 2.0, 4.0]))
def test_the_sampled_kl_gradient_is_unbiased(seed: int, vocab: int, temperature: float) -> None:
    """The mean of the cached gradient over many draws converges to the exact gradient (within 5 standard
    errors, per logit), where the top-k gradient with k < V stays biased."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(1, vocab, generator=generator) * 3
    student = torch.randn(1, vocab, generator=generator)
    draws, samples = 4000, 8
    probs = torch.log_softmax(teacher / temperature, -1).exp()
    summary = sample_summary(probs.expand(draws, vocab).contiguous(), samples, generator)
    logits = student.expand(draws, vocab).clone().requires_grad_(True)
    sparse_kl_divergence(logits, targets_of(summary, samples), temperature, "sum").backward()
    grads = logits.grad  # (draws, V): one estimate per draw
    assert grads is not None
    exact_logits = student.clone().requires_grad_(True)
    kl_divergence(exact_logits, teacher, temperature, "sum").backward()
    assert exact_logits.grad is not None
    exact = exact_logits.grad[0]
    # The gradient is T (q - counts / S): each coordinate's standard error is T sqrt(p (1 - p) / (S draws)).
    error = temperature * (probs[0] * (1 - probs[0]) / (samples * draws)).sqrt()
    assert bool(((grads.mean(0) - exact).abs() <= 5 * error + 1e-6).all())
    # The top-1 gradient is not an estimate but a fixed bias: the tail's target is the student's own tail shape
    # scaled to the teacher's tail mass, T (q - p~) with p~_i = p_rest q_i / q_rest, so it misses T (p - p~).
    topk_logits = student.clone().requires_grad_(True)
    sparse_kl_divergence(topk_logits, targets_of(topk_summary(probs, 1)), temperature, "sum").backward()
    assert topk_logits.grad is not None
    q = torch.log_softmax(student[0] / temperature, -1).exp()
    top = int(probs[0].argmax())
    tail = torch.ones(vocab, dtype=torch.bool)
    tail[top] = False
    smoothed = probs[0].clone()
    smoothed[tail] = probs[0][tail].sum() * q[tail] / q[tail].sum()
    bias = temperature * (probs[0] - smoothed)
    assert torch.allclose(topk_logits.grad[0] - exact, bias, atol=1e-5)
    if float(bias.abs().max()) > 10 * float(error.max()):  # where the bias is large, the sample mean shows none
        assert float((grads.mean(0) - exact).abs().max()) < float(bias.abs().max()) / 2


def test_the_sampled_kl_value_is_an_unbiased_estimate_of_the_kl() -> None:
    generator = torch.Generator().manual_seed(3)
    teacher, student = torch.randn(1, 20, generator=generator) * 2, torch.randn(1, 20, generator=generator)
    probs = teacher.softmax(-1)
    summary = sample_summary(probs.expand(20_000, 20).contiguous(), 4, generator)
    mean = sparse_kl_divergence(student.expand(20_000, 20), targets_of(summary, 4), 1.0, "mean")
    assert float(mean) == pytest.approx(float(kl_divergence(student, teacher, 1.0)), rel=0.03)


def test_validation_summaries_hold_the_true_token_and_spread_the_rest() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05], [0.05, 0.05, 0.1, 0.3, 0.5]])
    summary = validation_summary(probs, torch.tensor([4, 4]), 2)
    assert summary.lengths.tolist() == [3, 2]  # the first row's target is outside its top 2
    sparse = targets_of(summary)
    dense = sparse.dense_log_probs(5).exp()
    assert dense[0].tolist() == pytest.approx([0.5, 0.3, 0.075, 0.075, 0.05])
    assert dense[1].tolist() == pytest.approx([0.2 / 3, 0.2 / 3, 0.2 / 3, 0.3, 0.5])


# ----------------------------------------------------------------------------------------------- end to end


def distil(teacher: Path, corpus: Path, run: Path, cache: Path, steps: int, *extra: str) -> int:
    return main(
        [
            "distill",
            "--teacher", str(teacher),
            "--corpus", str(corpus),
            "--output", str(run),
            "--max-steps", str(steps),
            "--save-steps", "2",
            *STUDENT,
            f"data.cache_dir={cache}",
            *extra,
        ]
    )  # fmt: skip


def close(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.mark.parametrize("objective", ["masked", "causal"])
def test_top_k_over_the_whole_vocabulary_trains_the_student_of_the_live_teacher(
    objective: str,
    tiny_teacher_dir: Path,
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast],
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
) -> None:
    """Within 1e-5: the cache's probabilities are the live KL's exp(log_softmax) of the same logits, but the
    teacher's matrix products ran on batches of other blocks (corpus order, not the run's), whose shapes BLAS blocks
    otherwise: the logits differ in their last bits (measured: a few 1e-7 at most in the weights)."""
    teacher = tiny_teacher_dir
    if objective == "causal":
        teacher = save_decoder("llama", decoder_tokenizer("llama", decoder_tokenizers), tmp_path / "llama")
    vocab = json.loads((teacher / "config.json").read_text())["vocab_size"]
    assert distil(teacher, corpus_file, tmp_path / "live", cache_dir, 6, "data.static_masks=true") == 0
    cached = (
        f"teacher_cache={tmp_path / 'cache-topk'}",
        "cache.method=topk",
        f"cache.k={vocab}",
        "cache.precision=float32",
    )
    assert distil(teacher, corpus_file, tmp_path / "cached", cache_dir, 6, *cached) == 0
    assert close(weights(tmp_path / "live"), weights(tmp_path / "cached")) < 1e-5
    live = json.loads((tmp_path / "live" / "metrics.jsonl").read_text().splitlines()[-1])
    read = json.loads((tmp_path / "cached" / "metrics.jsonl").read_text().splitlines()[-1])
    assert read["kl_to_teacher"] == pytest.approx(live["kl_to_teacher"], rel=1e-3)  # the validation summary's
    assert read["teacher_mlm_loss"] == pytest.approx(live["teacher_mlm_loss"], rel=1e-4)


@pytest.mark.parametrize("method", ["sample", "topk"])
def test_validation_read_from_a_float16_cache_is_the_live_teachers_where_its_probabilities_are_tiny(
    method: str,
    tiny_tokenizer: PreTrainedTokenizerFast,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
) -> None:
    """A sure teacher gives many true tokens less than float16's smallest subnormal (6e-8): stored so, they read as
    0 (an infinite teacher loss) or, clamped, as 6e-8 (a loss too low), as mmt-mini's validation did (6.369 nats
    read against 6.396 live). Validation's summaries keep float32 whatever ``cache.precision`` says."""
    model = build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    with torch.no_grad():  # logits 200x as far apart: most true tokens get a probability far below 6e-8
        model.cls.predictions.transform.LayerNorm.weight.mul_(200.0)
        model.cls.predictions.transform.LayerNorm.bias.mul_(200.0)
    teacher = tmp_path / "sure"
    model.save_pretrained(teacher)
    tiny_tokenizer.save_pretrained(teacher)
    assert distil(teacher, corpus_file, tmp_path / "live", cache_dir, 2, "data.static_masks=true") == 0
    cached = (f"teacher_cache={tmp_path / 'teacher-cache'}", f"cache.method={method}", "cache.k=8")
    assert distil(teacher, corpus_file, tmp_path / "cached", cache_dir, 2, *cached) == 0
    live = json.loads((tmp_path / "live" / "metrics.jsonl").read_text().splitlines()[-1])
    read = json.loads((tmp_path / "cached" / "metrics.jsonl").read_text().splitlines()[-1])
    assert live["teacher_mlm_loss"] > 30  # the case this is about: true tokens below float16's range (16.6 nats)
    assert read["teacher_mlm_loss"] == pytest.approx(live["teacher_mlm_loss"], rel=1e-4)
    assert read["teacher_accuracy"] == live["teacher_accuracy"]


def test_a_sampled_cache_is_reused_by_another_student_and_the_teacher_is_not_run_again(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cache-sample"
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "a", cache_dir, 4, f"teacher_cache={folder}") == 0
    assert "shards to build" in capsys.readouterr().out
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["method"] == "sample" and manifest["samples"] == 64
    epochs = {name.split("-")[1] for name in manifest["shards"] if name.startswith("train")}
    assert epochs == {"e000"}  # 4 steps of 4 blocks: within the first epoch
    other = ("student.num_layers=1", "train.seed=7", f"teacher_cache={folder}")
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "b", cache_dir, 4, *other) == 0
    assert "shards to build" not in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(record["loss"]) for record in records if record["split"] == "train")


def test_a_student_reading_the_cache_resumes_exactly(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = f"teacher_cache={tmp_path / 'teacher-cache'}"
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "whole", cache_dir, 6, cached) == 0
    stop_at(monkeypatch, 3)
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "stopped", cache_dir, 6, cached) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "stopped", cache_dir, 6, cached, "--resume") == 0
    assert close(weights(tmp_path / "whole"), weights(tmp_path / "stopped")) == 0.0


def cache_command(teacher: Path, corpus: Path, folder: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "monodistill.cli", "cache-teacher",
        "--teacher", str(teacher), "--corpus", str(corpus), "--output", str(folder),
        "data.max_seq_length=32", "train.batch_size=4", f"data.cache_dir={cache}", "data.max_validation_blocks=8",
        "data.max_documents=150", "cache.shard_blocks=8", "cache.batch_size=4",
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": str(torch.get_num_threads())}


def shard_files(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / MANIFEST).read_text())
    return {
        f"{name}/{file}": digest
        for name, entry in manifest["shards"].items()
        for file, digest in entry["files"].items()
    }


def test_a_killed_build_continues_where_it_stopped_and_draws_the_same(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = subprocess_env()
    assert main(cache_command(tiny_teacher_dir, corpus_file, whole, cache_dir)[3:]) == 0
    process = subprocess.Popen(cache_command(tiny_teacher_dir, corpus_file, killed, cache_dir), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / MANIFEST).is_file() and len(json.loads((killed / MANIFEST).read_text())["shards"]) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(json.loads((killed / MANIFEST).read_text())["shards"])
    assert 3 <= done < len(shard_files(whole)) // 3  # killed part-way (each shard has 3 or more files)
    result = subprocess.run(
        cache_command(tiny_teacher_dir, corpus_file, killed, cache_dir), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(json.loads((whole / MANIFEST).read_text())['shards']) - done} of" in result.stdout
    assert shard_files(killed) == shard_files(whole)


def test_a_damaged_shard_is_found_by_its_checksum_and_built_again(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "teacher-cache"
    assert main(cache_command(tiny_teacher_dir, corpus_file, folder, cache_dir)[3:]) == 0
    before = shard_files(folder)
    damaged = folder / "train-e000-00001" / "probs.npy"
    data = bytearray(damaged.read_bytes())
    data[-3] ^= 0xFF
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(cache_command(tiny_teacher_dir, corpus_file, folder, cache_dir)[3:]) == 0
    out = capsys.readouterr().out
    assert "train-e000-00001/probs.npy does not match its checksum; building the shard again" in out
    assert "1 of" in out and shard_files(folder) == before


def test_two_builders_of_one_cache_at_once_leave_it_whole(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path
) -> None:
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    env = subprocess_env()
    assert main(cache_command(tiny_teacher_dir, corpus_file, alone, cache_dir)[3:]) == 0
    processes = [
        subprocess.Popen(
            cache_command(tiny_teacher_dir, corpus_file, shared, cache_dir), env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert sum("shards to build" in output for output in outputs) == 1  # one built; the other waited and read it
    assert shard_files(shared) == shard_files(alone)


# ------------------------------------------------------------------------------------------------- refusals


def test_a_cache_built_with_other_settings_is_refused_naming_the_setting(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = f"teacher_cache={tmp_path / 'teacher-cache'}"
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "a", cache_dir, 2, folder) == 0
    capsys.readouterr()
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "b", cache_dir, 2, folder, "loss.temperature=2.0") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "was built with loss.temperature=4.0, this run has loss.temperature=2.0" in error


@pytest.mark.parametrize(
    ("steps", "extra", "message"),
    [
        (2, ("loss.alpha_hidden=1.0",), "reads the teacher's hidden states or attention projections"),
        (2, ("loss.logit_loss=reverse_kl",), "loss.logit_loss=reverse_kl needs the teacher's whole distribution"),
        (70, ("cache.epochs=1",), "cache.epochs=1 caches the masks of fewer epochs than the run takes (2)"),
    ],
)
def test_what_a_cache_cannot_serve_is_refused_in_one_line(
    steps: int,
    extra: tuple[str, ...],
    message: str,
    tiny_teacher_dir: Path,
    corpus_file: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ("teacher_cache=auto", *extra)
    assert distil(tiny_teacher_dir, corpus_file, tmp_path / "run", cache_dir, steps, *run) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


def test_a_run_config_with_a_trimmed_vocabulary_builds_the_cache_its_students_read(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vocab = tmp_path / "vocab"
    trim = ["vocab", "--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(vocab)]
    assert main(trim) == 0
    student = "{preset: custom, num_layers: 1, hidden_size: 16, intermediate_size: 32, num_heads: 2"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"teacher: {{name_or_path: {tiny_teacher_dir}}}\n"
        f"vocab: {{path: {vocab}}}\n"
        f"students:\n  - {student}, name: a}}\n  - {student}, name: b, overrides: [loss.alpha_mlm=0.0]}}\n"
        f"data: {{corpus: {corpus_file}, max_seq_length: 32, max_validation_blocks: 8, cache_dir: {cache_dir}}}\n"
        "train: {max_steps: 4, batch_size: 4, eval_interval: 4}\n"
    )
    folder = tmp_path / "teacher-cache"
    assert main(["cache-teacher", "--config", str(config), "--vocab", str(vocab), "--output", str(folder)]) == 0
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["settings"]["vocabulary"] != "full"
    assert manifest["vocab_size"] == len(json.loads((vocab / "id_map.json").read_text())["id_map"])
    capsys.readouterr()
    experiment = tmp_path / "experiment"
    assert main(["distill", "--config", str(config), "--output", str(experiment), f"teacher_cache={folder}"]) == 0
    assert "shards to build" not in capsys.readouterr().out
    for name in ("a", "b"):
        final = json.loads((experiment / "students" / name / "metrics.jsonl").read_text().splitlines()[-1])
        assert 0 < final["teacher_mass_outside_vocab"] < 1 and final["kl_to_teacher"] > 0
        card = (experiment / "students" / name / "student" / "README.md").read_text()
        assert "- Teacher: read from a cache of its outputs (`sample`), run once: 64 tokens drawn per position" in card
