"""``monodistill inspect``: which teacher knows the language best, and what trimming its vocabulary gives.

For each teacher, on the target-language corpus:

- **segmentation**: pieces per word (whitespace-separated words of every document), the unknown-token
  rate and, for byte-fallback tokenizers (Gemma/mmBERT, XLM-R's SentencePiece with byte fallback), the
  byte-piece rate (``<0xNN>`` tokens: characters the vocabulary spells byte by byte);
- **vocabulary**: the share of the vocabulary the corpus uses, the size ``monodistill vocab`` would keep
  (every token seen, the special and single-character ones, and for BPE the tokens their merges go
  through), and the parameters of the teacher and of each student preset with the full and the
  trimmed vocabulary (the encoder with its embeddings, heads aside, as the report counts them);
- **knowledge of the language**: masked-token accuracy and masked-LM perplexity (exp of the mean
  cross-entropy at the masked positions) on held-out blocks, masked as distillation's validation masks
  them (``data.mlm_probability``, 80/10/10, seeded per block, random replacements drawn from the
  embedding's rows, which may outnumber the tokenizer's tokens). This is the masked-LM perplexity, not
  the pseudo-perplexity of Salazar et al. (2020) that masks one token at a time (a forward pass per
  token: 128 times the cost); both measure how well the teacher predicts the language's tokens.

Accuracy and perplexity are per token of each teacher's own segmentation, so a tokenizer that cuts
words into more, shorter pieces predicts more easily: the recommendation weighs accuracy, and the
table shows pieces per word beside it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModelForMaskedLM, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DataConfig, TeacherConfig, TrainConfig
from monodistill.data.batches import BatchStream, Masking
from monodistill.data.blocks import build_blocks
from monodistill.data.corpus import load_corpus
from monodistill.distill.teacher_pass import TeacherPass
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import ENCODER_COUNTED, encoder_counts
from monodistill.losses import Needs
from monodistill.progress import progress_bar
from monodistill.student.shape import PRESETS, student_model_config
from monodistill.teacher import load_teacher, max_positions
from monodistill.vocab.count import count_tokens, select_vocabulary
from monodistill.vocab.folder import document_texts
from monodistill.vocab.tokenizer import TRIMMABLE_MODELS, backend_tokenizer, is_byte_piece

INSPECT_FILE = "inspect.json"
HELD_OUT_FRACTION = 0.1
"""Share of the corpus's blocks held out for the accuracy, at most ``--sample-blocks`` of them."""


@dataclass
class Inspection:
    """What ``inspect`` measures of one teacher on the corpus."""

    teacher: str
    family: str
    vocabulary: int
    pieces_per_word: float
    unk_rate: float
    byte_piece_rate: float | None
    """None for a tokenizer without byte fallback."""
    vocabulary_used: float
    """Share of the vocabulary that occurs in the corpus."""
    trimmed_vocabulary: int | None
    """What ``monodistill vocab`` keeps; None for a tokenizer kind it cannot trim."""
    parameters: dict[str, dict[str, int | None]]
    """Model -> {"full": n, "trimmed": n}: the teacher and each student preset, encoder with embeddings."""
    held_out_blocks: int
    masked_tokens: int
    masked_token_accuracy: float
    masked_lm_perplexity: float


def inspect_teachers(
    teachers: list[str], corpus: str, sample_blocks: int = 1000, max_seq_length: int = 128
) -> list[Inspection]:
    """Measure every teacher on ``corpus``; see the module docstring for what.

    Held-out blocks are ``max_seq_length`` tokens, or the teacher's maximum positions when fewer.

    Raises:
        MonodistillError: no teacher, or any problem loading a teacher or the corpus (before measuring).
    """
    if not teachers:
        raise MonodistillError("inspect needs at least one --teacher")
    if sample_blocks < 1:
        raise MonodistillError(f"--sample-blocks must be >= 1, got {sample_blocks}")
    data = DataConfig(
        corpus=corpus,
        max_seq_length=max_seq_length,
        validation_fraction=HELD_OUT_FRACTION,
        max_validation_blocks=sample_blocks,
    )
    documents = load_corpus(data)
    words = sum(len(text.split()) for text in document_texts(documents))
    if words == 0:
        raise MonodistillError(f"corpus {corpus} has no words")
    results = []
    for name in teachers:
        model, tokenizer = load_teacher(TeacherConfig(name_or_path=name, dtype="float32"))
        with progress_bar(len(documents), f"{name}: counting tokens", "doc", leave=False) as bar:
            counts = count_tokens(tokenizer, document_texts(documents), progress=bar)
        # Blocks no longer than the teacher's positions (tiny and old models have fewer than 128).
        length = min(max_seq_length, max_positions(model.config))
        accuracy, perplexity, blocks, masked = held_out_accuracy(model, tokenizer, replace(data, max_seq_length=length))
        results.append(
            Inspection(
                teacher=name,
                family=model.config.model_type,
                vocabulary=len(tokenizer),
                pieces_per_word=float(counts.sum()) / words,
                unk_rate=_rate(counts, [tokenizer.unk_token_id] if tokenizer.unk_token_id is not None else []),
                byte_piece_rate=_rate(counts, ids) if (ids := byte_piece_ids(tokenizer)) else None,
                vocabulary_used=float((counts > 0).sum()) / len(tokenizer),
                trimmed_vocabulary=(kept := trimmed_size(tokenizer, counts)),
                parameters=parameter_table(model, kept),
                held_out_blocks=blocks,
                masked_tokens=masked,
                masked_token_accuracy=accuracy,
                masked_lm_perplexity=perplexity,
            )
        )
        del model
    return results


def held_out_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: DataConfig
) -> tuple[float, float, int, int]:
    """Masked-token accuracy and masked-LM perplexity on the held-out blocks; and how many blocks and tokens.

    Raises:
        MonodistillError: a held-out block holds nothing but special tokens, so nothing in it can be masked.
    """
    blocks = build_blocks(data, tokenizer, seed=0)
    # As distillation masks: replacements drawn over the teacher's embedding rows (its config.vocab_size).
    rows = cast(torch.nn.Embedding, model.get_input_embeddings()).num_embeddings
    masking = Masking.of(tokenizer, rows, data.mlm_probability)
    held_out = blocks.validation[:]["input_ids"]  # (blocks, T)
    empty = int(torch.isin(held_out, masking.special_ids).all(dim=1).sum())
    if empty:
        raise MonodistillError(
            f"{model.name_or_path}: {empty} of the {len(held_out)} held-out blocks of {data.corpus} hold only "
            "special tokens, nothing to mask: the corpus has too little text this tokenizer keeps"
        )
    stream = BatchStream(blocks, masking, TrainConfig(batch_size=16))
    teacher = TeacherPass(model, None, torch.device("cpu"))
    correct, loss, tokens = 0, 0.0, 0
    batches = stream.validation()
    with progress_bar(len(batches), f"{model.name_or_path}: held-out blocks", "batch", leave=False) as bar:
        for batch in batches:
            logits = teacher(batch, Needs(teacher_logits=True)).logits.float()
            correct += int((logits.argmax(-1) == batch.targets).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, batch.targets, reduction="sum"))
            tokens += len(batch.targets)
            bar.update(1)
    if tokens == 0:  # every block has an ordinary token and the masker selects one in each; kept as a guard
        raise MonodistillError(f"{model.name_or_path}: no held-out token was masked, nothing to mask")
    perplexity = math.exp(loss / tokens) if loss / tokens < 700 else math.inf  # beyond a float's range
    return correct / tokens, perplexity, len(blocks.validation), tokens


def byte_piece_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ``<0xNN>`` byte pieces of a byte-fallback tokenizer; empty for others."""
    model = json.loads(backend_tokenizer(tokenizer).to_str())["model"]
    if not model.get("byte_fallback"):
        return []
    vocab = tokenizer.get_vocab()
    return [index for token, index in vocab.items() if is_byte_piece(token)]


def trimmed_size(tokenizer: PreTrainedTokenizerBase, counts: Any) -> int | None:
    """How many tokens ``monodistill vocab`` (no size limit) keeps for this corpus; None if it cannot trim."""
    if type(backend_tokenizer(tokenizer).model).__name__ not in TRIMMABLE_MODELS:
        return None
    return len(select_vocabulary(tokenizer, counts, None, None, 1).kept_ids)


def parameter_table(teacher: PreTrainedModel, trimmed: int | None) -> dict[str, dict[str, int | None]]:
    """Encoder parameters (embeddings included) of the teacher and each preset, full and trimmed vocabulary."""
    vocabulary = int(teacher.config.vocab_size)
    table: dict[str, dict[str, int | None]] = {}
    models: dict[str, Any] = {"teacher": None, **{name: shape for name, shape in PRESETS.items()}}
    for name, shape in models.items():
        sizes: dict[str, int | None] = {}
        for kind, size in (("full", vocabulary), ("trimmed", trimmed)):
            if size is None:
                sizes[kind] = None
                continue
            config = student_model_config(teacher.config, shape, size) if shape else _resized(teacher.config, size)
            with torch.device("meta"):
                sizes[kind] = encoder_counts(AutoModelForMaskedLM.from_config(config))["total"]
        table[name] = sizes
    return table


def _resized(config: Any, vocab_size: int) -> Any:
    resized = type(config).from_dict(config.to_dict())
    resized.vocab_size = vocab_size
    return resized


def _rate(counts: Any, ids: list[int]) -> float:
    return float(counts[ids].sum()) / float(counts.sum()) if ids else 0.0


def recommendation(results: list[Inspection]) -> str:
    """One line: the teacher that predicts held-out tokens best, with what to weigh beside it."""
    best = max(results, key=lambda result: result.masked_token_accuracy)
    line = (
        f"recommended teacher: {best.teacher} (masked-token accuracy {100 * best.masked_token_accuracy:.1f}% on "
        f"{best.held_out_blocks} held-out blocks, {best.pieces_per_word:.2f} pieces per word"
    )
    if best.trimmed_vocabulary is not None:
        line += f"; trimmed vocabulary {best.trimmed_vocabulary:,} of {best.vocabulary:,}"
    return line + ")"


def format_inspection(results: list[Inspection]) -> str:
    """The table ``inspect`` prints: one column per teacher."""
    rows: list[tuple[str, list[str]]] = [
        ("family", [r.family for r in results]),
        ("vocabulary", [f"{r.vocabulary:,}" for r in results]),
        ("pieces per word", [f"{r.pieces_per_word:.2f}" for r in results]),
        ("unknown-token rate", [f"{100 * r.unk_rate:.2f}%" for r in results]),
        (
            "byte-piece rate",
            [f"{100 * r.byte_piece_rate:.2f}%" if r.byte_piece_rate is not None else "-" for r in results],
        ),
        ("vocabulary the corpus uses", [f"{100 * r.vocabulary_used:.1f}%" for r in results]),
        (
            "trimmed vocabulary",
            [f"{r.trimmed_vocabulary:,}" if r.trimmed_vocabulary else "cannot trim" for r in results],
        ),
    ]
    for model in results[0].parameters:  # counted as the card, the report and the summary count them
        sizes = [_millions(r.parameters.get(model, {})) for r in results]
        rows.append((f"{model} parameters ({ENCODER_COUNTED}), full -> trimmed", sizes))
    rows += [
        ("held-out blocks (masked tokens)", [f"{r.held_out_blocks:,} ({r.masked_tokens:,})" for r in results]),
        ("masked-token accuracy", [f"{100 * r.masked_token_accuracy:.2f}%" for r in results]),
        ("masked-LM perplexity", [f"{r.masked_lm_perplexity:.1f}" for r in results]),
    ]
    lines = ["| | " + " | ".join(r.teacher for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def _percent(rate: float | None) -> str:
    return f"{100 * rate:.2f}%" if rate is not None else "-"


def _count(size: int | None) -> str:
    return f"{size:,}" if size is not None else "cannot trim"


def _millions(sizes: dict[str, int | None]) -> str:
    full, trimmed = sizes.get("full"), sizes.get("trimmed")
    shown = f"{full / 1e6:.1f}M" if full else "-"
    return shown + (f" -> {trimmed / 1e6:.1f}M" if trimmed else "")


def run_inspect(teachers: list[str], corpus: str, output: Path, sample_blocks: int) -> Path:
    """``monodistill inspect``: measure, print the table and the recommendation, write ``inspect.json``."""
    results = inspect_teachers(teachers, corpus, sample_blocks)
    print(format_inspection(results))
    print(recommendation(results))
    sys.stdout.flush()
    output.mkdir(parents=True, exist_ok=True)
    record = {"corpus": corpus, "sample_blocks": sample_blocks, "teachers": [asdict(r) for r in results]}
    ckpt.atomic_write_text(output / INSPECT_FILE, json.dumps(record, indent=2) + "\n")
    return output / INSPECT_FILE
