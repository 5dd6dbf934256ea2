"""BPE tokenizers of both kinds, trained here on the shared Tagalog corpus (and mBERT's word list, as other
languages): byte-level (GPT-2, RoBERTa, English ModernBERT) and SentencePiece BPE with byte fallback (Gemma,
Llama, mmBERT); and the same two kinds as decoders ship them (``DECODER_KINDS``: no mask token, an end-of-text
token that also ends packed documents, a padding token, a chat template on the byte-level one)."""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .conftest import require_shared


def _train_byte_level(lines: list[str], specials: list[str], vocab_size: int) -> Tokenizer:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines, trainer)
    return bpe


def _train_byte_fallback(
    lines: list[str], specials: list[str], unknown: str, vocab_size: int, whole_words: bool = False
) -> Tokenizer:
    bpe = Tokenizer(models.BPE(unk_token=unknown, byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    bpe.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    if whole_words:  # merges within words, as SentencePiece trains them (split_by_whitespace)
        bpe.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    # Rare characters (most of the CJK ones) are left out of the alphabet: they become byte pieces.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, limit_alphabet=1_000)
    bpe.train_from_iterator(lines, trainer)
    bpe.pre_tokenizer = None  # Llama's and Gemma's tokenizer.json have none: the merges keep words apart
    # The byte pieces are ordinary vocabulary entries, as in Gemma's tokenizer.json.
    data = json.loads(bpe.to_str())
    vocab = data["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    for added in data["added_tokens"]:
        added["id"] = vocab[added["content"]]
    return Tokenizer.from_str(json.dumps(data))


def byte_level_bpe(lines: list[str]) -> PreTrainedTokenizerFast:
    """GPT-2 / RoBERTa style: bytes mapped to a 256-character alphabet, no unknown token."""
    bpe = _train_byte_level(lines, ["<s>", "<pad>", "</s>", "<mask>"], vocab_size=12_000)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip


def sentencepiece_bpe(lines: list[str]) -> PreTrainedTokenizerFast:
    """Gemma / Llama / mmBERT style: spaces as ``▁``, BPE merges, unknown characters as ``<0xNN>`` byte pieces."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    bpe = _train_byte_fallback(lines, specials, "<unk>", vocab_size=12_000)
    bpe.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", cls_token="<bos>", sep_token="<eos>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip


KINDS = {"byte-level": byte_level_bpe, "sentencepiece": sentencepiece_bpe}

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen's chat template (ChatML): each message between ``<|im_start|>role`` and ``<|im_end|>``."""


def byte_level_decoder_bpe(lines: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """GPT-2 / Qwen / Llama-3 / BLOOM style: byte-level BPE that adds no token around a text, ``<|endoftext|>`` to
    end documents, a padding token of its own, and Qwen's ChatML chat template with its two special tokens."""
    specials = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    bpe = _train_byte_level(lines, specials, vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"], chat_template=CHATML_TEMPLATE,
    )  # fmt: skip


def byte_fallback_decoder_bpe(lines: list[str], vocab_size: int = 200) -> PreTrainedTokenizerFast:
    """Llama-2 / Mistral / Gemma style: SentencePiece BPE with ``<0xNN>`` byte pieces for unseen characters,
    ``<bos>`` before each text (Gemma's ids: pad 0, eos 1, bos 2, unk 3), ``<eos>`` to end documents."""
    bpe = _train_byte_fallback(lines, ["<pad>", "<eos>", "<bos>", "<unk>"], "<unk>", vocab_size, whole_words=True)
    # Llama-2's decoder also drops the space the normalizer put before the text.
    bpe.decoder = decoders.Sequence([bpe.decoder, decoders.Strip(" ", 1, 0)])
    bpe.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )


DECODER_KINDS = {"byte-level": byte_level_decoder_bpe, "byte-fallback": byte_fallback_decoder_bpe}
"""The tokenizers decoders ship, by kind (``conftest.DECODER_TOKENIZER_KIND``: which family uses which)."""


def multilingual(corpus: list[str]) -> list[str]:
    """Tagalog lines and, as other languages, mBERT's word-initial vocabulary (100 languages, many scripts)."""
    words = require_shared("data", "tokenizers", "bert-base-multilingual-cased", "vocab.txt").read_text().split()
    words = [word for word in words if not word.startswith(("##", "[")) and len(word) > 1]
    return corpus[:20_000] + [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)]
