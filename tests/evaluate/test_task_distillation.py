"""Task-stage distillation (evaluate.distil_from): the loss, the alignment of teacher logits, and the harness."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForSequenceClassification,
    DataCollatorForTokenClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForTokenClassification,
    TrainingArguments,
)

from monodistill.cli import main
from monodistill.config import EvaluateConfig
from monodistill.evaluate import task_teacher
from monodistill.evaluate.distil import (
    DistillingTrainer,
    TeacherCollator,
    TeacherLogits,
    align_targets,
    predict_teacher,
    task_distillation_loss,
)
from monodistill.evaluate.encode import Encoder
from monodistill.evaluate.finetune import finetune
from monodistill.evaluate.results import model_identity
from monodistill.evaluate.tasks import load_task

from ..conftest import SPECIALS, make_lines, save_teacher, write_keyword_task

QUICK = ["epochs=1", "max_length=16", "max_train_samples=24", "max_eval_samples=8", "batch_size=8"]
QUICK += ["gradient_accumulation_steps=1"]


def fine_tuned(log: str) -> list[str]:
    """The models a log says it fine-tunes, in order."""
    return [
        line.split(" on ")[0].removeprefix("fine-tuning ")
        for line in log.splitlines()
        if line.startswith("fine-tuning ")
    ]


def hand_kl(student: list[float], teacher: list[float], temperature: float) -> float:
    """KL(teacher_T || student_T) * T^2 for one position, written out."""

    def softmax(logits: list[float]) -> list[float]:
        exps = [math.exp(value / temperature) for value in logits]
        return [value / sum(exps) for value in exps]

    p, q = softmax(teacher), softmax(student)
    return temperature**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_distillation_loss_is_the_kl_at_labelled_positions_with_a_teacher() -> None:
    student = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    teacher = [[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]]
    labels = torch.tensor([0, 2])
    loss = task_distillation_loss(torch.tensor(student), torch.tensor(teacher), labels, temperature=2.0)
    expected = (hand_kl(student[0], teacher[0], 2.0) + hand_kl(student[1], teacher[1], 2.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    same = task_distillation_loss(torch.tensor(student), torch.tensor(student), labels, temperature=2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)

    # Token tasks: (B, T, C); a piece without a label, or without a teacher distribution, has no term.
    tokens = torch.tensor([student + [[9.0, -9.0, 0.0]]])  # (1, 3, 3)
    targets = torch.tensor([teacher + [[-9.0, 9.0, 0.0]]])
    mask = torch.tensor([[True, False, True]])
    token_labels = torch.tensor([[1, 0, -100]])
    loss = task_distillation_loss(tokens, targets, token_labels, 2.0, mask)
    assert loss.item() == pytest.approx(hand_kl(student[0], teacher[0], 2.0), rel=1e-5)
    changed = targets.clone()
    changed[0, 1:] = 5.0  # ignored positions: the loss does not move
    assert task_distillation_loss(tokens, changed, token_labels, 2.0, mask).item() == pytest.approx(loss.item())
    nothing = task_distillation_loss(tokens, targets, torch.full((1, 3), -100), 2.0, mask)
    assert nothing.item() == 0.0


def test_compute_loss_weighs_the_task_loss_and_the_kl_by_alpha(tmp_path: Path) -> None:
    torch.manual_seed(0)
    shape = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    model = BertForSequenceClassification(BertConfig(vocab_size=50, **shape)).eval()
    arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = DistillingTrainer(model=model, args=arguments, alpha=0.3, temperature=2.0)
    inputs = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 11, 3, 0]]), "labels": torch.tensor([1, 0])}
    inputs["attention_mask"] = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    teacher = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        loss = trainer.compute_loss(model, {**inputs, "teacher_logits": teacher})
        plain = trainer.compute_loss(model, dict(inputs))  # no teacher logits (evaluation): the task loss alone
    cross_entropy = torch.nn.functional.cross_entropy(logits, inputs["labels"]).item()
    kl = sum(hand_kl(logits[i].tolist(), teacher[i].tolist(), 2.0) for i in range(2)) / 2
    assert plain.item() == pytest.approx(cross_entropy, rel=1e-5)
    assert loss.item() == pytest.approx(0.7 * cross_entropy + 0.3 * kl, rel=1e-5)


def test_teacher_logits_go_on_the_students_first_piece_of_the_same_word() -> None:
    # Three words; the teacher cut word 1 (no piece left), the student split word 2 in two.
    word_logits = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    teacher = TeacherLogits([word_logits], [np.array([True, False, True])], seconds=0.0)
    targets = align_targets(teacher, [[None, 0, 0, 1, 2, 2, None]])
    assert targets.mask is not None and targets.mask[0].tolist() == [False, True, False, False, True, False, False]
    assert targets.logits[0][1].tolist() == [1.0, 0.0] and targets.logits[0][4].tolist() == [0.0, 3.0]
    assert targets.words_without_teacher == 1

    def pad_labels(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["labels"]) for feature in features)
        return {
            "labels": torch.tensor(
                [feature["labels"] + [-100] * (length - len(feature["labels"])) for feature in features]
            )
        }

    two = TeacherLogits([word_logits, word_logits[:1]], [np.array([True, False, True]), np.array([True])], 0.0)
    both = align_targets(two, [[None, 0, 0, 1, 2, 2, None], [None, 0, None]])
    batch = TeacherCollator(pad_labels, both)(
        [{"labels": [-100] * 3, "teacher_index": 1}, {"labels": [-100] * 7, "teacher_index": 0}]
    )
    assert batch["teacher_logits"].shape == (2, 7, 2) and batch["teacher_mask"].shape == (2, 7)
    assert batch["teacher_mask"][0].tolist() == [False, True] + [False] * 5  # padded as the labels are
    assert batch["teacher_mask"][1].tolist() == targets.mask[0].tolist()
    assert batch["teacher_logits"][0, 1].tolist() == [1.0, 0.0]


def test_a_left_padding_teachers_word_logits_are_those_of_each_sentence_alone(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    left = copy.deepcopy(tiny_tokenizer)
    left.padding_side = "left"
    # RoBERTa counts positions past the padding, so a left-padded sentence gets the logits it has alone.
    config = RobertaConfig(
        vocab_size=len(left), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=66, pad_token_id=left.pad_token_id, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RobertaForTokenClassification(config).eval().requires_grad_(False)
    sentences = [line.split() for line in make_lines(6, seed=11)]
    rows = Encoder(left, 64)(sentences, words=True)
    split = datasets.Dataset.from_dict({"input_ids": rows["input_ids"], "attention_mask": rows["attention_mask"]})
    assert len({len(ids) for ids in rows["input_ids"]}) > 1  # batches are padded
    collator = DataCollatorForTokenClassification(left)
    num_words = [len(words) for words in sentences]

    def predict(batch_size: int) -> TeacherLogits:
        settings = EvaluateConfig(eval_batch_size=batch_size)
        return predict_teacher(model, split, collator, settings, rows["word_ids"], num_words)

    batched, alone = predict(len(sentences)), predict(1)
    assert batched.seen is not None and all(seen.all() for seen in batched.seen)
    for padded, unpadded in zip(batched.logits, alone.logits, strict=True):
        np.testing.assert_allclose(padded, unpadded, atol=1e-5)


def test_with_alpha_one_the_student_follows_the_teacher_not_the_gold_labels(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    student = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    task = load_task(str(write_keyword_task(tmp_path, count=150)))
    # A teacher that says "0" for every training example, though most gold labels are 1.
    teacher = TeacherLogits([np.array([3.0, -3.0], dtype=np.float32)] * len(task.train), None, 0.0)
    share_of_zeros = 1 - float(np.mean(task.test["label"]))
    settings = {"epochs": 4.0, "learning_rate": 3e-3, "batch_size": 16, "gradient_accumulation_steps": 1}
    accuracy = {}
    for alpha in (0.0, 1.0):
        config = EvaluateConfig(max_length=16, distil_alpha=alpha, **settings)
        result = finetune(str(student), tiny_tokenizer, task, config, seed=42, teacher=teacher)
        assert result["distillation"]["alpha"] == alpha
        accuracy[alpha] = result["metrics"]["accuracy"]
    assert accuracy[1.0] == pytest.approx(share_of_zeros)  # predicts 0 everywhere, as its teacher
    assert accuracy[0.0] > share_of_zeros + 0.1


def _model_with_a_smaller_vocabulary(folder: Path) -> Path:
    """A model whose WordPiece vocabulary is smaller than the fixture's: it splits words differently."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        make_lines(600, seed=1), trainers.WordPieceTrainer(vocab_size=60, special_tokens=SPECIALS)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.mask_token = "[MASK]"
    return save_teacher("bert", fast, folder)


def test_a_token_task_distils_across_tokenizers_by_word(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The teacher has the smaller vocabulary: more pieces per word, so max_length cuts words the student keeps.
    teacher = _model_with_a_smaller_vocabulary(tmp_path / "teacher")
    student = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    lines = make_lines(60, seed=7)
    sentences = ["\n".join(f"{w}\t{'B-LOC' if w.startswith('ka') else 'O'}" for w in line.split()) for line in lines]
    (tmp_path / "train.iob").write_text("\n\n".join(sentences[:40]) + "\n")
    (tmp_path / "test.iob").write_text("\n\n".join(sentences[40:]) + "\n")
    spec = "name: ner\nkind: token-classification\ntrain: train.iob\ntest: test.iob\nlabel_column: tag\n"
    (tmp_path / "ner.yaml").write_text(spec)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(teacher), "--model", str(student), "--task", str(tmp_path / "ner.yaml")]
    argv += ["--output", str(out), *QUICK, "distil_from=teacher"]
    assert main(argv) == 0
    (result,) = (out / "results").glob("student-*/ner/seed-42.json")
    distilled = json.loads(result.read_text())["distilled_from"]
    assert distilled["label"] == "teacher" and distilled["words_without_teacher"] > 0
    assert "(task KD from teacher)" in (out / "summary.md").read_text()


def test_the_teacher_is_fine_tuned_first_and_its_classifier_reused_for_its_students(
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passes: list[str] = []
    teacher_logits = task_teacher.teacher_logits

    def counted(classifier: Path, *args: object, **kwargs: object) -> TeacherLogits:
        passes.append(classifier.name)
        return teacher_logits(classifier, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(task_teacher, "teacher_logits", counted)
    first = save_teacher("bert", tiny_tokenizer, tmp_path / "first")
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    second = save_teacher("xlm-roberta", tiny_tokenizer, tmp_path / "second")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(first), "--model", str(teacher), "--model", str(second)]
    argv += ["--task", str(write_keyword_task(tmp_path)), "--output", str(out), *QUICK, "distil_from=teacher"]
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert fine_tuned(log) == ["teacher", "first", "second"]
    assert passes == ["seed-42-model"]  # one teacher pass for both students

    results = {
        path.parent.parent.name.split("-")[0]: json.loads(path.read_text()) for path in out.glob("results/*/*/*.json")
    }
    kept = results["teacher"]["distil_classifier"]
    assert results["teacher"]["distilled_from"] is None and kept["folder"] == "seed-42-model"
    assert list((out / "results").glob(f"teacher-*/keyword/{kept['folder']}/config.json"))
    for name in ("first", "second"):
        record = results[name]["distilled_from"]
        assert record["label"] == "teacher" and record["seed"] == 42 and record["classifier"] == kept["weights"]
        assert record["alpha"] == 0.5 and record["temperature"] == 2.0 and record["teacher_pass_seconds"] >= 0
        assert results[name]["made_from"]["distilled_from"]["classifier"] == kept["weights"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["teacher"]["tasks"]["keyword"]["distilled_from"] is None
    assert summary["models"]["second"]["tasks"]["keyword"]["distilled_from"]["label"] == "teacher"
    table = (out / "summary.md").read_text()
    assert "| first (task KD from teacher) |" in table and "| teacher |" in table
    assert "Ranks and p-values compare both kinds in one ranking" in table

    # Finished: nothing is redone, and the teacher's classifier is not read again.
    assert main(argv) == 0
    assert fine_tuned(capsys.readouterr().out) == [] and passes == ["seed-42-model"]

    # Another KL weight: the students are recomputed from the kept classifier, the teacher's plain result stands.
    assert main([*argv, "distil_alpha=0.9"]) == 0
    log = capsys.readouterr().out
    assert fine_tuned(log) == ["first", "second"] and "made with other evaluate.distil_alpha; recomputing" in log
    assert passes == ["seed-42-model"] * 2


def test_a_distilled_result_is_reused_only_with_the_same_teacher(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    student = save_teacher("bert", tiny_tokenizer, tmp_path / "student")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(teacher), "--model", str(student), "--task", str(write_keyword_task(tmp_path))]
    argv += ["--output", str(out), *QUICK]
    assert main(argv) == 0  # plain fine-tuning of both
    capsys.readouterr()
    assert main([*argv, "distil_from=teacher"]) == 0
    log = capsys.readouterr().out
    assert "fine-tuning teacher on keyword (seed 42): keeping the fine-tuned model (evaluate.distil_from)" in log
    assert "fine-tuning student on keyword (seed 42), distilled from teacher: the stored result was made" in log

    # A retrained teacher: its result and classifier are recomputed, and so is the student's.
    model = AutoModelForMaskedLM.from_pretrained(teacher)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.mul_(1.5)
    model.save_pretrained(teacher)
    assert main([*argv, "distil_from=teacher"]) == 0
    log = capsys.readouterr().out
    assert "fine-tuning teacher on keyword (seed 42): the stored result was made with other weights" in log
    assert "made with other task distillation (distilled_from: teacher or its classifier)" in log

    # A kept classifier that is not the one the teacher's result recorded is not trusted.
    (classifier,) = (out / "results").glob("teacher-*/keyword/seed-42-model")
    BertForSequenceClassification.from_pretrained(student, num_labels=2).save_pretrained(classifier)
    assert main([*argv, "distil_from=teacher"]) == 0
    assert "its kept classifier (seed-42-model) is not the one it recorded; recomputing" in capsys.readouterr().out

    # Back to plain fine-tuning: the distilled result is not scored as a plain one.
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert fine_tuned(log) == ["student"] and "fine-tuning student on keyword (seed 42): the stored result" in log


def test_distil_alpha_zero_fine_tunes_as_plain_fine_tuning(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    student = save_teacher("xlm-roberta", tiny_tokenizer, tmp_path / "student")
    task = str(write_keyword_task(tmp_path))
    for name, extra in (("plain", []), ("kd", ["distil_from=teacher", "distil_alpha=0"])):
        argv = ["evaluate", "--model", str(teacher), "--model", str(student), "--task", task]
        settings = [*QUICK, "epochs=2", "learning_rate=1e-3", "save_models=true", *extra]
        assert main([*argv, "--output", str(tmp_path / name), *settings]) == 0
    plain, kd = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("plain", "kd"))
    assert plain["models"]["student"]["tasks"]["keyword"]["distilled_from"] is None
    assert kd["models"]["student"]["tasks"]["keyword"]["distilled_from"]["alpha"] == 0.0
    # The same fine-tuned weights, bit for bit: the distilled path changes nothing else.
    weights = [
        model_identity(str(folder))["weights"]
        for name in ("plain", "kd")
        for folder in (tmp_path / name / "results").glob("student-*/keyword/model")
    ]
    assert len(weights) == 2 and weights[0] == weights[1]


def test_bad_distillation_sources_are_refused_before_anything_trains(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = save_teacher("bert", tiny_tokenizer, tmp_path / "teacher")
    task = str(write_keyword_task(tmp_path))
    out = tmp_path / "out"
    one = ["evaluate", "--model", str(teacher), "--task", task, "--output", str(out), *QUICK]
    capsys.readouterr()
    assert main([*one, "distil_from=teacher"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(
        "evaluate.distil_from=teacher needs two or more models: the one distilled from and the ones it teaches"
    )
    assert len(error.splitlines()) == 1

    two = ["evaluate", "--model", str(teacher), "--model", str(tmp_path / "student-that-is-not-even-there")]
    assert main([*two, "--task", task, "--output", str(out), *QUICK, "distil_from=nobody"]) == 2
    error = capsys.readouterr().err.strip()
    assert "evaluate.distil_from=nobody is not an evaluated model; the models are teacher (" in error
    assert len(error.splitlines()) == 1 and not out.exists()
