"""Instruction data: conversations rendered with the teacher's chat template, the loss on the assistant's tokens.

A chat corpus (``data.chat_column``, e.g. ``messages`` in JSON Lines) holds one conversation per document, a
list of ``{"role": ..., "content": ...}`` messages. Each is rendered with the tokenizer's own chat template, as
the teacher was tuned on it, and its tokens marked as scored where the assistant speaks: the tokens each
assistant message adds to the conversation up to it, its end-of-turn token included (what the template renders
for the conversation up to that message, less what it renders for the conversation before it with the
generation prompt). The user's and system's tokens are context, never targets (TRL's assistant-only loss; the
Tulu and Aya recipes).
"""

from __future__ import annotations

from typing import Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.errors import MonodistillError

ASSISTANT = "assistant"


def check_chat_template(tokenizer: PreTrainedTokenizerBase, corpus: str | None) -> None:
    """Refuse, in one line, a chat corpus for a tokenizer without a chat template to render it with."""
    if not getattr(tokenizer, "chat_template", None):
        raise MonodistillError(
            f"corpus {corpus} is a chat corpus (data.chat_column), but the teacher's tokenizer has no chat template "
            "to render its conversations with; distil from an instruction-tuned teacher, or give plain text"
        )


def is_conversation(messages: Any) -> bool:
    """Whether a document is a usable conversation: a list of role/content messages with an assistant turn."""
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(isinstance(message, dict) and {"role", "content"} <= message.keys() for message in messages)
        and any(message["role"] == ASSISTANT for message in messages)
    )


def render_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]
) -> tuple[list[int], list[int]]:
    """A conversation's token ids under the chat template, and 1 at each assistant token, 0 elsewhere.

    Raises:
        MonodistillError: for a template that renders a conversation's beginning differently once it goes on
            (the assistant's span could not be told from its tokens).
    """
    ids = _render(tokenizer, messages, generation_prompt=False)
    scored = [0] * len(ids)
    for turn, message in enumerate(messages):
        if message["role"] != ASSISTANT:
            continue
        start = len(_render(tokenizer, messages[:turn], generation_prompt=True)) if turn else 0
        until = _render(tokenizer, messages[: turn + 1], generation_prompt=False)
        if until != ids[: len(until)]:
            raise MonodistillError(
                "the tokenizer's chat template renders a conversation's first messages differently once it goes on, "
                "so the assistant's tokens cannot be told apart; use a template whose renderings extend each other"
            )
        scored[start : len(until)] = [1] * (len(until) - start)
    return ids, scored


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    rendered: Any = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered  # transformers 5 returns an encoding
    return [int(token) for token in ids]
