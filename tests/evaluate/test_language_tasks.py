"""Language-model tasks scored with no fine-tuning: multiple choice by log-likelihood (Belebele's format),
generation samples, their task files, and which task kinds a model can serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from monodistill.errors import MonodistillError
from monodistill.evaluate.choice import score_choices
from monodistill.evaluate.generation import generate_samples
from monodistill.evaluate.lm_harness import check_task_kinds
from monodistill.evaluate.lm_tasks import (
    DEFAULT_PROMPTS,
    ChoiceTask,
    GenerationTask,
    TextTask,
    corpus_overlap,
    language_task_kind,
    load_language_task,
)
from monodistill.evaluate.tasks import load_task

from ..conftest import REPO_ROOT, build_tiny_decoder, require_shared, save_decoder, save_teacher, write_keyword_task

Tokenizers = dict[str, PreTrainedTokenizerFast]
HEADER = "link\tflores_passage\tquestion\tmc_answer1\tmc_answer2\tmc_answer3\tmc_answer4\tcorrect_answer_num\n"
QUESTIONS = [
    "x\tAng bata ay kumain ng mangga.\tAno ang kinain ng bata?\tmangga\tisda\tkanin\ttinapay\t1\n",
    "x\tUmuulan sa Maynila kahapon.\tSaan umulan?\tsa Cebu\tsa Davao\tsa Maynila\tsa Baguio\t3\n",
    "x\tSi Maria ay guro.\tAno si Maria?\tdoktor\tguro\tpulis\tmagsasaka\t2\n",
]


def write_belebele(folder: Path, rows: list[str], name: str = "belebele.tsv") -> Path:
    """A Belebele-format TSV and a task file for it."""
    (folder / name).write_text(HEADER + "".join(rows))
    (folder / "mc.yaml").write_text(f"name: belebele-mini\nkind: multiple-choice\nfile: {name}\n")
    return folder / "mc.yaml"


def log_likelihood(model: PreTrainedModel, ids: list[int], scored: int) -> float:
    with torch.inference_mode():
        log_probs = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
    return sum(log_probs[position - 1, ids[position]].item() for position in range(len(ids) - scored, len(ids)))


def test_each_answer_is_scored_by_its_log_likelihood_after_the_prompt(
    decoder_tokenizers: Tokenizers, tmp_path: Path
) -> None:
    tokenizer = decoder_tokenizers["byte-level"]
    model = build_tiny_decoder("llama", tokenizer).eval()
    task = load_language_task(write_belebele(tmp_path, QUESTIONS))
    assert isinstance(task, ChoiceTask) and [q.correct for q in task.questions] == [0, 2, 1]
    result = score_choices(model, tokenizer, task, max_length=64, batch_size=5)
    by_sum, by_byte = [], []
    for question in task.questions:
        prompt = f"P: {question.passage}\nQ: {question.question}\nA:"
        context = [tokenizer.eos_token_id, *tokenizer(prompt).input_ids]  # adds no BOS: read from EOS
        sums = []
        for answer in question.answers:
            ids = [tokenizer.eos_token_id, *tokenizer(f"{prompt} {answer}").input_ids]
            assert ids[: len(context)] == context  # the answer's tokens are those after the prompt's
            sums.append(log_likelihood(model, ids, len(ids) - len(context)))
        by_sum.append(1 + max(range(4), key=lambda i: sums[i]))
        by_byte.append(1 + max(range(4), key=lambda i: sums[i] / len(f" {question.answers[i]}".encode())))
    assert result["predicted"] == by_sum and result["predicted_per_byte"] == by_byte
    assert result["metrics"]["accuracy"] == pytest.approx(
        sum(p == c for p, c in zip(by_sum, [1, 3, 2], strict=True)) / 3
    )
    assert result["chance"] == 0.25 and result["questions"] == 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([QUESTIONS[0], QUESTIONS[1].replace("\t3\n", "\t5\n")], r"belebele.tsv:3: correct_answer_num is '5', not"),
        ([QUESTIONS[0].replace("\t1\n", "\t0\n")], r"belebele.tsv:2: correct_answer_num is '0'"),
        ([QUESTIONS[0].replace("\t1\n", "\tB\n")], r"belebele.tsv:2: correct_answer_num is 'B'"),
        ([QUESTIONS[0].replace("\tisda\t", "\t\t")], r"belebele.tsv:2: empty 'mc_answer2'"),
    ],
)
def test_a_malformed_multiple_choice_file_is_refused_naming_file_and_row(
    rows: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(MonodistillError, match=message):
        load_language_task(write_belebele(tmp_path, rows))


def test_a_multiple_choice_file_without_a_column_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "b.tsv").write_text(HEADER.replace("\tmc_answer4", "") + "x\tp\tq\ta\tb\tc\t1\n")
    (tmp_path / "mc.yaml").write_text("name: mc\nkind: multiple-choice\nfile: b.tsv\n")
    with pytest.raises(MonodistillError, match=r"b.tsv:1: no column 'mc_answer4'"):
        load_language_task(tmp_path / "mc.yaml")


def test_language_task_files_name_their_kind_and_refuse_what_they_cannot_use(tmp_path: Path) -> None:
    (tmp_path / "text.txt").write_text("una\n\nikalawa\nikatlo\n")
    (tmp_path / "lm.yaml").write_text("name: lm\nkind: language-modeling\nfile: text.txt\nskip_lines: 1\n")
    assert language_task_kind(str(tmp_path / "lm.yaml")) == "language-modeling"
    assert language_task_kind("hatespeech-filipino") is None
    task = load_language_task(tmp_path / "lm.yaml")
    assert isinstance(task, TextTask) and task.documents == ["ikalawa", "ikatlo"] and task.first_line == 2
    (tmp_path / "gen.yaml").write_text("name: gen\nkind: generation\n")
    generation = load_language_task(tmp_path / "gen.yaml")
    assert isinstance(generation, GenerationTask) and generation.prompts == list(DEFAULT_PROMPTS)
    (tmp_path / "bad.yaml").write_text("name: lm\nkind: language-modeling\nfile: text.txt\nstrid: 4\n")
    with pytest.raises(MonodistillError, match="unknown key 'strid' for a language-modeling task .*'stride'"):
        load_language_task(tmp_path / "bad.yaml")
    (tmp_path / "far.yaml").write_text("name: lm\nkind: language-modeling\nfile: text.txt\nskip_lines: 9\n")
    with pytest.raises(MonodistillError, match="no non-blank line after line 9"):
        load_language_task(tmp_path / "far.yaml")


def test_generation_continues_each_prompt_greedily(decoder_tokenizers: Tokenizers) -> None:
    tokenizer = decoder_tokenizers["byte-fallback"]  # adds <bos> before a text
    model = build_tiny_decoder("gemma2", tokenizer).eval()
    task = GenerationTask("samples", ["ka ma", "Ang bata"], max_new_tokens=6)
    result = generate_samples(model, tokenizer, task)
    for prompt, sample in zip(task.prompts, result["samples"], strict=True):
        ids = tokenizer(prompt).input_ids
        assert ids[0] == tokenizer.bos_token_id
        new: list[int] = []
        with torch.inference_mode():
            for _ in range(6):  # greedy by hand: the most probable next token, until EOS
                token = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                new.append(token)
                if token == tokenizer.eos_token_id:
                    break
        assert sample["continuation"] == tokenizer.decode(new, skip_special_tokens=True)
        assert sample["new_tokens"] == len(new)
    assert "greedy" in result["settings"] and "at most 6 new tokens" in result["settings"]


def test_task_kinds_a_model_cannot_serve_are_refused_in_one_line(
    decoder_tokenizers: Tokenizers, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    encoder = save_teacher("bert", tiny_tokenizer, tmp_path / "encoder")
    text = TextTask("held-out", tmp_path / "t.txt", ["ka"], 1, None)
    with pytest.raises(MonodistillError, match=r"task held-out \(language-modeling\) .* is a masked LM \(bert\)"):
        check_task_kinds(str(encoder), tiny_tokenizer, [], [text])
    tokenizer = decoder_tokenizers["byte-level"]
    cohere = save_decoder("cohere", tokenizer, tmp_path / "cohere")
    (tmp_path / "train.iob").write_text("ka\tO\nma\tB-LOC\n")
    (tmp_path / "test.iob").write_text("ka\tO\n")
    spec = "name: ner\nkind: token-classification\ntrain: train.iob\ntest: test.iob\nlabel_column: tag\n"
    (tmp_path / "ner.yaml").write_text(spec)
    ner = load_task(str(tmp_path / "ner.yaml"))
    message = r"task ner \(token-classification\) fine-tunes AutoModelForTokenClassification, .* \(cohere\)"
    with pytest.raises(MonodistillError, match=message):
        check_task_kinds(str(cohere), tokenizer, [ner], [])
    with pytest.raises(MonodistillError, match=r"AutoModelForSequenceClassification, .* \(cohere\)"):
        check_task_kinds(str(cohere), tokenizer, [load_task(str(write_keyword_task(tmp_path)))], [])


def test_shipped_language_task_files_read_the_shared_corpus() -> None:
    require_shared("data", "tl", "corpus.txt")
    held_out = load_language_task(REPO_ROOT / "configs" / "tasks" / "tagalog-held-out.yaml")
    assert isinstance(held_out, TextTask) and len(held_out.documents) == 1_000 and held_out.first_line == 75_537
    # Held out from a run that distils on the corpus's first 75,536 lines, not from one that reads them all.
    assert corpus_overlap(held_out, str(held_out.file), 75_536) is None
    assert "not held-out" in str(corpus_overlap(held_out, str(held_out.file), None))
    samples = load_language_task(REPO_ROOT / "configs" / "tasks" / "tagalog-samples.yaml")
    assert isinstance(samples, GenerationTask) and samples.prompts == list(DEFAULT_PROMPTS)
