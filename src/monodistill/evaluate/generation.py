"""Generation samples: greedy continuations of a few prompts, to read beside the scores.

Each prompt is read as a document is (``language.document_start``: the tokenizer's BOS, else its EOS, then
the prompt) and continued greedily (no sampling, one beam) for at most ``max_new_tokens`` tokens, stopping at
the EOS token, and at the model's positions; the continuation is decoded without special tokens. Prompts
are continued one at a time, so no padding enters them. ``describe_settings`` says all this in one line,
which the console, the result and the report print.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.evaluate.language import document_ids
from monodistill.evaluate.lm_tasks import GenerationTask
from monodistill.teacher import max_positions


def describe_settings(task: GenerationTask) -> str:
    """The decoding settings of ``task``'s samples, in one line."""
    return (
        f"greedy decoding (no sampling, one beam), at most {task.max_new_tokens} new tokens, stopping at the "
        "EOS token; each prompt read from the tokenizer's BOS (else its EOS), as a document starts"
    )


def generate_samples(model: Any, tokenizer: PreTrainedTokenizerBase, task: GenerationTask) -> dict[str, Any]:
    """Each prompt's greedy continuation (see the module's docstring), with the settings it was made with."""
    device = next(model.parameters()).device
    positions = max_positions(model.config)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    samples = []
    started = time.perf_counter()
    for prompt, (ids, _) in zip(task.prompts, document_ids(tokenizer, task.prompts), strict=True):
        room = max(0, min(task.max_new_tokens, positions - len(ids)))
        continuation: list[int] = []
        if room:
            settings = GenerationConfig(
                max_new_tokens=room, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad
            )
            inputs = torch.tensor([ids], device=device)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=inputs, attention_mask=torch.ones_like(inputs), generation_config=settings
                )
            continuation = output[0, len(ids) :].tolist()
        samples.append(
            {
                "prompt": prompt,
                "continuation": tokenizer.decode(continuation, skip_special_tokens=True),
                "new_tokens": len(continuation),
                "stopped_at_eos": bool(continuation) and continuation[-1] == eos,
            }
        )
    return {
        "samples": samples,
        "settings": describe_settings(task),
        "max_new_tokens": task.max_new_tokens,
        "seconds": time.perf_counter() - started,
    }
