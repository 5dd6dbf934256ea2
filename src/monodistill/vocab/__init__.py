"""Trim the teacher's vocabulary to the target language.

Count the teacher tokenizer's tokens on the corpus; keep the special tokens and the
single-character tokens of every character the corpus uses, then the most frequent tokens up to a
size or coverage target. The student's tokenizer is the teacher's restricted to the kept ids, in
teacher-id order; ``id_map.json`` maps student ids to teacher ids.

Modules, in the order a run uses them: ``count`` (counting, selection, segmentation statistics),
``tokenizer`` (the WordPiece or Unigram tokenizer rewritten to the kept ids), ``teacher`` (the
masked LM restricted to the kept rows) and ``folder`` (``run_vocab`` writes the folder,
``load_trimmed_vocab`` reads it back).

With no size limit every token the teacher produced on the corpus is kept, and the trimmed
tokenizer segments that corpus exactly as the teacher does: WordPiece's greedy longest match finds
the same longest token (nothing longer survives that the full vocabulary lacked), and Unigram's
best path is still available and nothing better was added. With a limit, a word whose tokens were
dropped is spelled out in shorter tokens, down to single characters, rather than becoming UNK.

The vocabulary is built from every document of the corpus. To measure how it generalises, the
last documents are also counted apart and measured against a second vocabulary built without them
(same settings); ``vocab_stats.json`` reports how often segmentation changes on that held-out text.
"""

from monodistill.vocab.count import (
    SegmentationStats,
    TrimmedVocab,
    compare_segmentation,
    count_tokens,
    select_ids,
    select_vocabulary,
    single_character_ids,
    trim_vocabulary,
)
from monodistill.vocab.folder import load_trimmed_vocab, run_vocab
from monodistill.vocab.teacher import id_map_tensor, remap_special_ids, save_trimmed_teacher, trim_teacher
from monodistill.vocab.tokenizer import build_trimmed_tokenizer

__all__ = [
    "SegmentationStats",
    "TrimmedVocab",
    "build_trimmed_tokenizer",
    "compare_segmentation",
    "count_tokens",
    "id_map_tensor",
    "load_trimmed_vocab",
    "remap_special_ids",
    "run_vocab",
    "save_trimmed_teacher",
    "select_ids",
    "select_vocabulary",
    "single_character_ids",
    "trim_teacher",
    "trim_vocabulary",
]
