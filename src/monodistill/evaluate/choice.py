"""Multiple-choice questions scored by log-likelihood, with no fine-tuning (as lm-evaluation-harness scores
Belebele, ARC or HellaSwag).

Each question's prompt (the task's template filled with its passage and question) is read as a document is
(``language.document_start``: the tokenizer's BOS, else its EOS, then the prompt); each answer follows it
after a space, encoded together with the prompt, and its tokens are those after the prompt's own. An answer
scores the sum of its tokens' log-probabilities (``accuracy``: the highest sum wins, which favours short
answers) and that sum per UTF-8 byte of the answer as scored, its space included (``accuracy_per_byte``:
lm-evaluation-harness's ``acc_norm`` counts characters; bytes do not favour a script). Ties go to the first
answer. A sequence longer than ``max_length`` keeps its end: the answer, and the prompt's last tokens.
Chance is one over the number of answers (0.25 for Belebele).
"""

from __future__ import annotations

import time
from typing import Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError
from monodistill.evaluate.language import Row, document_ids, log_likelihoods
from monodistill.evaluate.lm_tasks import ChoiceTask


def answer_rows(
    tokenizer: PreTrainedTokenizerBase, prompt: str, answers: tuple[str, ...], max_length: int
) -> list[Row]:
    """Each answer after ``prompt`` as a row of ``language.log_likelihoods``: the prompt's and the answer's tokens,
    and how many are the answer's (the last ones); cut at the front to ``max_length``."""
    (context, _), *answered = document_ids(tokenizer, [prompt, *(f"{prompt} {answer}" for answer in answers)])
    rows = []
    for ids, _ in answered:
        scored = len(ids) - len(context)
        if scored < 1 or scored >= max_length:
            raise MonodistillError(
                f"an answer of {scored} tokens cannot be scored in a window of {max_length} (evaluate.max_length)"
            )
        rows.append((ids[-max_length:], scored))
    return rows


def score_choices(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    task: ChoiceTask,
    max_length: int,
    batch_size: int,
    autocast: Any = None,
) -> dict[str, Any]:
    """Accuracy by summed and by per-byte log-likelihood (see the module's docstring), chance, and each
    question's predicted answers (1-based, as ``correct_answer_num``)."""
    rows: list[Row] = []
    for question in task.questions:
        prompt = task.prompt.format(passage=question.passage, question=question.question)
        try:
            rows += answer_rows(tokenizer, prompt, question.answers, max_length)
        except MonodistillError as error:
            raise MonodistillError(f"{task.file}:{question.line}: {error}") from None
    started = time.perf_counter()
    sums = log_likelihoods(model, rows, batch_size, f"scoring {task.name}", autocast)
    seconds = time.perf_counter() - started
    by_sum, by_byte, position = [], [], 0
    for question in task.questions:
        scores = sums[position : position + len(question.answers)]
        sizes = [len(f" {answer}".encode()) for answer in question.answers]
        position += len(question.answers)
        by_sum.append(_first_best(scores))
        by_byte.append(_first_best([score / size for score, size in zip(scores, sizes, strict=True)]))
    correct = [question.correct for question in task.questions]
    count = len(task.questions)
    return {
        "metrics": {
            "accuracy": sum(p == c for p, c in zip(by_sum, correct, strict=True)) / count,
            "accuracy_per_byte": sum(p == c for p, c in zip(by_byte, correct, strict=True)) / count,
        },
        "chance": sum(1 / len(question.answers) for question in task.questions) / count,
        "questions": count,
        "predicted": [index + 1 for index in by_sum],
        "predicted_per_byte": [index + 1 for index in by_byte],
        "max_length": max_length,
        "prompt": task.prompt,
        "seconds": seconds,
    }


def _first_best(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda index: (scores[index], -index))
