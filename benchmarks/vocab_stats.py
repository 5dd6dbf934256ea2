"""Vocabulary trimming on the real mBERT tokenizer and the shared Tagalog corpus, as Markdown tables.

Each setting runs ``monodistill vocab`` itself (``run_vocab``: the vocabulary is built from every
line; the last 2% of lines are also measured against a vocabulary built without them) and reads back
its ``vocab_stats.json``; then every line of the corpus is split with the written tokenizer and
compared with the teacher's split. Then parameter counts before and after trimming (the encoder with its
embeddings, heads aside, as the card, report and evaluation summary count them):
mBERT-base and the paper's student presets are built on the meta device from their configs (no
download), the stand-in teacher mmt-mini is loaded and trimmed for real.

    python benchmarks/vocab_stats.py > table.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, PreTrainedModel

from monodistill.config import DistillConfig, load_config
from monodistill.evaluate.summary import ENCODER_COUNTED, encoder_counts
from monodistill.student import PRESETS, student_model_config
from monodistill.vocab import compare_segmentation, run_vocab, trim_teacher

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SETTINGS = {
    "every token seen": [],
    "coverage 0.99": ["vocab.coverage=0.99"],
    "max_size 30,000": ["vocab.max_size=30000"],
    "max_size 15,000": ["vocab.max_size=15000"],
    "max_size 5,000": ["vocab.max_size=5000"],
}
# mBERT-base: 12 layers, hidden 768, feed-forward 3072, 12 heads, 119,547 tokens.
MBERT = BertConfig(
    vocab_size=119_547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=str(SHARED / "data" / "tokenizers" / "bert-base-multilingual-cased"))
    parser.add_argument("--corpus", default=str(SHARED / "data" / "tl" / "corpus.txt"))
    parser.add_argument("--stand-in", default=str(SHARED / "models" / "mmt-mini"), help="a local teacher to trim")
    return parser.parse_args()


def measure(tokenizer: str, corpus: str, overrides: list[str], output: Path) -> dict[str, Any]:
    """Run ``monodistill vocab`` for one setting; returns its statistics plus its wall time.

    ``all_lines`` compares the written tokenizer's split of every corpus line with the teacher's.
    """
    config = load_config(
        DistillConfig, overrides=[f"teacher.name_or_path={tokenizer}", f"data.corpus={corpus}", *overrides]
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the tables
        run_vocab(config, output)
    seconds = time.perf_counter() - start
    kept = json.loads((output / "id_map.json").read_text())["id_map"]
    lines = [line for line in Path(corpus).read_text(encoding="utf-8").splitlines() if line.strip()]
    teacher, student = AutoTokenizer.from_pretrained(tokenizer), AutoTokenizer.from_pretrained(output)
    all_lines = compare_segmentation(teacher, student, kept, lines)
    return {**json.loads((output / "vocab_stats.json").read_text()), "seconds": seconds, "all_lines": all_lines}


def meta_counts(config: Any) -> dict[str, int]:
    """Parameter counts of a masked LM built from ``config`` without allocating its weights (``ENCODER_COUNTED``)."""
    with torch.device("meta"):
        return encoder_counts(AutoModelForMaskedLM.from_config(config))


def millions(count: int) -> str:
    return f"{count / 1e6:.1f}M"


def main() -> None:
    args = parse_args()
    results: dict[str, dict[str, Any]] = {}
    kept: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, overrides) in enumerate(SETTINGS.items()):
            output = Path(scratch) / str(index)
            results[name] = measure(args.tokenizer, args.corpus, overrides, output)
            kept[name] = json.loads((output / "id_map.json").read_text())["id_map"]
    machine = f"{platform.machine()} CPU ({os.cpu_count()} cores)"
    print(f"Measured {date.today().isoformat()} on {machine}, torch {torch.__version__}.\n")
    print(vocabulary_table(results))
    sizes = {"full": next(iter(results.values()))["teacher_vocab_size"], **{k: len(v) for k, v in kept.items()}}
    print(f"\nParameters ({ENCODER_COUNTED}; input embeddings in brackets), at each vocabulary size:\n")
    print(parameter_table(sizes, kept, args.stand_in))


def vocabulary_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per setting, from the ``vocab_stats.json`` that ``monodistill vocab`` wrote."""
    first = next(iter(results.values()))
    lines = [
        f"Tokenizer: mBERT cased, {first['teacher_vocab_size']:,} tokens. Corpus: {first['counted_documents']:,} "
        f"lines counted ({first['corpus_tokens']:,} tokens, teacher UNK rate {first['teacher_unk_rate']:.3%}); "
        f"the last {first['held_out']['documents']:,} are also measured against a vocabulary built without them.\n",
        "| setting | kept tokens | share of vocab | corpus coverage | corpus lines split as teacher "
        "| held-out: vocab built without them | held-out coverage | held-out UNK rate (teacher's) "
        "| held-out lines split as teacher | held-out tokens vs teacher | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in results.items():
        held, every = stats["held_out"], stats["all_lines"]
        identical = round(every.identical_documents * every.documents)
        lines.append(
            f"| {name} | {stats['kept_size']:,} | {stats['kept_size'] / stats['teacher_vocab_size']:.1%} | "
            f"{stats['coverage']:.2%} | {identical:,} of {every.documents:,} ({every.identical_documents:.1%}) | "
            f"{held['kept_size']:,} | {held['coverage']:.2%} | "
            f"{held['trimmed_unk_rate']:.3%} ({held['teacher_unk_rate']:.3%}) | {held['identical_documents']:.1%} | "
            f"{held['trimmed_tokens'] / held['teacher_tokens']:.3f}x | {stats['seconds']:.1f} s |"
        )
    return "\n".join(lines)


def parameter_table(sizes: dict[str, int], kept: dict[str, list[int]], stand_in: str) -> str:
    """Parameter counts of the teacher and student shapes at each vocabulary size."""
    shapes = {
        "mBERT-base teacher (12L/768H/3072I)": lambda size: BertConfig(**{**MBERT.to_dict(), "vocab_size": size}),
        "dbert-base student (6L/768H/3072I)": lambda size: student_model_config(MBERT, PRESETS["dbert-base"], size),
        "dbert-tiny student (4L/312H/1200I)": lambda size: student_model_config(MBERT, PRESETS["dbert-tiny"], size),
    }
    lines = [
        "| model | " + " | ".join(f"{name} ({size:,})" for name, size in sizes.items()) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for label, build in shapes.items():
        lines.append(row(label, [meta_counts(build(size)) for size in sizes.values()]))
    # The stand-in teacher is real: load it and trim it the way `monodistill vocab --export-teacher` does.
    counts = [encoder_counts(load_stand_in(stand_in, None))]
    counts += [encoder_counts(load_stand_in(stand_in, ids)) for ids in kept.values()]
    lines.append(row("mmt-mini stand-in teacher (4L/256H/1024I), trimmed for real", counts))
    return "\n".join(lines)


def row(label: str, counts: list[dict[str, int]]) -> str:
    return f"| {label} | " + " | ".join(f"{millions(c['total'])} ({millions(c['embedding'])})" for c in counts) + " |"


def load_stand_in(path: str, kept_ids: list[int] | None) -> PreTrainedModel:
    model = AutoModelForMaskedLM.from_pretrained(path)
    return trim_teacher(model, kept_ids) if kept_ids is not None else model


if __name__ == "__main__":
    main()
