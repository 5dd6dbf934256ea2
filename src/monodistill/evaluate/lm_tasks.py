"""Task files of the kinds a causal language model is scored on as it is, with no fine-tuning.

- ``language-modeling``: a UTF-8 text file, one document per line, scored by bits per byte and perplexity
  (``language.py``). ``skip_lines: N`` leaves out the file's first N lines, blank ones counted: the lines a
  run with ``data.max_documents: N`` on that file distils on, so the rest is held out. ``max_lines`` caps
  the lines read after them; ``stride`` is the sliding window's step (default: half of evaluate.max_length).
- ``multiple-choice``: Belebele's format (``flores_passage``, ``question``, ``mc_answer1..4``,
  ``correct_answer_num``, 1-based) as CSV, TSV or JSONL, each answer scored by its log-likelihood after the
  prompt (``choice.py``); ``prompt`` is the template (``{passage}``, ``{question}``), ``max_questions`` caps it.
- ``generation``: greedy continuations of ``prompts`` (default: a few Tagalog ones), at most
  ``max_new_tokens`` each (``generation.py``).

Values are read as typed text, as every task file's are (``task_files.read_task_spec``); unknown keys are
refused naming the nearest known one, and every data error names the file and line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monodistill.config import read_text
from monodistill.errors import MonodistillError
from monodistill.evaluate.formats import read_table, split_lines
from monodistill.evaluate.task_files import data_path

LANGUAGE_MODELING, MULTIPLE_CHOICE, GENERATION = "language-modeling", "multiple-choice", "generation"
LM_KINDS = (LANGUAGE_MODELING, MULTIPLE_CHOICE, GENERATION)
"""Task kinds scored on a causal LM's own next-token probabilities, without fine-tuning."""
KEYS = {
    LANGUAGE_MODELING: ("name", "kind", "file", "skip_lines", "max_lines", "stride"),
    MULTIPLE_CHOICE: ("name", "kind", "file", "prompt", "max_questions"),
    GENERATION: ("name", "kind", "prompts", "max_new_tokens"),
}
BELEBELE_COLUMNS = ("flores_passage", "question", "mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4")
ANSWER_COLUMN = "correct_answer_num"
DEFAULT_PROMPT = "P: {passage}\nQ: {question}\nA:"
"""Belebele's zero-shot layout (passage, question, answer); each answer follows it after a space."""
DEFAULT_PROMPTS = (
    "Noong unang panahon, may isang",
    "Ang Maynila ay",
    "Sinabi ni Jesus sa kaniyang mga alagad,",
    "Ayon sa ulat ng pamahalaan,",
)
"""Tagalog openings of a tale, a definition, a Bible verse and a news line: the corpus's kinds of text."""
DEFAULT_MAX_NEW_TOKENS = 40


@dataclass(frozen=True)
class TextTask:
    """Held-out text, one document per line, scored by bits per byte (``language.py``)."""

    name: str
    file: Path
    documents: list[str]
    first_line: int
    """The file's line of the first document read (1-based)."""
    stride: int | None
    """The sliding window's step in tokens; None: half of the window."""
    kind: str = LANGUAGE_MODELING

    @property
    def source(self) -> dict[str, Any]:
        """Where its text was read, as a summary records it."""
        return {"file": str(self.file.resolve()), "first_line": self.first_line, "documents": len(self.documents)}


@dataclass(frozen=True)
class Question:
    """One multiple-choice question."""

    line: int
    passage: str
    question: str
    answers: tuple[str, ...]
    correct: int
    """The right answer's index into ``answers`` (0-based)."""


@dataclass(frozen=True)
class ChoiceTask:
    """Multiple-choice questions, each answer scored by its log-likelihood after the prompt (``choice.py``)."""

    name: str
    file: Path
    questions: list[Question]
    prompt: str
    kind: str = MULTIPLE_CHOICE

    @property
    def source(self) -> dict[str, Any]:
        return {"file": str(self.file.resolve()), "questions": len(self.questions)}


@dataclass(frozen=True)
class GenerationTask:
    """Prompts continued greedily (``generation.py``)."""

    name: str
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    kind: str = GENERATION

    @property
    def source(self) -> dict[str, Any]:
        return {"prompts": len(self.prompts)}


LanguageTask = TextTask | ChoiceTask | GenerationTask


def language_task_kind(reference: str) -> str | None:
    """The kind of a task YAML when it is one of ``LM_KINDS``; None for any other task (or a built-in name)."""
    path = Path(reference)
    if not path.is_file():
        return None  # a built-in name, or a missing file, which the task reader refuses
    try:
        spec = yaml.load(read_text(path), Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None  # the task reader says what is wrong with it
    kind = spec.get("kind") if isinstance(spec, dict) else None
    return kind if kind in LM_KINDS else None


def load_language_task(path: Path) -> LanguageTask:
    """Read a task file of one of ``LM_KINDS`` (see the module's docstring).

    Raises:
        MonodistillError: naming the file (and line) of an unknown key, a missing or bad value, or a data
            file that is missing, empty or malformed.
    """
    spec = _read_spec(path)
    kind, name = spec["kind"], spec["name"]
    if kind == GENERATION:
        prompts = spec.get("prompts", list(DEFAULT_PROMPTS))
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise MonodistillError(f"task file {path}: prompts must be a list of non-empty texts, got {prompts!r}")
        max_new = _count(spec, "max_new_tokens", path, DEFAULT_MAX_NEW_TOKENS)
        return GenerationTask(name, prompts, max_new or DEFAULT_MAX_NEW_TOKENS)
    if "file" not in spec:
        raise MonodistillError(f"task file {path} lacks file (the {kind} data)")
    file = data_path(path, spec["file"])
    if not file.is_file():
        raise MonodistillError(f"task file {path}: data file {file} does not exist")
    if kind == LANGUAGE_MODELING:
        skip = _count(spec, "skip_lines", path, 0, minimum=0) or 0
        documents = read_documents(file, skip, _count(spec, "max_lines", path, None))
        return TextTask(name, file, documents, skip + 1, _count(spec, "stride", path, None))
    prompt = spec.get("prompt", DEFAULT_PROMPT)
    try:
        prompt.format(passage="", question="")
    except (KeyError, IndexError, ValueError) as error:
        raise MonodistillError(
            f"task file {path}: prompt may name only {{passage}} and {{question}}, got {prompt!r} ({error!r})"
        ) from None
    questions = read_questions(file, _count(spec, "max_questions", path, None))
    return ChoiceTask(name, file, questions, prompt)


def read_documents(file: Path, skip_lines: int, max_lines: int | None) -> list[str]:
    """The non-blank lines of ``file`` after its first ``skip_lines`` lines (of ``max_lines`` at most), each as
    it stands without its line break.

    Raises:
        MonodistillError: for a file that is not UTF-8, or no non-blank line where it is read.
    """
    lines = split_lines(read_text(file))
    if lines and lines[-1] == "":
        lines.pop()  # the break that ends the last line opens no document
    kept = lines[skip_lines : None if max_lines is None else skip_lines + max_lines]
    documents = [line for line in kept if line.strip()]
    if not documents:
        raise MonodistillError(f"{file}: no non-blank line after line {skip_lines} ({len(lines)} lines in all)")
    return documents


def read_questions(file: Path, max_questions: int | None) -> list[Question]:
    """Belebele-format questions, in the file's order (the first ``max_questions``).

    Raises:
        MonodistillError: naming the file and line of a missing column, an empty field, or a
            ``correct_answer_num`` that is not a whole number from 1 to 4.
    """
    rows = read_table(file, [*BELEBELE_COLUMNS, ANSWER_COLUMN])[:max_questions]
    questions = []
    answers = len(BELEBELE_COLUMNS) - 2
    for line, passage, question, *choices, correct in rows:
        number = str(correct).strip()
        if not number.isdigit() or not 1 <= int(number) <= answers:
            raise MonodistillError(
                f"{file}:{line}: {ANSWER_COLUMN} is {correct!r}, not an answer number from 1 to {answers}"
            )
        texts = tuple(str(choice) for choice in choices)
        questions.append(Question(line, str(passage), str(question), texts, int(number) - 1))
    return questions


def task_content_digest(task: LanguageTask) -> str:
    """A digest of everything a task's score depends on (its data and settings), so an edited task file is
    scored again rather than read from an old result."""
    content: list[Any] = [task.name, task.kind]
    if isinstance(task, TextTask):
        content += [task.documents, task.stride]
    elif isinstance(task, ChoiceTask):
        content += [[list(vars(question).values()) for question in task.questions], task.prompt]
    else:
        content += [task.prompts, task.max_new_tokens]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def corpus_overlap(task: LanguageTask, corpus: str | None, max_documents: int | None) -> str | None:
    """Why a language-modeling task's text is not held out from a distillation corpus, or None: its file is the
    corpus (or in the corpus folder) and it reads lines the distillation reads (the first ``max_documents``
    lines of a text corpus; all of them without a cap)."""
    if not isinstance(task, TextTask) or not corpus or not Path(corpus).exists():
        return None
    source, file = Path(corpus).resolve(), task.file.resolve()
    if file != source and source not in file.parents:
        return None
    if file == source and max_documents is not None and task.first_line > max_documents:
        return None
    distilled = "all of it" if max_documents is None else f"its first {max_documents:,} lines"
    return (
        f"task {task.name} scores lines from {task.first_line:,} of {task.file}, which the students are distilled on "
        f"(data.corpus, {distilled}), so its bits per byte are not held-out figures; set data.max_documents below "
        "the task's skip_lines to hold its lines out"
    )


def _read_spec(path: Path) -> dict[str, Any]:
    """The task file's keys, checked against its kind's (``KEYS``); every value but ``prompts`` one text."""
    try:
        spec = yaml.load(read_text(path), Loader=yaml.BaseLoader) or {}
    except yaml.YAMLError as error:
        raise MonodistillError(f"task file {path} is not valid YAML: {error}") from None
    if not isinstance(spec, dict) or spec.get("kind") not in LM_KINDS:
        raise MonodistillError(f"task file {path}: kind must be one of {LM_KINDS}")
    spec = {key: value for key, value in spec.items() if value != ""}
    known = KEYS[spec["kind"]]
    for key, value in spec.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise MonodistillError(f"task file {path}: unknown key {key!r} for a {spec['kind']} task ({hint})")
        if key != "prompts" and not isinstance(value, str):
            raise MonodistillError(f"task file {path}: {key} must be a single value, got {value!r}")
    if "name" not in spec:
        raise MonodistillError(f"task file {path} lacks name")
    return spec


def _count(spec: dict[str, Any], key: str, path: Path, default: int | None, minimum: int = 1) -> int | None:
    """``spec[key]`` as a whole number of at least ``minimum``, else ``default`` when absent."""
    if key not in spec:
        return default
    value = spec[key].strip()
    if not value.isdigit() or int(value) < minimum:
        raise MonodistillError(f"task file {path}: {key} must be a whole number >= {minimum}, got {spec[key]!r}")
    return int(value)
