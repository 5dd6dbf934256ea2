"""Golden students: one of each teacher family and one per loss term and student init, held to stored values.

Issue 29's redesign (family adapters, one object per loss term) must not change any published figure. Each case
here distils a tiny student a few steps through the CLI, from a tiny teacher without dropout, and compares what it
saved with ``tests/golden/students.json``: per tensor of the student's ``model.safetensors`` its shape, sum and
sum of squares (in float64), and the logged loss parts of each step and the final validation metrics.

Why sums and not the bytes: the runs are deterministic on one machine (regenerated twice, the file is the same
byte for byte; this needs the tokenizer listed below, not the conftest's), but CPU kernels may round the last bits
differently on another machine of the same kind (another SIMD width, another BLAS blocking), and those differences
grow over the steps. So the values are compared with a relative tolerance of 1e-5; a sum is compared relative to
the largest sum a tensor of its norm can have (sqrt(numel * sum of squares)), since a sum near zero has no
relative precision of its own, and elements may differ by 1e-6 (which matters only for a tensor no loss moves,
such as a key bias, whose values are rounding noise). A changed loss, weight, mask or init moves the weights by
far more (~1e-3 after three steps). A small change to a term that weighs little beside another (T = 3.9 instead
of 4 in the paper's loss, whose KL of a random teacher is ~0.01 beside an MLM of ~5) shows in that term's logged
value, and in the weights of the case that trains the term alone.

The file is never rewritten by a test run. To regenerate it deliberately, after a change that is meant to change
the students (and say so in the commit)::

    python -m tests.test_golden --regenerate        # or MONODISTILL_REGENERATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoConfig, PreTrainedTokenizerFast

from monodistill.checkpoint import read_metrics
from monodistill.cli import main
from monodistill.families import supported_families

from .conftest import SPECIALS, SYLLABLES, build_tiny_teacher, make_lines

GOLDEN_FILE = Path(__file__).parent / "golden" / "students.json"
REGENERATE = os.environ.get("MONODISTILL_REGENERATE_GOLDEN") == "1"
RELATIVE_TOLERANCE = 1e-5
# Per element, about lr / 3000: what a changed loss moves a weight by in three steps is ~1e-3.
ABSOLUTE_FLOOR = 1e-6
STEPS = 3
# One case's values: {"tensors": {name: {shape, sum, sum_of_squares}}, "train": {step: {part: value}},
# "validation": {metric: value}}.
Values = dict[str, Any]

# 2 layers, hidden 16, FFN 32, 2 heads: narrower and shallower than the 4-layer, 32-wide, 4-head teachers.
SMALL = ("student.preset=custom", "student.num_layers=2", "student.hidden_size=16", "student.intermediate_size=32")
WIDE = ("student.hidden_size=32", "student.intermediate_size=64", "student.num_heads=4")  # the teacher's width
ONLY = ("loss.alpha_kl=0", "loss.alpha_mlm=0")  # the term alone, without the paper's two

# case -> (teacher family, overrides on top of SMALL with 2 heads and the paper's loss: 0.5 T^2 KL + 0.5 MLM, T = 4)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{family: (family, ()) for family in supported_families("masked")},
    # Each term alone: Adam scales every weight's step to the same size whatever the term's scale, so a term
    # weighed with a larger one (the KL of a random teacher's near-uniform outputs beside the MLM) moves the
    # weights little in the family cases; alone, its gradient sets every step.
    "bert-kl": ("bert", ("loss.alpha_mlm=0",)),
    "bert-mlm": ("bert", ("loss.alpha_kl=0",)),
    "bert-hidden": ("bert", (*ONLY, "loss.alpha_hidden=1")),
    "bert-attention": ("bert", (*ONLY, "loss.alpha_attention=1", "student.num_heads=4")),
    "bert-relation": ("bert", (*ONLY, "loss.alpha_relation=1")),
    # On top of the paper's MLM: the logit term as an MSE (Gurgurov et al.), and DistilBERT's cosine (equal widths).
    "bert-logit-mse": ("bert", ("loss.logit_loss=mse",)),
    "bert-cosine": ("bert", ("loss.alpha_cosine=1", *WIDE)),
    # Every term at once, a step split into two micro-batches with whole-word masks (unequal token counts): how
    # the parts are weighed and summed, and each micro-batch's share of the step mean.
    "bert-all-terms-accumulated": (
        "bert",
        (
            *WIDE,
            "loss.alpha_cosine=0.5",
            "loss.alpha_relation=0.5",
            "loss.alpha_hidden=0.5",
            "loss.alpha_attention=50",
            "train.gradient_accumulation_steps=2",
            "train.batch_size=2",
            "data.whole_word_mask=true",
        ),
    ),
    "bert-teacher-layers": ("bert", ("student.init=teacher-layers", *WIDE)),
    "bert-teacher-layers-narrow": ("bert", ("student.init=teacher-layers", "student.num_heads=4")),
    "bert-teacher-embeddings": ("bert", ("student.init=teacher-embeddings",)),
    # The vocabulary trimmed to the corpus (the teacher's head cut to the kept rows) under the narrow reduction.
    "bert-trimmed-teacher-layers-narrow": (
        "bert",
        ("vocab.enabled=true", "vocab.max_size=80", "student.init=teacher-layers", "student.num_heads=4"),
    ),
    # A student of another family over the teacher's tokenizer.
    "bert-to-modernbert": ("bert", ("student.family=modernbert",)),
}

# Logged per step but measured, not computed (tokens_per_second): they differ from run to run.
UNSTABLE_METRICS = ("per_second", "seconds", "mfu")


def still_teacher(family: str, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    """The conftest's tiny teacher of ``family`` with every dropout at 0: students copy its config, so the
    students' steps, like the teacher's outputs, are functions of the weights and the batches alone."""
    model = build_tiny_teacher(family, len(tokenizer), tokenizer.pad_token_id)
    for name, value in model.config.to_dict().items():
        if "dropout" in name and isinstance(value, float):
            setattr(model.config, name, 0.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    assert not any(value for name, value in AutoConfig.from_pretrained(path).to_dict().items() if "dropout" in name), (
        f"{family} teacher keeps a dropout"
    )
    return path


def listed_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer like the conftest's ``tiny_tokenizer``, over a vocabulary listed in a fixed order.

    ``tiny_tokenizer`` is trained by tokenizers' WordPieceTrainer, which breaks ties between equally frequent
    pieces differently in each process: its ids change from run to run (8 processes, 8 vocabularies), and with
    them the teachers' rows and every student. Here: the special tokens, the characters, the syllables the
    corpus is made of (each also as a ``##`` continuation) and its 100 most frequent words, ties broken by name.
    """
    lines = make_lines(600, seed=1)
    words = Counter(word for line in lines for word in line.removesuffix(".").split())
    characters = sorted({character for line in lines for character in line if not character.isspace()})
    pieces = sorted(SYLLABLES) + characters
    frequent = sorted(words, key=lambda word: (-words[word], word))[:100]
    tokens = [*SPECIALS, *pieces, *(f"##{piece}" for piece in pieces), *frequent]
    tokens = list(dict.fromkeys(tokens))  # a frequent word may be a syllable
    tokenizer = Tokenizer(models.WordPiece({token: index for index, token in enumerate(tokens)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder, tokenizer = tmp_path_factory.mktemp("golden-teachers"), listed_tokenizer()
    return {family: still_teacher(family, tokenizer, folder / family) for family in supported_families("masked")}


@pytest.fixture(scope="module")
def blocks_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One blocks cache for the module: every teacher has the same tokenizer, so the corpus is tokenised once."""
    return tmp_path_factory.mktemp("golden-cache")


def distil(teacher: Path, corpus: Path, run: Path, cache: Path, overrides: tuple[str, ...]) -> None:
    command = [
        "distill",
        "--teacher", str(teacher),
        "--corpus", str(corpus),
        "--output", str(run),
        "--max-steps", str(STEPS),
        "--save-steps", str(STEPS),
        *SMALL,
        "student.num_heads=2",
        "data.max_seq_length=32",
        "data.max_validation_blocks=8",
        "train.batch_size=4",
        "train.learning_rate=3e-3",
        "train.warmup_ratio=0",
        "train.log_interval=1",
        f"train.eval_interval={STEPS}",
        f"data.cache_dir={cache}",
        *overrides,
    ]  # fmt: skip
    assert main(command) == 0


def fingerprint(run: Path) -> Values:
    """What the golden file holds of a run: per tensor its shape, sum and sum of squares (float64), the logged
    loss parts of every step and the final validation metrics."""
    tensors = {}
    for name, tensor in sorted(load_file(str(run / "student" / "model.safetensors")).items()):
        values = tensor.to(torch.float64)
        tensors[name] = {
            "shape": list(tensor.shape),
            "sum": values.sum().item(),
            "sum_of_squares": values.square().sum().item(),
        }
    records = read_metrics(run)
    train = {
        str(record["step"]): {
            name: value
            for name, value in record.items()
            if name not in ("step", "split") and not any(word in name for word in UNSTABLE_METRICS)
        }
        for record in records
        if record["split"] == "train"
    }
    validation = [record for record in records if record["split"] == "validation"]
    assert validation and validation[-1]["step"] == STEPS, "the run logged no final validation"
    final = {name: value for name, value in validation[-1].items() if name not in ("step", "split")}
    return {"tensors": tensors, "train": train, "validation": final}


def close(actual: float, expected: float, scale: float | None = None, floor: float = 0.0) -> bool:
    """``actual`` within RELATIVE_TOLERANCE of ``expected``, relative to ``scale`` (default: their size), or
    within ``floor``."""
    scale = max(abs(actual), abs(expected)) if scale is None else scale
    return abs(actual - expected) <= RELATIVE_TOLERANCE * scale + floor


def differences(case: str, actual: Values, expected: Values) -> Iterator[str]:
    """Every value of ``actual`` that is not ``expected``'s, one line each, naming the case and what differs."""
    if actual["tensors"].keys() != expected["tensors"].keys():
        missing, extra = expected["tensors"].keys() - actual["tensors"], actual["tensors"].keys() - expected["tensors"]
        yield f"{case}: tensors missing {sorted(missing)}, unexpected {sorted(extra)}"
    for name in sorted(actual["tensors"].keys() & expected["tensors"].keys()):
        now, then = actual["tensors"][name], expected["tensors"][name]
        if now["shape"] != then["shape"]:
            yield f"{case}: tensor {name} has shape {now['shape']}, golden {then['shape']}"
            continue
        # A sum is compared at the largest |sum| a tensor of its norm can have: one that cancels to ~0 has no
        # relative precision of its own. Both allow elements to differ by ABSOLUTE_FLOOR, which matters only
        # for a tensor no loss moves (a key bias: softmax ignores it), whose values are rounding noise.
        count = math.prod(now["shape"])
        sum_scale = math.sqrt(count * then["sum_of_squares"])
        for field, scale, floor in (
            ("sum", sum_scale, math.sqrt(count) * ABSOLUTE_FLOOR),
            ("sum_of_squares", None, count * ABSOLUTE_FLOOR**2),
        ):
            if not close(now[field], then[field], scale, floor):
                yield f"{case}: tensor {name} {field} {now[field]!r}, golden {then[field]!r}"
    for section in ("train", "validation"):
        now, then = actual[section], expected[section]
        flat_now = dict(flatten(now)) if section == "train" else now
        flat_then = dict(flatten(then)) if section == "train" else then
        if flat_now.keys() != flat_then.keys():
            yield f"{case}: {section} metrics {sorted(flat_now)}, golden {sorted(flat_then)}"
        for name in sorted(flat_now.keys() & flat_then.keys()):
            if not close(flat_now[name], flat_then[name]):
                yield f"{case}: {section} {name} {flat_now[name]!r}, golden {flat_then[name]!r}"


def flatten(by_step: dict[str, dict[str, float]]) -> Iterator[tuple[str, float]]:
    for step, metrics in by_step.items():
        for name, value in metrics.items():
            yield f"step {step} {name}", value


@pytest.fixture(scope="module")
def golden(request: pytest.FixtureRequest) -> Iterator[dict[str, Values]]:
    """The stored values; in regeneration mode, the new ones are gathered here and written once the module ends,
    if every case ran (cases left out with -k keep their stored values; cases no longer in CASES are dropped)."""
    stored = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}
    if not REGENERATE:
        yield stored
        return
    fresh: dict[str, Values] = {}
    yield fresh
    if request.session.testsfailed:
        pytest.fail(f"a case failed: {GOLDEN_FILE} is left as it was")
    merged = {case: fresh[case] if case in fresh else stored[case] for case in CASES if case in fresh or case in stored}
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    GOLDEN_FILE.write_text(to_json(merged))


def to_json(cases: dict[str, Values]) -> str:
    """The golden file's text: one line per tensor, per step and per validation, so that a diff reads."""
    lines = ["{"]
    for index, (case, values) in enumerate(sorted(cases.items())):
        lines.append(f"  {json.dumps(case)}: {{")
        for number, section in enumerate(("tensors", "train", "validation")):
            entries = values[section]
            if section == "validation":
                lines.append(f'    "validation": {json.dumps(entries, sort_keys=True)}')
                continue
            lines.append(f"    {json.dumps(section)}: {{")
            items = sorted(entries.items(), key=lambda item: int(item[0]) if section == "train" else item[0])
            body = [f"      {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}" for name, entry in items]
            lines.append(",\n".join(body))
            lines.append("    }" + ("," if number < 2 else ""))
        lines.append("  }" + ("," if index < len(cases) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_student_matches_its_golden_values(
    case: str,
    golden: dict[str, Values],
    teachers: dict[str, Path],
    corpus_file: Path,
    blocks_cache: Path,
    tmp_path: Path,
) -> None:
    family, overrides = CASES[case]
    run = tmp_path / "run"
    distil(teachers[family], corpus_file, run, blocks_cache, overrides)
    actual = json.loads(json.dumps(fingerprint(run)))  # as the file holds it: floats through JSON
    if REGENERATE:
        golden[case] = actual
        return
    assert case in golden, f"{case} has no golden values in {GOLDEN_FILE}: run python -m tests.test_golden --regenerate"
    found = list(differences(case, actual, golden[case]))
    assert not found, f"{len(found)} values differ from {GOLDEN_FILE.name}:\n" + "\n".join(found[:20])


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python -m tests.test_golden --regenerate")
    # A fresh interpreter, so that pytest imports (and rewrites) the tests as a normal run does.
    environment = {**os.environ, "MONODISTILL_REGENERATE_GOLDEN": "1"}
    sys.exit(
        subprocess.call([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"], env=environment)
    )
