"""Instruction data: conversations under the chat template, the loss on the assistant's tokens only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.config import DataConfig
from monodistill.data.batches import NextToken, scored_only
from monodistill.data.blocks import build_blocks
from monodistill.data.chat import render_conversation

from .conftest import make_lines, save_decoder
from .test_causal import SHORT, STUDENT
from .test_distill import args

CONVERSATION = [
    {"role": "system", "content": "Sumagot nang maikli."},
    {"role": "user", "content": "Ano ang kabisera ng Pilipinas?"},
    {"role": "assistant", "content": "Maynila."},
    {"role": "user", "content": "Salamat!"},
    {"role": "assistant", "content": "Walang anuman."},
]


@pytest.fixture(scope="module")
def chat_tokenizer(decoder_tokenizers: dict[str, PreTrainedTokenizerFast]) -> PreTrainedTokenizerFast:
    return decoder_tokenizers["byte-level"]  # ChatML, as Qwen's


def write_chats(path: Path, count: int) -> Path:
    lines = make_lines(2 * count, seed=5)
    with path.open("w") as file:
        for number in range(count):
            messages = [
                {"role": "user", "content": lines[2 * number]},
                {"role": "assistant", "content": lines[2 * number + 1]},
            ]
            file.write(json.dumps({"messages": messages}) + "\n")
    return path


def test_only_the_assistants_turns_are_scored(chat_tokenizer: PreTrainedTokenizerFast) -> None:
    ids, scored = render_conversation(chat_tokenizer, CONVERSATION)
    assert ids == chat_tokenizer.apply_chat_template(CONVERSATION, tokenize=True)["input_ids"]
    marked = (chat_tokenizer.decode([token]) if flag else "\0" for token, flag in zip(ids, scored, strict=True))
    assistant = [span for span in "".join(marked).split("\0") if span]
    assert assistant == ["Maynila.<|im_end|>\n", "Walang anuman.<|im_end|>\n"]  # each turn and its end, nothing else


def test_a_chat_corpus_scores_next_tokens_that_are_the_assistants(
    chat_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, cache_dir: Path
) -> None:
    corpus = write_chats(tmp_path / "chats.jsonl", 200)
    config = DataConfig(corpus=str(corpus), chat_column="messages", max_seq_length=32, cache_dir=str(cache_dir))
    blocks = build_blocks(config, chat_tokenizer, seed=0, objective="causal")
    rows = blocks.train[:8]
    _, positions = NextToken()(rows["input_ids"], None)  # type: ignore[arg-type]
    kept = scored_only(positions, rows)
    assert 0 < int(kept.sum()) < int(positions.sum())  # some next tokens are the user's: not targets
    targets = NextToken().target_grid(rows["input_ids"])[kept]
    assert int(rows["scored"].roll(-1, dims=1)[kept].min()) == 1  # every target is an assistant token
    assert len(targets) == int(kept.sum())


def test_a_causal_student_distils_on_conversations(
    chat_tokenizer: PreTrainedTokenizerFast, tmp_path: Path, cache_dir: Path
) -> None:
    teacher = save_decoder("qwen2", chat_tokenizer, tmp_path / "teacher")
    corpus = write_chats(tmp_path / "chats.jsonl", 300)
    assert (
        main(args(teacher, corpus, tmp_path / "run", cache_dir, 2, *STUDENT, *SHORT, "data.chat_column=messages")) == 0
    )
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(record["split"] == "validation" for record in metrics)


def test_a_chat_corpus_without_a_chat_template_is_refused(
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast],
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    teacher = save_decoder("llama", decoder_tokenizers["byte-fallback"], tmp_path / "teacher")  # no template
    corpus = write_chats(tmp_path / "chats.jsonl", 50)
    assert main(args(teacher, corpus, tmp_path / "run", cache_dir, 2, *STUDENT, *SHORT, "data.chat_column=messages"))
    assert "has no chat template to render its conversations with" in capsys.readouterr().err
