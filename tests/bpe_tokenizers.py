"""BPE tokenizers of both kinds, trained here on the shared Tagalog corpus (and mBERT's word list, as other
languages): byte-level (GPT-2, RoBERTa, English ModernBERT) and SentencePiece BPE with byte fallback (Gemma,
Llama, mmBERT)."""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .conftest import require_shared


def byte_level_bpe(lines: list[str]) -> PreTrainedTokenizerFast:
    """GPT-2 / RoBERTa style: bytes mapped to a 256-character alphabet, no unknown token."""
    specials = ["<s>", "<pad>", "</s>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=12_000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines, trainer)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip


def sentencepiece_bpe(lines: list[str]) -> PreTrainedTokenizerFast:
    """Gemma / Llama / mmBERT style: spaces as ``▁``, BPE merges, unknown characters as ``<0xNN>`` byte pieces."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    bpe.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    # Rare characters (most of the CJK ones) are left out of the alphabet: they become byte pieces.
    trainer = trainers.BpeTrainer(vocab_size=12_000, special_tokens=specials, limit_alphabet=1_000)
    bpe.train_from_iterator(lines, trainer)
    # The byte pieces are ordinary vocabulary entries, as in Gemma's tokenizer.json.
    data = json.loads(bpe.to_str())
    vocab = data["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    for added in data["added_tokens"]:
        added["id"] = vocab[added["content"]]
    bpe = Tokenizer.from_str(json.dumps(data))
    bpe.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", cls_token="<bos>", sep_token="<eos>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip


KINDS = {"byte-level": byte_level_bpe, "sentencepiece": sentencepiece_bpe}


def multilingual(corpus: list[str]) -> list[str]:
    """Tagalog lines and, as other languages, mBERT's word-initial vocabulary (100 languages, many scripts)."""
    words = require_shared("data", "tokenizers", "bert-base-multilingual-cased", "vocab.txt").read_text().split()
    words = [word for word in words if not word.startswith(("##", "[")) and len(word) > 1]
    return corpus[:20_000] + [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)]
