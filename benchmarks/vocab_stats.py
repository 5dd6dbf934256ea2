"""Vocabulary trimming on the real mBERT tokenizer and the shared Tagalog corpus, as Markdown tables.

For several settings: kept size, corpus coverage and the held-out UNK rate (last 2% of lines, not
counted). Then parameter counts before and after trimming, for the mBERT-base teacher, the paper's
student presets and the stand-in teacher (shapes only: models are built on the meta device).

    python benchmarks/vocab_stats.py > table.md
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, BertConfig

from monodistill.student import PRESETS, student_model_config
from monodistill.teacher import parameter_counts
from monodistill.vocab import build_trimmed_tokenizer, trim_vocabulary, unk_rate

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SETTINGS = {
    "every token seen": {"max_size": None, "coverage": None},
    "coverage 0.99": {"max_size": None, "coverage": 0.99},
    "max 30,000": {"max_size": 30_000, "coverage": None},
    "max 15,000": {"max_size": 15_000, "coverage": None},
    "max 5,000": {"max_size": 5_000, "coverage": None},
}


def count(config: object) -> dict[str, int]:
    with torch.device("meta"):
        return parameter_counts(AutoModelForMaskedLM.from_config(config))


def main() -> None:
    tokenizer = AutoTokenizer.from_pretrained(SHARED / "data" / "tokenizers" / "bert-base-multilingual-cased")
    lines = [line for line in (SHARED / "data" / "tl" / "corpus.txt").read_text().splitlines() if line.strip()]
    held_out = max(1, len(lines) // 50)
    counted, evaluation = lines[:-held_out], lines[-held_out:]
    print(f"Tokenizer: mBERT cased ({len(tokenizer):,} tokens). Corpus: {len(counted):,} lines counted, ")
    print(f"{held_out:,} held out. Teacher UNK rate on held-out lines: {unk_rate(tokenizer, evaluation):.3%}.\n")
    print("| setting | kept tokens | share of mBERT vocab | corpus coverage | held-out UNK rate |")
    print("|---|---|---|---|---|")
    sizes = {}
    for name, setting in SETTINGS.items():
        trimmed = trim_vocabulary(tokenizer, counted, min_count=1, **setting)
        student = build_trimmed_tokenizer(tokenizer, trimmed.kept_ids)
        sizes[name] = len(trimmed.kept_ids)
        print(
            f"| {name} | {len(trimmed.kept_ids):,} | {len(trimmed.kept_ids) / len(tokenizer):.1%} | "
            f"{trimmed.coverage:.2%} | {unk_rate(student, evaluation):.3%} |"
        )
    kept = sizes["every token seen"]
    mbert = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
    mini = AutoConfig.from_pretrained(SHARED / "models" / "mmt-mini")
    models = {
        "mBERT-base teacher (12L/768H)": lambda v: BertConfig(**{**mbert.to_dict(), "vocab_size": v}),
        "dbert-base (6L/768H)": lambda v: student_model_config(mbert, PRESETS["dbert-base"], v),
        "dbert-tiny (4L/312H)": lambda v: student_model_config(mbert, PRESETS["dbert-tiny"], v),
        "mmt-mini stand-in teacher (4L/256H)": lambda v: student_model_config(
            mini, PRESETS["dbert-tiny"].__class__(4, 256, 1024, 4), v
        ),
    }
    print(f"\nParameters, full vocabulary ({len(tokenizer):,}) vs every Tagalog token seen ({kept:,}):\n")
    print("| model | full: total | full: embeddings | trimmed: total | trimmed: embeddings | smaller by |")
    print("|---|---|---|---|---|---|")
    for name, build in models.items():
        full, small = count(build(len(tokenizer))), count(build(kept))
        print(
            f"| {name} | {full['total'] / 1e6:.1f}M | {full['embedding'] / 1e6:.1f}M | {small['total'] / 1e6:.1f}M | "
            f"{small['embedding'] / 1e6:.1f}M | {full['total'] / small['total']:.1f}x |"
        )


if __name__ == "__main__":
    main()
