"""Shared fixtures: tiny tokenizers, teachers and corpora built on the spot, never downloaded."""

from __future__ import annotations

import os

# Before transformers (and huggingface_hub, which reads it once on import) is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BloomConfig,
    BloomForCausalLM,
    CamembertConfig,
    CamembertForMaskedLM,
    Cohere2Config,
    Cohere2ForCausalLM,
    CohereConfig,
    CohereForCausalLM,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    ElectraConfig,
    ElectraForMaskedLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    RemBertConfig,
    RemBertForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

# The property tests draw the same examples on every run, so a red suite means a change, never a luckless draw;
# HYPOTHESIS_PROFILE=explore searches fresh examples, many more of them.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SYLLABLES = [
    "ka",
    "ma",
    "ta",
    "pa",
    "la",
    "sa",
    "na",
    "ba",
    "ga",
    "ng",
    "bi",
    "ko",
    "mu",
    "ri",
    "yo",
    "an",
    "in",
]


def shared_dir() -> Path:
    """The shared data folder: $MONODISTILL_SHARED, else ../shared beside the repository."""
    return Path(os.environ.get("MONODISTILL_SHARED", REPO_ROOT.parent / "shared"))


def require_shared(*parts: str) -> Path:
    """A path under the shared folder, or skip the test saying what is missing."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (set MONODISTILL_SHARED to its folder)")
    return path


def make_lines(count: int, seed: int = 0) -> list[str]:
    """Pseudo-Tagalog lines from a small syllable inventory: repetitive enough to be learnable."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(120)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 14))) + "." for _ in range(count)]


def write_keyword_task(folder: Path, count: int = 300) -> Path:
    """A classification task whose label is 1 iff the line contains "ng": learnable by any encoder."""
    lines = make_lines(count, seed=5)
    rows = [f"{line},{int(' ng' in ' ' + line)}" for line in lines]
    split = count * 4 // 5
    (folder / "train.csv").write_text("text,label\n" + "\n".join(rows[:split]) + "\n")
    (folder / "test.csv").write_text("text,label\n" + "\n".join(rows[split:]) + "\n")
    spec = "name: keyword\nkind: classification\ntrain: train.csv\ntest: test.csv\n"
    (folder / "task.yaml").write_text(spec + "text_column: text\nlabel_column: label\n")
    return folder / "task.yaml"


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(make_lines(400)) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained on the fixture text, with BERT's special tokens."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        make_lines(600, seed=1), trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _distilbert(common: dict[str, Any]) -> PreTrainedModel:
    # DistilBERT's own field names for the same shape.
    sizes = {"dim": 32, "n_layers": 4, "n_heads": 4, "hidden_dim": 64}
    kept = {key: common[key] for key in ("vocab_size", "max_position_embeddings", "pad_token_id")}
    return DistilBertForMaskedLM(DistilBertConfig(**kept, **sizes))


def _modernbert(common: dict[str, Any]) -> PreTrainedModel:
    # Global attention in layers 0 and 3, a local window of 8 tokens (4 each side) in layers 1 and 2, so that
    # blocks longer than 8 tokens exercise both; no special ids beyond the padding one (ModernBERT's default
    # ids are those of its own 50k tokenizer).
    specials = dict.fromkeys(("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"))
    return ModernBertForMaskedLM(ModernBertConfig(**common, local_attention=8, **specials))


ROBERTA_POSITIONS = {"max_position_embeddings": 66}
TINY_TEACHERS: dict[str, Callable[[dict[str, Any]], PreTrainedModel]] = {
    "bert": lambda common: BertForMaskedLM(BertConfig(**common)),
    # RoBERTa-style position ids start after the padding id: two more rows.
    "camembert": lambda common: CamembertForMaskedLM(CamembertConfig(**{**common, **ROBERTA_POSITIONS})),
    "deberta-v2": lambda common: DebertaV2ForMaskedLM(
        DebertaV2Config(**common, relative_attention=True, position_biased_input=False)
    ),
    "distilbert": _distilbert,
    # A generator as ELECTRA ships them: a factorised embedding size apart from the hidden size.
    "electra": lambda common: ElectraForMaskedLM(ElectraConfig(**common, embedding_size=16)),
    "modernbert": _modernbert,
    # Decoupled embeddings as RemBERT ships them: narrow input (16 of 32), wide untied output (48).
    "rembert": lambda common: RemBertForMaskedLM(
        RemBertConfig(**common, input_embedding_size=16, output_embedding_size=48)
    ),
    "roberta": lambda common: RobertaForMaskedLM(RobertaConfig(**{**common, **ROBERTA_POSITIONS})),
    "xlm-roberta": lambda common: XLMRobertaForMaskedLM(XLMRobertaConfig(**{**common, **ROBERTA_POSITIONS})),
}
"""One row per family adapter (``monodistill.families``): a random 4-layer masked LM of that family (hidden 32,
4 heads, FFN 64), small enough for a CPU test. Tests parametrise over these rows; a new family adds one."""


def build_tiny_teacher(family: str, vocab_size: int, pad_token_id: int) -> PreTrainedModel:
    """The family's tiny teacher (``TINY_TEACHERS``), seeded."""
    common = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "pad_token_id": pad_token_id,
    }
    torch.manual_seed(0)
    return TINY_TEACHERS[family](common)


def save_teacher(family: str, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    model = build_tiny_teacher(family, len(tokenizer), tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    return save_teacher("bert", tiny_tokenizer, tmp_path_factory.mktemp("teacher") / "bert")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def still_teacher_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    """The tiny BERT teacher without dropout: students copy its config, so their gradients are deterministic
    and runs that split the same global batch differently (accumulation, processes) can be compared."""
    model = build_tiny_teacher("bert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    path = tmp_path_factory.mktemp("teacher") / "still"
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


# --- decoders (causal LMs) ---

GQA = {"num_key_value_heads": 2}
"""Two key-value heads for the four query heads, where the family has grouped-query attention."""
SMALL_HEADS = {"head_dim": 8, "query_pre_attn_scalar": 8}
"""hidden / heads, where the family's config sets head_dim apart (Gemma's default is 256)."""
THREE_LOCAL_ONE_GLOBAL = {
    "sliding_window": 4,
    "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
}
"""A sliding window of 4 tokens in three layers of four, so that blocks of more than 4 tokens exercise both."""


def _gpt2(common: dict[str, Any]) -> PreTrainedModel:
    sizes = {"n_embd": 32, "n_layer": 4, "n_head": 4, "n_inner": 64, "n_positions": common["max_position_embeddings"]}
    kept = {key: common[key] for key in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id")}
    return GPT2LMHeadModel(GPT2Config(**kept, **sizes))


def _bloom(common: dict[str, Any]) -> PreTrainedModel:
    # ALiBi, no positions; its feed-forward is 4 x hidden (128), whatever intermediate_size says.
    kept = {key: common[key] for key in ("vocab_size", "hidden_size", "pad_token_id", "bos_token_id", "eos_token_id")}
    return BloomForCausalLM(BloomConfig(**kept, n_layer=4, n_head=4))


TINY_DECODERS: dict[str, Callable[[dict[str, Any]], PreTrainedModel]] = {
    "bloom": _bloom,
    # Cohere's logit_scale (0.0625, as in Aya Expanse) and tied embeddings are its defaults.
    "cohere": lambda common: CohereForCausalLM(CohereConfig(**common, **GQA)),
    "cohere2": lambda common: Cohere2ForCausalLM(Cohere2Config(**common, **GQA, head_dim=8, **THREE_LOCAL_ONE_GLOBAL)),
    # A logit cap low enough to bend a random model's logits (Gemma-2's releases cap at 30).
    "gemma2": lambda common: Gemma2ForCausalLM(
        Gemma2Config(**common, **GQA, **SMALL_HEADS, sliding_window=4, final_logit_softcapping=0.1)
    ),
    "gemma3_text": lambda common: Gemma3ForCausalLM(
        Gemma3TextConfig(**common, **GQA, **SMALL_HEADS, **THREE_LOCAL_ONE_GLOBAL)
    ),
    "gpt2": _gpt2,
    "llama": lambda common: LlamaForCausalLM(LlamaConfig(**common, **GQA)),  # untied, as Llama-2 and 3
    "mistral": lambda common: MistralForCausalLM(MistralConfig(**common, **GQA, head_dim=8, sliding_window=4)),
    "qwen2": lambda common: Qwen2ForCausalLM(Qwen2Config(**common, **GQA, tie_word_embeddings=True)),  # as 0.5B
    "qwen3": lambda common: Qwen3ForCausalLM(Qwen3Config(**common, **GQA, head_dim=8)),
}
"""One row per decoder family adapter: a random 4-layer causal LM of that family (hidden 32, 4 heads, 2 key-value
heads where the family has grouped-query attention, FFN 64), as ``TINY_TEACHERS`` for the masked families."""

DECODER_TOKENIZER_KIND = dict.fromkeys(("mistral", "gemma2", "gemma3_text"), "byte-fallback")
"""The families whose tokenizer is SentencePiece BPE with byte fallback; the others' is byte-level BPE."""


@pytest.fixture(scope="session")
def decoder_tokenizers() -> dict[str, PreTrainedTokenizerFast]:
    """Both kinds of decoder tokenizer (``bpe_tokenizers.DECODER_KINDS``), trained on the fixture text."""
    from .bpe_tokenizers import DECODER_KINDS

    return {kind: build(make_lines(600, seed=1)) for kind, build in DECODER_KINDS.items()}


def decoder_tokenizer(family: str, tokenizers: dict[str, PreTrainedTokenizerFast]) -> PreTrainedTokenizerFast:
    """The tokenizer of the kind ``family`` uses, from the ``decoder_tokenizers`` fixture."""
    return tokenizers[DECODER_TOKENIZER_KIND.get(family, "byte-level")]


def build_tiny_decoder(family: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """The family's tiny decoder (``TINY_DECODERS``) over ``tokenizer``'s vocabulary and special ids, seeded."""
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    torch.manual_seed(0)
    return TINY_DECODERS[family](common)


def save_decoder(family: str, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    """Save the family's tiny decoder (``build_tiny_decoder``) with ``tokenizer`` into ``path``."""
    model = build_tiny_decoder(family, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
