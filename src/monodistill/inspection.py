"""``monodistill inspect``: which teacher knows the language best, and what trimming its vocabulary gives.

For each teacher, on the target-language corpus:

- **segmentation**: pieces per word (whitespace-separated words of every document), the unknown-token
  rate and, for byte-fallback tokenizers (Gemma/mmBERT, XLM-R's SentencePiece with byte fallback), the
  byte-piece rate (``<0xNN>`` tokens: characters the vocabulary spells byte by byte);
- **vocabulary**: the share of the vocabulary the corpus uses, the size ``monodistill vocab`` would keep
  (every token seen, the special and single-character ones, and for BPE the tokens their merges go
  through), and the parameters of the teacher and of each student preset with the full and the
  trimmed vocabulary (the encoder with its embeddings, heads aside, as the report counts them; a decoder's
  with its embeddings, an untied LM head aside);
- **knowledge of the language**: masked-token accuracy and masked-LM perplexity (exp of the mean
  cross-entropy at the masked positions) on held-out blocks, masked as distillation's validation masks
  them (``data.mlm_probability``, 80/10/10, seeded per block, random replacements drawn from the
  embedding's rows, which may outnumber the tokenizer's tokens). This is the masked-LM perplexity, not
  the pseudo-perplexity of Salazar et al. (2020) that masks one token at a time (a forward pass per
  token: 128 times the cost); both measure how well the teacher predicts the language's tokens.

Accuracy and perplexity are per token of each teacher's own segmentation, so a tokenizer that cuts
words into more, shorter pieces predicts more easily: the recommendation weighs accuracy, and the
table shows pieces per word beside it.

A decoder teacher (its family's objective is causal) is scored as a causal student is distilled and
validated: held-out blocks built as distillation builds them (``build_blocks(..., objective="causal")``:
documents encoded one after another, each closed by EOS, cut into windows) and ``NextToken`` batches,
in which every position of a block but its last predicts the token after it. Reported:

- **next-token loss**: the mean cross-entropy of those scored tokens, nats per token (and its exp, the
  perplexity per token), over the teacher's whole vocabulary;
- **bits per byte**: the summed cross-entropy in bits over the UTF-8 bytes of the text the scored tokens
  decode to: each block's tokens after its first, decoded together by the teacher's tokenizer without
  special tokens and without cleaning spaces. The special tokens scored (the EOS between documents, a BOS)
  count their bits and no byte. A character cut at a block's edge decodes as U+FFFD (3 bytes) and a
  decoder that strips a text's leading space (Llama-2's) drops one byte a block: about 1% of a 128-token
  block at most. Unlike a loss per token, it compares teachers of different vocabularies honestly, so it is
  what the recommendation weighs for decoders (lowest first).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill import checkpoint as ckpt
from monodistill.config import DataConfig, TeacherConfig, TrainConfig
from monodistill.data.batches import BatchStream, Masking, NextToken
from monodistill.data.blocks import build_blocks
from monodistill.data.corpus import load_corpus
from monodistill.distill.logits import chunk_slices
from monodistill.distill.teacher_pass import TeacherPass
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import counted_as, encoder_counts
from monodistill.families import family_of
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
LOGIT_CHUNK = 512
"""A decoder's next-token logits are computed this many positions at a time (0.5 GB in float32 at 256k tokens)."""


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
    held_out_blocks: int = 0
    objective: str = "masked"
    """What its head predicts: masked tokens (an encoder) or the next token (a causal decoder)."""
    masked_tokens: int | None = None
    masked_token_accuracy: float | None = None
    masked_lm_perplexity: float | None = None
    next_tokens: int | None = None
    """A decoder's held-out tokens scored: every position of a block but its last predicts one."""
    next_token_bytes: int | None = None
    """UTF-8 bytes of the text its scored tokens decode to (the module docstring says exactly which)."""
    next_token_loss: float | None = None
    """Mean next-token cross-entropy, nats per token."""
    next_token_perplexity: float | None = None
    """exp(next_token_loss): per token of its own tokenizer."""
    bits_per_byte: float | None = None
    """Summed cross-entropy in bits over ``next_token_bytes``: compares vocabularies honestly."""


@dataclass(frozen=True)
class NextTokenScores:
    """A decoder's held-out next-token scores (``held_out_next_token``)."""

    blocks: int
    tokens: int
    text_bytes: int
    loss: float
    """Summed cross-entropy, nats."""


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
    return [inspect_teacher(name, documents, words, data) for name in teachers]


def inspect_teacher(name: str, documents: Any, words: int, data: DataConfig) -> Inspection:
    """One teacher's segmentation, trimming and held-out scores (masked or next-token, as its family predicts)."""
    model, tokenizer = load_teacher(TeacherConfig(name_or_path=name, dtype="float32"))
    with progress_bar(len(documents), f"{name}: counting tokens", "doc", leave=False) as bar:
        counts = count_tokens(tokenizer, document_texts(documents), progress=bar)
    # Blocks no longer than the teacher's positions (tiny and old models have fewer than 128).
    data = replace(data, max_seq_length=min(data.max_seq_length, max_positions(model.config)))
    objective = family_of(model).objective
    scores = held_out_scores(model, tokenizer, data, objective)  # first: a corpus with nothing to score stops here
    return Inspection(
        teacher=name,
        family=model.config.model_type,
        vocabulary=len(tokenizer),
        pieces_per_word=float(counts.sum()) / words,
        unk_rate=_rate(counts, [tokenizer.unk_token_id] if tokenizer.unk_token_id is not None else []),
        byte_piece_rate=_rate(counts, ids) if (ids := byte_piece_ids(tokenizer)) else None,
        vocabulary_used=float((counts > 0).sum()) / len(tokenizer),
        trimmed_vocabulary=(kept := trimmed_size(tokenizer, counts)),
        parameters=parameter_table(model, kept),
        objective=objective,
        **scores,
    )


def held_out_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: DataConfig, objective: str
) -> dict[str, Any]:
    """The ``Inspection`` fields of the held-out blocks: masked-token scores, or a decoder's next-token ones."""
    if objective == "causal":
        scores = held_out_next_token(model, tokenizer, data)
        mean = scores.loss / scores.tokens
        return {
            "held_out_blocks": scores.blocks,
            "next_tokens": scores.tokens,
            "next_token_bytes": scores.text_bytes,
            "next_token_loss": mean,
            "next_token_perplexity": math.exp(mean) if mean < 700 else math.inf,  # beyond a float's range
            "bits_per_byte": scores.loss / math.log(2) / scores.text_bytes,
        }
    accuracy, perplexity, blocks, masked = held_out_accuracy(model, tokenizer, data)
    return {
        "held_out_blocks": blocks,
        "masked_tokens": masked,
        "masked_token_accuracy": accuracy,
        "masked_lm_perplexity": perplexity,
    }


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


def held_out_next_token(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: DataConfig
) -> NextTokenScores:
    """A decoder's summed next-token cross-entropy on the held-out blocks, as distillation validates a causal
    student, and the UTF-8 bytes its scored tokens decode to (the module docstring says exactly what is counted).

    Raises:
        MonodistillError: the held-out blocks decode to no text (nothing but special tokens).
    """
    blocks = build_blocks(data, tokenizer, seed=0, objective="causal")
    stream = BatchStream(blocks, NextToken(), TrainConfig(batch_size=16))
    # The logits a chunk of positions at a time: a 256k vocabulary's whole batch would be gigabytes.
    teacher = TeacherPass(model, None, torch.device("cpu"), logit_chunk=LOGIT_CHUNK)
    loss, tokens = 0.0, 0
    batches = stream.validation()
    with progress_bar(len(batches), f"{model.name_or_path}: held-out blocks", "batch", leave=False) as bar:
        for batch in batches:
            logits = teacher(batch, Needs(teacher_logits=True)).scored_logits()
            for piece in chunk_slices(len(batch.targets), LOGIT_CHUNK):
                loss += float(F.cross_entropy(logits.at(piece).float(), batch.targets[piece], reduction="sum"))
            tokens += len(batch.targets)
            bar.update(1)
    scored = blocks.validation[:]["input_ids"][:, 1:].tolist()  # what each block's positions predict
    text_bytes = sum(len(_decoded(tokenizer, row).encode("utf-8")) for row in scored)
    if text_bytes == 0 or tokens == 0:
        raise MonodistillError(
            f"{model.name_or_path}: the {len(scored)} held-out blocks of {data.corpus} decode to no text (only "
            "special tokens): the corpus has too little text this tokenizer keeps"
        )
    return NextTokenScores(len(scored), tokens, text_bytes, loss)


def _decoded(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


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
                sizes[kind] = encoder_counts(family_of(config).model_class.from_config(config))["total"]
        table[name] = sizes
    return table


def _resized(config: Any, vocab_size: int) -> Any:
    resized = type(config).from_dict(config.to_dict())
    resized.vocab_size = vocab_size
    return resized


def _rate(counts: Any, ids: list[int]) -> float:
    return float(counts[ids].sum()) / float(counts.sum()) if ids else 0.0


def recommendation(results: list[Inspection]) -> str:
    """One line per kind of teacher inspected: the encoder that predicts held-out masked tokens best (accuracy), the
    decoder that predicts the held-out text best (fewest bits per byte), with what to weigh beside it."""
    encoders = [result for result in results if result.objective == "masked"]
    decoders = [result for result in results if result.objective == "causal"]
    lines = []
    if encoders:
        best = max(encoders, key=lambda result: result.masked_token_accuracy or 0.0)
        score = f"masked-token accuracy {100 * (best.masked_token_accuracy or 0.0):.1f}%"
        lines.append(_recommended(best, score, "encoder " if decoders else ""))
    if decoders:
        best = min(decoders, key=lambda result: result.bits_per_byte or math.inf)
        lines.append(_recommended(best, f"{best.bits_per_byte:.3f} bits per byte", "decoder " if encoders else ""))
    return "\n".join(lines)


def _recommended(best: Inspection, score: str, kind: str) -> str:
    line = (
        f"recommended {kind}teacher: {best.teacher} ({score} on {best.held_out_blocks} held-out blocks, "
        f"{best.pieces_per_word:.2f} pieces per word"
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
    # Counted as the card, the report and the summary count them: an encoder's or a decoder's, as each teacher is.
    counted = " / ".join(dict.fromkeys(counted_as(r.family) for r in results))
    for model in results[0].parameters:
        sizes = [_millions(r.parameters.get(model, {})) for r in results]
        rows.append((f"{model} parameters ({counted}), full -> trimmed", sizes))
    if any(r.objective == "masked" for r in results):
        rows += [
            ("held-out blocks (masked tokens)", [_held_out(r.held_out_blocks, r.masked_tokens) for r in results]),
            ("masked-token accuracy", [_shown(r.masked_token_accuracy, "{:.2%}") for r in results]),
            ("masked-LM perplexity", [_shown(r.masked_lm_perplexity, "{:.1f}") for r in results]),
        ]
    if any(r.objective == "causal" for r in results):
        rows += [
            ("held-out blocks (next tokens scored)", [_held_out(r.held_out_blocks, r.next_tokens) for r in results]),
            ("next-token loss (nats per token)", [_shown(r.next_token_loss, "{:.3f}") for r in results]),
            ("perplexity per token", [_shown(r.next_token_perplexity, "{:.1f}") for r in results]),
            ("bits per byte", [_shown(r.bits_per_byte, "{:.3f}") for r in results]),
        ]
    lines = ["| | " + " | ".join(r.teacher for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def _held_out(blocks: int, scored: int | None) -> str:
    return f"{blocks:,} ({scored:,})" if scored is not None else "-"


def _shown(value: float | None, form: str) -> str:
    return form.format(value) if value is not None else "-"


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
