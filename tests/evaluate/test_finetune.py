"""Fine-tuning: label alignment, metrics on hand-made cases, a learnable task, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.evaluate.encode import align_labels
from monodistill.evaluate.metrics import classification_metrics, token_metrics
from monodistill.evaluate.splits import subset

from ..conftest import make_lines, save_teacher, write_keyword_task


def result_file(out: Path, label: str, task: str, name: str) -> Path:
    """A stored result: under the model's short name plus the hash of where it is."""
    (folder,) = (out / "results").glob(f"{label}-*")
    return folder / task / name


def test_labels_go_on_first_sub_tokens_only() -> None:
    # [CLS] Ma ##ynila ay lungsod [SEP] -> words 0, 0, 1, 2
    assert align_labels([None, 0, 0, 1, 2, None], [5, 0, 0]) == [-100, 5, -100, 0, 0, -100]


def test_capped_splits_are_the_same_random_subset_for_every_model() -> None:
    labels = [0] * 500 + [1] * 500  # a file sorted by label
    kept = subset(len(labels), 100, seed=42)
    assert kept == subset(len(labels), 100, seed=42) and kept == sorted(set(kept)) and len(kept) == 100
    assert 30 < sum(labels[i] for i in kept) < 70  # both classes, not the first 100 rows
    assert kept != subset(len(labels), 100, seed=43)
    assert subset(5, 100, seed=42) == [0, 1, 2, 3, 4]


def test_seqeval_entity_f1_on_a_hand_made_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    scores = token_metrics(predicted, gold, "entity-f1")
    # 3 gold entities, 2 predicted, both right: precision 1, recall 2/3, F1 0.8.
    assert scores["entity_precision"] == 1.0
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(0.8)
    assert scores["accuracy"] == pytest.approx(5 / 6)


def test_macro_f1_weighs_classes_equally() -> None:
    import numpy as np

    scores = classification_metrics(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]))
    assert scores["accuracy"] == 0.75
    assert scores["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


def test_evaluate_two_models_two_seeds_end_to_end(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    small = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    task = write_keyword_task(tmp_path)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(big), "--model", str(small), "--task", str(task), "--output", str(out)]
    argv += ["--seeds", "2", "epochs=8", "learning_rate=3e-3", "batch_size=16", "gradient_accumulation_steps=1"]
    argv += ["max_length=32"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "git_sha" in json.loads((out / "environment.json").read_text())
    entry = summary["models"]["teacher"]["tasks"]["keyword"]
    assert entry["seeds"] == [42, 43]
    assert entry["metric.accuracy"]["mean"] > 0.9  # the keyword is learned
    assert entry["finetune_speedup"] == pytest.approx(1.0)
    student = summary["models"]["student"]
    assert student["parameters"]["total"] > student["parameters"]["non_embedding"] > 0
    assert student["disk_mb"] > 0 and "inference_speedup" in student["tasks"]["keyword"]
    assert result_file(out, "student", "keyword", "seed-43.json").is_file()
    assert "± " in capsys.readouterr().out

    # A finished result is not redone: a second run only re-summarises.
    stamp = result_file(out, "teacher", "keyword", "seed-42.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert result_file(out, "teacher", "keyword", "seed-42.json").stat().st_mtime_ns == stamp


def test_token_task_end_to_end_and_bad_models(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_teacher("xlm-roberta", tiny_tokenizer, tmp_path / "model")
    lines = make_lines(80, seed=7)
    sentences = ["\n".join(f"{w}\t{'B-LOC' if w.startswith('ka') else 'O'}" for w in line.split()) for line in lines]
    (tmp_path / "train.iob").write_text("\n\n".join(sentences[:60]) + "\n")
    (tmp_path / "test.iob").write_text("\n\n".join(sentences[60:]) + "\n")
    spec = "name: ner\nkind: token-classification\ntrain: train.iob\ntest: test.iob\nlabel_column: tag\n"
    (tmp_path / "ner.yaml").write_text(spec)
    out = tmp_path / "out"
    base = ["evaluate", "--task", str(tmp_path / "ner.yaml"), "--output", str(out), "epochs=1", "max_length=16"]
    assert main([*base, "--model", str(model)]) == 0
    result = json.loads(result_file(out, "model", "ner", "seed-42.json").read_text())
    assert set(result["metrics"]) == {"accuracy", "entity_f1", "entity_precision", "entity_recall"}
    assert result["max_length"] == 16  # long sentences were truncated, not a crash
    assert result["truncation"] == "head" and 0 < result["truncated_share"]["test"] <= 1
    words = result["words"]
    assert words["scored"] == sum(len(s.split("\n")) for s in sentences[60:]) and words["cut_by_truncation"] > 0
    assert result["unseen_test_labels"] == 0

    assert main([*base, "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--model", str(tmp_path / "empty")]) == 2
    assert "holds no usable config.json" in capsys.readouterr().err


def test_a_bf16_checkpoint_is_fine_tuned_from_float32_weights_under_the_chosen_autocast(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from transformers import AutoModelForMaskedLM

    folder = save_teacher("bert", tiny_tokenizer, tmp_path / "half")
    AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.bfloat16).save_pretrained(folder)  # stored in bf16
    task = write_keyword_task(tmp_path)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(folder), "--task", str(task), "--output", str(out), "epochs=1"]
    argv += ["max_length=16", "max_train_samples=32", "max_eval_samples=16"]
    assert main([*argv, "mixed_precision=bf16"]) == 0
    result = json.loads(result_file(out, "half", "keyword", "seed-42.json").read_text())
    assert result["dtype"] == "float32" and result["mixed_precision"] == "bf16"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mixed_precision"] == ["bf16"]
    assert "mixed precision bf16" in (out / "summary.md").read_text()

    # fp16 autocast needs CUDA: refused with one line instead of silently running in float32.
    if not torch.cuda.is_available():
        assert main([*argv, f"output_dir={tmp_path / 'fp16'}", "mixed_precision=fp16"]) == 2
        assert "evaluate.mixed_precision=fp16 needs a CUDA GPU" in capsys.readouterr().err


def test_models_sharing_a_tokenizer_tokenise_each_task_once_and_are_ranked(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monodistill.evaluate import splits as splits_module

    calls: list[str] = []
    tokenize_task = splits_module.tokenize_task

    def counted(task: object, *args: object, **kwargs: object) -> object:
        calls.append(getattr(task, "name"))  # noqa: B009
        return tokenize_task(task, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(splits_module, "tokenize_task", counted)
    first = save_teacher("bert", tiny_tokenizer, tmp_path / "first")
    second = save_teacher("bert", tiny_tokenizer, tmp_path / "second")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(first), "--model", str(second), "--task", str(write_keyword_task(tmp_path))]
    argv += ["--output", str(out), "--seeds", "2", "epochs=1", "max_length=16", "max_train_samples=16"]
    assert main(argv) == 0
    assert calls == ["keyword"]  # 2 models x 2 seeds, one tokenizer: tokenised once
    summary = json.loads((out / "summary.json").read_text())
    ranks = sorted(entry["tasks"]["keyword"]["rank"] for entry in summary["models"].values())
    assert ranks in ([1, 2], [1, 1])  # tied means share a rank


def test_ranks_and_welch_marks_against_the_first_model() -> None:
    from monodistill.evaluate.summary import rank_and_compare
    from monodistill.evaluate.tables import format_summary

    def entry(values: list[float]) -> dict[str, object]:
        mean = sum(values) / len(values)
        metric = {"mean": mean, "std": 0.01, "values": values}
        cost = {"mean": 1.0, "std": 0.0, "values": [1.0]}
        return {
            "main_metric": "accuracy",
            "metric.accuracy": metric,
            "finetune_seconds": cost,
            "inference_samples_per_second": cost,
        }

    teacher, worse, same = entry([0.90, 0.91, 0.92]), entry([0.50, 0.52, 0.51]), entry([0.91, 0.90, 0.92])
    rank_and_compare([teacher, worse, same])
    assert (teacher["rank"], same["rank"], worse["rank"]) == (1, 1, 3)
    assert worse["welch_p"] < 0.01 and same["welch_p"] > 0.5  # type: ignore[operator]
    parameters = {"total": 1, "non_embedding": 1}
    summary = {
        "baseline": "teacher",
        "tasks": ["t"],
        "models": {
            name: {"parameters": parameters, "disk_mb": None, "tasks": {"t": value}}
            for name, value in (("teacher", teacher), ("worse", worse), ("same", same))
        },
    }
    table = format_summary(summary)
    assert "| worse | 51.00 ± 1.00** (3) |" in table and "| same | 91.00 ± 1.00 (1) |" in table


def test_the_training_loss_is_a_mean_whatever_the_accumulation(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    """transformers 5's BERT heads accept **kwargs but ignore num_items_in_batch, so the Trainer took their
    loss as already scaled and summed it over accumulated micro-batches (4.2 logged for a 3-class task)."""
    import json

    from ..conftest import save_teacher, write_keyword_task

    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    task = write_keyword_task(tmp_path)
    losses = {}
    for accumulation in (1, 4):
        out = tmp_path / f"out-{accumulation}"
        argv = ["evaluate", "--model", str(model), "--task", str(task), "--output", str(out), "epochs=1"]
        argv += ["max_length=16", "max_train_samples=64", "max_eval_samples=8", "batch_size=4"]
        assert main([*argv, f"gradient_accumulation_steps={accumulation}"]) == 0
        (result,) = (out / "results").rglob("seed-*.json")
        losses[accumulation] = json.loads(result.read_text())["train_loss"]
    assert 0.3 < losses[1] < 1.5 and 0.3 < losses[4] < 1.5  # about ln 2 for a 2-class task
    assert 0.6 < losses[4] / losses[1] < 1.6


def test_welch_on_seeds_without_spread_raises_no_warning_and_claims_nothing_it_cannot_test() -> None:
    """Seeds that all score alike leave Welch's test undefined when both models' do (no mark, no p) and
    valid when only one model's do; scipy's precision-loss warning never reaches the tables."""
    import warnings

    from monodistill.evaluate.summary import rank_and_compare

    def entry(values: list[float]) -> dict[str, object]:
        metric = {"mean": sum(values) / len(values), "std": 0.0, "values": values}
        return {"main_metric": "accuracy", "metric.accuracy": metric}

    teacher = entry([0.8125, 0.8125, 0.8125])
    constant = entry([0.5, 0.5, 0.5])  # another score, alike on every seed: nothing to test against
    rounding = entry([0.8125, 0.8125, 0.8125000000000001])  # the teacher's, but for float rounding
    varied = entry([0.5, 0.52, 0.51])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_and_compare([teacher, constant, rounding, varied])
    assert "welch_p" not in constant and "welch_p" not in rounding
    assert varied["welch_p"] < 0.01  # type: ignore[operator]
