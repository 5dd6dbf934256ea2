"""BPE vocabulary trimming on the shared Tagalog corpus: kept size, exact segmentation, token increase.

Both kinds of BPE tokenizer, trained here as the tests train them (``tests/bpe_tokenizers.py``): byte-level
(GPT-2/RoBERTa) and SentencePiece with byte fallback (Gemma/mmBERT). Each is trimmed on every line of the
corpus without a size limit and with ``--max-size``; figures in docs/VOCAB.md ("BPE tokenizers").

    python benchmarks/vocab_bpe.py          # from the repository root, ../shared beside it; about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test tokenizers, built exactly as the tests build them

from tests.bpe_tokenizers import KINDS, multilingual  # noqa: E402

from monodistill.vocab import build_trimmed_tokenizer, compare_segmentation, trim_vocabulary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "tl" / "corpus.txt"))
    parser.add_argument("--max-size", type=int, default=4000)
    args = parser.parse_args()
    lines = [line for line in Path(args.corpus).read_text(encoding="utf-8").splitlines() if line.strip()]
    print(
        "| tokenizer | teacher size | max size | kept | coverage | lines split exactly | tokens vs teacher | unknown |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, build in KINDS.items():
        teacher = build(multilingual(lines))
        for size in (None, args.max_size):
            started = time.perf_counter()
            trimmed = trim_vocabulary(teacher, lines, max_size=size, coverage=None, min_count=1)
            student = build_trimmed_tokenizer(teacher, trimmed.kept_ids)
            stats = compare_segmentation(teacher, student, trimmed.kept_ids, lines)
            print(
                f"| {kind} | {len(teacher):,} | {size or 'none'} | {len(trimmed.kept_ids):,} | {trimmed.coverage:.1%} "
                f"| {stats.identical_documents:.1%} | {stats.trimmed_tokens / stats.teacher_tokens:.3f}x "
                f"| {stats.trimmed_unk_rate:.4f} |  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
