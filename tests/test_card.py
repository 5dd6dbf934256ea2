"""`monodistill card`: the same parameter count as the report, a word on degenerate students, scores with
their seed count, and an experiment folder answered with the students it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import AutoModel, BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from monodistill.card import render_card
from monodistill.card.metadata import front_matter, model_index_results
from monodistill.card.results import evaluation_section
from monodistill.cli import main
from monodistill.config import DistillConfig, load_config, save_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import summarise
from monodistill.evaluate.tasks import load_task

from .report_fixtures import task_result


def encoder_count(folder: Path) -> int:
    """The encoder with its embeddings, heads (and BERT's pooler) aside, counted on the loaded model."""
    encoder = AutoModel.from_pretrained(folder)
    return sum(parameter.numel() for name, parameter in encoder.named_parameters() if not name.startswith("pooler."))


@pytest.fixture
def run_dir(tmp_path: Path, tiny_teacher_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    """A finished distillation run of `monodistill run`'s layout: a 1-layer student of the tiny teacher."""
    run = tmp_path / "exp" / "students" / "tiny"
    shape = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    student = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), max_position_embeddings=64, **shape))
    student.save_pretrained(run / "student")
    tiny_tokenizer.save_pretrained(run / "student")
    config = load_config(
        DistillConfig,
        updates={
            "teacher": {"name_or_path": str(tiny_teacher_dir)},
            "data": {"corpus": str(tmp_path / "corpus.txt"), "language": "tl"},
            "student": {"name": "tiny"},
        },
    )
    save_config(config, run / "config.yaml")
    (run / "environment.json").write_text(json.dumps({"train_blocks": 10}))
    write_validations(run, [(30, 0.2), (60, 0.3)], token_id=5)
    return run


def distill_args(teacher: Path, corpus: Path, run: Path, cache: Path, *extra: str) -> list[str]:
    """`monodistill distill` of a 1-layer student for 4 steps: a finished run with the card it saved."""
    shape = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16", "student.intermediate_size=32"]
    budget = ["student.num_heads=2", "data.max_seq_length=32", "train.batch_size=4", "data.max_validation_blocks=4"]
    common = ["--teacher", str(teacher), "--corpus", str(corpus), "--output", str(run), "--max-steps", "4"]
    return ["distill", *common, *shape, *budget, f"data.cache_dir={cache}", *extra]


def write_validations(run: Path, shares: list[tuple[int, float]], token_id: int) -> None:
    metrics = {"mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3, "student_accuracy": 0.2}
    records = [
        {"split": "validation", "step": step, **metrics}
        | {"student_top_prediction_share": share, "student_top_prediction_id": float(token_id)}
        for step, share in shares
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


def test_the_card_counts_parameters_as_the_report_does(run_dir: Path, tiny_teacher_dir: Path) -> None:
    card = render_card(run_dir)
    student, teacher = encoder_count(run_dir / "student"), encoder_count(tiny_teacher_dir)
    assert f"| parameters (the encoder with its embeddings, heads aside) | {student:,} | {teacher:,} |" in card
    assert f"{teacher / student:.1f}x fewer parameters than the teacher" in card


def test_the_card_explains_a_degenerate_student(run_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    assert "degenerate" not in render_card(run_dir)
    period = tiny_tokenizer.convert_tokens_to_ids(".")
    write_validations(run_dir, [(30, 0.95), (60, 0.95)], token_id=period)
    card = render_card(run_dir)
    assert f"tiny predicts the token `.` (id {period}) at 95% of masked positions" in card
    assert "a degenerate student" in card and "smoke-test budget" in card
    assert "validation metrics did not change between steps 30 and 60" in card


def test_a_student_whose_mlm_head_is_never_trained_is_not_called_degenerate(
    run_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    settings = yaml.safe_load((run_dir / "config.yaml").read_text())  # resolved: every loss weight is there
    settings["loss"] |= {"alpha_kl": 0.0, "alpha_mlm": 0.0, "alpha_hidden": 1.0, "alpha_attention": 1.0}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(settings))
    write_validations(run_dir, [(30, 0.97), (60, 0.97)], token_id=tiny_tokenizer.convert_tokens_to_ids("."))
    card = render_card(run_dir)
    assert "degenerate" not in card and "tiny's masked-LM head is never trained" in card


def test_card_of_an_experiment_folder_names_its_students(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = run_dir.parent.parent
    (experiment / "config.yaml").write_text("name: exp\n")
    with pytest.raises(MonodistillError, match="students/tiny") as error:
        render_card(experiment)
    assert "experiment folder" in str(error.value) and f"monodistill card {run_dir}" in str(error.value)
    assert main(["card", str(experiment)]) == 2
    assert "students/tiny" in capsys.readouterr().err


def one_seed_summary(student: Path, seeds: int) -> dict[str, Any]:
    return {
        "baseline": "teacher",
        "tasks": ["nli"],
        "models": {
            "teacher": {"model": "teacher", "tasks": {"nli": task_result(0.7, 1.0, seeds=seeds)}},
            "student": {"model": str(student), "tasks": {"nli": task_result(0.6, 2.0, seeds=seeds)}},
        },
    }


def test_card_scores_say_how_many_seeds(tmp_path: Path) -> None:
    student = tmp_path / "run" / "student"
    single = evaluation_section(one_seed_summary(student, seeds=1), student)
    assert "| nli | accuracy | 60.00 | 70.00 |" in single and "±" not in single and "n = 1" in single
    several = evaluation_section(one_seed_summary(student, seeds=2), student)
    assert "| nli | accuracy | 60.00 ± 1.00 | 70.00 ± 1.00 |" in several and "n = 2" in several


@pytest.mark.parametrize(
    ("recorded", "problem"),
    [
        ("", "is empty"),
        ("# nothing\n", "is empty"),
        ("teacher: [unclosed\n", "is not valid YAML"),
        ("- a\n", "holds a list"),
    ],
)
def test_card_and_publish_say_that_the_recorded_config_is_empty_or_unreadable(
    run_dir: Path, recorded: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_dir / "config.yaml"
    config.write_text(recorded)
    for argv in (["card", str(run_dir)], ["publish", str(run_dir), "--repo-id", "someone/tiny", "--dry-run"]):
        capsys.readouterr()
        assert main(argv) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line]
        assert len(lines) == 1 and f"{config} {problem}" in lines[0], lines
        assert "bert-base-multilingual-cased" not in lines[0]


def evaluate_on(experiment: Path, task_file: Path, models: dict[str, Path], epochs: int = 1) -> None:
    """``EXP/evaluate`` as `monodistill evaluate` leaves it after one seed of every model on the task in
    ``task_file``, fine-tuned on 5 examples and scored on 4 (scores made up, the rest as recorded)."""
    task = load_task(str(task_file))
    output = experiment / "evaluate"
    folders = [output / "results" / label for label in models]
    for folder, score in zip(folders, (0.6, 0.574), strict=False):
        result = {"metrics": {"accuracy": score}, "seed": 42, "parameters": {"total": 1}}
        result |= {"finetune_seconds": 1.0, "train_samples_per_second": 5.0, "inference_samples_per_second": 4.0}
        (folder / task.name).mkdir(parents=True)
        (folder / task.name / "seed-42.json").write_text(json.dumps(result | {"train_samples": 5, "test_samples": 4}))
    summary = summarise(folders, [str(model) for model in models.values()], list(models), [task], [42])
    (output / "summary.json").write_text(json.dumps(summary))
    (output / "config.yaml").write_text(f"epochs: {epochs}\ntasks: [{task_file}]\n")


def test_a_local_task_named_as_a_hub_task_names_its_files_and_claims_no_hub_score(
    run_dir: Path, tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    rows = "".join(f"salita {index} ng,{index % 2}\n" for index in range(12))
    (tmp_path / "hate").mkdir()
    (tmp_path / "hate" / "train.csv").write_text("text,label\n" + rows)
    (tmp_path / "hate" / "valid.csv").write_text("text,label\n" + rows.replace("salita", "iba")[:-1])
    task_file = tmp_path / "hate" / "hatespeech-filipino-local.yaml"
    task_file.write_text(
        "name: hatespeech-filipino\nkind: classification\ntrain: train.csv\ntest: valid.csv\n"
        "text_column: text\nlabel_column: label\n"
    )
    evaluate_on(run_dir.parent.parent, task_file, {"teacher": tiny_teacher_dir, "tiny": run_dir / "student"})
    card = render_card(run_dir)
    metadata = yaml.safe_load(card.split("---")[1])
    assert "model-index" not in metadata and "jcblaise" not in card and "0.574" not in card
    assert (
        "`hatespeech-filipino`: local files, not a Hub dataset: `hate/train.csv` (fine-tuned on 5 of its 12 "
        "examples) and `hate/valid.csv` as the test split (scored on 4 of its 12 examples), 1 epoch; not given to "
        "the Hub's model-index" in card
    )


def test_a_hub_task_scored_on_its_whole_split_is_given_to_model_index(run_dir: Path, tiny_teacher_dir: Path) -> None:
    summary = {
        "baseline": "teacher",
        "tasks": ["hatespeech-filipino", "newsph-nli"],
        "task_sources": {
            "hatespeech-filipino": {"hub": "jcblaise/hatespeech_filipino", "revision": "refs/convert/parquet"}
            | {"train_split": "train", "test_split": "validation", "train_rows": 10_000, "test_rows": 4_232},
            "newsph-nli": {"hub": "jcblaise/newsph_nli", "train_split": "train", "test_split": "test"}
            | {"train_rows": 400_000, "test_rows": 9_000},
        },
        "models": {
            label: {
                "model": str(model),
                "tasks": {
                    "hatespeech-filipino": task_result(0.7, 1.0) | {"train_samples": 10_000, "test_samples": 4_232},
                    "newsph-nli": task_result(0.6, 1.0) | {"train_samples": 500, "test_samples": 500},
                },
            }
            for label, model in (("teacher", tiny_teacher_dir), ("tiny", run_dir / "student"))
        },
    }
    index = model_index_results(summary, run_dir / "student", {"hatespeech-filipino": "classification"})
    assert [result["dataset"] for result in index] == [
        {
            "name": "hatespeech-filipino",
            "type": "jcblaise/hatespeech_filipino",
            "split": "validation",
            "revision": "refs/convert/parquet",
        }
    ]
    section = evaluation_section(summary, run_dir / "student", epochs=3)
    assert "the Hub dataset `jcblaise/newsph_nli`, its `train` split (fine-tuned on 500 of its 400,000" in section
    assert "(scored on 500 of its 9,000 examples), 3 epochs; a sample of the split, not given to model-index" in section


def front_matter_of(card: Path) -> dict[str, Any]:
    return yaml.safe_load(card.read_text().split("---")[1])  # type: ignore[no-any-return]


def test_the_saved_card_of_a_local_teacher_has_no_base_model(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert main(distill_args(tiny_teacher_dir, corpus_file, run, tmp_path / "cache")) == 0
    saved = front_matter_of(run / "student" / "README.md")  # the card `distill` wrote, not a rendering of it
    assert "base_model" not in saved and saved["tags"]
    assert str(tiny_teacher_dir) not in yaml.safe_dump(saved)
    assert f"the multilingual teacher `{tiny_teacher_dir}`" in (run / "student" / "README.md").read_text()
    rendered = render_card(run)
    assert "base_model" not in yaml.safe_load(rendered.split("---")[1])
    hub = load_config(DistillConfig, updates={"teacher": {"name_or_path": "google-bert/bert-base-multilingual-cased"}})
    assert yaml.safe_load(front_matter(hub))["base_model"] == "google-bert/bert-base-multilingual-cased"


def parameter_row(card: str) -> str:
    return next(line for line in card.splitlines() if line.startswith("| parameters"))


def test_every_card_and_the_distill_log_count_parameters_one_way(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(distill_args(tiny_teacher_dir, corpus_file, run, tmp_path / "cache")) == 0
    student, teacher = encoder_count(run / "student"), encoder_count(tiny_teacher_dir)
    expected = f"| parameters (the encoder with its embeddings, heads aside) | {student:,} | {teacher:,} |"
    assert parameter_row((run / "student" / "README.md").read_text()) == expected  # the card distill saved
    assert parameter_row(render_card(run)) == expected  # the card `monodistill card` and `run` write
    assert f"distilling run ({student:,} parameters: the encoder with its embeddings, heads aside)" in (
        capsys.readouterr().out
    )


def test_the_adapted_teachers_card_says_it_was_adapted_not_distilled(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adapted"
    common = ["--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(out)]
    budget = ["--max-steps", "4", "data.max_seq_length=32", "train.batch_size=4", "data.max_validation_blocks=4"]
    assert main(["adapt", *common, *budget, f"data.cache_dir={tmp_path / 'cache'}", "data.language=tl"]) == 0
    for card in ((out / "student" / "README.md").read_text(), render_card(out)):
        assert "distilled" not in card and "## Distillation" not in card and "fewer parameters" not in card
        assert "language-adaptation" in card.split("---")[1]
        assert f"The teacher `{tiny_teacher_dir}` adapted to the `tl` language by continued masked-LM training on" in (
            " ".join(card.split())
        )
        count = encoder_count(out / "student")
        assert parameter_row(card) == f"| parameters (the encoder with its embeddings, heads aside) | {count:,} |"
    assert f"training teacher-adapted ({count:,} parameters: the encoder with its embeddings" in capsys.readouterr().out


TINYBERT = ("loss.alpha_kl=0", "loss.alpha_mlm=0", "loss.alpha_hidden=1")
"""A loss with no logit or MLM term (TinyBERT's hidden-state MSE): it never trains the masked-LM head."""


def test_a_student_whose_mlm_head_is_never_trained_is_saved_and_described_as_an_encoder(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(distill_args(tiny_teacher_dir, corpus_file, run, tmp_path / "cache", *TINYBERT)) == 0
    saved = json.loads((run / "student" / "config.json").read_text())
    assert saved["mlm_head_trained"] is False  # the head is in the checkpoint, marked as never trained
    for card in ((run / "student" / "README.md").read_text(), render_card(run)):
        assert yaml.safe_load(card.split("---")[1])["pipeline_tag"] == "feature-extraction"
        assert "masked-lm" not in card.split("---")[1] and "fill-mask" not in card
        text = " ".join(card.split())
        assert "fills in masked tokens" not in text and "Its masked-LM head was never trained" in text
        assert "config.json says so (`mlm_head_trained: false`)" in text
        assert "| mlm loss |" not in card and "| student accuracy |" not in card  # scores of the untrained head
    # Not a teacher: its logits come from the untrained head.
    capsys.readouterr()
    assert main(distill_args(run / "student", corpus_file, tmp_path / "next", tmp_path / "cache")) == 2
    assert "masked-LM head was never trained" in capsys.readouterr().err
