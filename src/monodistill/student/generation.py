"""What a saved causal student generates with: ``generation_config.json`` in the student's own token ids.

The ids come from the student's tokenizer, the one it was distilled with (trimmed or not): its EOS closed
every packed document the student learned from (``data.blocks``), so it is the token the student learned to
end a text with. A student of a chat model stops at the end of an assistant's turn too: the special token its
chat template writes right after the assistant's words (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``),
found by rendering the template, whatever id the trimming gave it. Padding falls back to EOS where the
tokenizer has no padding token (as Llama's has none). Nothing else is set: greedy decoding, transformers'
defaults, as the teacher's own sampling settings were tuned for the teacher.

``config.json`` holds the same ids (``vocab.teacher.remap_special_ids`` rewrote them when the vocabulary was
trimmed); one that is missing or outside the student's vocabulary is replaced by the tokenizer's, so that
the two files agree.
"""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ASSISTANT_MARK = "\u2063monodistill\u2063"
"""The assistant's words when rendering a chat template: a text no template writes itself."""
CONFIG_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token a chat template writes right after an assistant's words, or None (no template, or
    ordinary text there)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": ASSISTANT_MARK}]
    try:
        text = str(tokenizer.apply_chat_template(messages, tokenize=False))
    except Exception:  # a template that refuses this conversation (jinja raises its own errors): no turn token
        return None
    after = text.split(ASSISTANT_MARK, 1)[1] if ASSISTANT_MARK in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    return int(ids[0]) if ids and ids[0] in tokenizer.all_special_ids else None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids generation stops at: the tokenizer's EOS, then the chat template's end of turn where it differs."""
    stops = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    turn = end_of_turn_id(tokenizer)
    return stops + ([turn] if turn is not None and turn not in stops else [])


def generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """The student's generation settings: its tokenizer's BOS, stop ids and padding (see the module docstring).

    The model's ``config.json`` ids are aligned with them first (``align_config_ids``).
    """
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else None)
    align_config_ids(model.config, tokenizer.bos_token_id, stops[0] if stops else None, pad)
    settings = GenerationConfig.from_model_config(model.config).to_dict()
    settings |= {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": stops[0] if len(stops) == 1 else (stops or None),
        "pad_token_id": pad,
    }
    settings.pop("_from_model_config", None)  # set here, not copied from the config
    return GenerationConfig(**settings)


def align_config_ids(config: Any, bos: int | None, eos: int | None, pad: int | None) -> None:
    """Replace each of ``config``'s BOS, EOS and padding ids that is missing or outside its vocabulary."""
    for field, value in zip(CONFIG_FIELDS, (bos, eos, pad), strict=True):
        if value is not None and not _in_vocabulary(getattr(config, field, None), int(config.vocab_size)):
            setattr(config, field, value)


def _in_vocabulary(ids: Any, vocab_size: int) -> bool:
    values = ids if isinstance(ids, list) else [ids]
    return bool(values) and all(isinstance(value, int) and 0 <= value < vocab_size for value in values)
