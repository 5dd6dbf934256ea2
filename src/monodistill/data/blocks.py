"""Tokenise the corpus, pack it into fixed-length blocks, hold some out, and cache the result.

Documents are joined with the separator token and cut into blocks of ``max_seq_length`` tokens
(``[CLS] ... [SEP]``), so no position is padding and every block costs the same. Only the final
remainder of the whole corpus is dropped. A fixed share of the blocks, drawn from the whole corpus
with a fixed seed, is held out for validation, so every student of an experiment (whatever its seed
or ``data_fraction``) is validated on the same blocks; ``data_fraction`` then keeps a seeded share
of the training blocks. The blocks are cached on disk under a key made of everything that changes
them (the corpus by its content, as a resume checks it, and every data setting but ``BLOCKS_FREE_FIELDS``);
a second run, or another rank, reads the cache.

Preparation is safe to share: a file lock beside each entry lets one process build it while every
other (another rank of the job, or an independent run sharing the cache) waits for the lock and
then reads it, so no rank waits in a collective for however long packing takes, and no valid entry
is replaced. An entry is built in a staging folder, sealed with a manifest
(row counts, file sizes and CRC-32s) and renamed into place; an entry that fails its manifest is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from monodistill.checkpoint import describe_write_error, is_disk_full
from monodistill.config import DataConfig
from monodistill.data.chat import check_chat_template, render_conversation
from monodistill.data.corpus import corpus_digest, load_corpus
from monodistill.errors import MonodistillError
from monodistill.progress import datasets_progress, progress_bar

CACHE_FORMAT = "blocks-v4"
SPLITS = ("train", "validation")
MANIFEST = "manifest.json"
STAGING = ".tmp-"
SPLIT_SEED = 0
"""Seeds the draw of the validation blocks: fixed, so that it depends on the corpus alone."""
PACK_BATCH_SIZE = 10_000
"""Documents read per Arrow batch by the packing pass: bounds its memory, not its result."""
BLOCKS_FREE_FIELDS = (
    "corpus",
    "cache_dir",
    "num_proc",
    "data_fraction",
    "mlm_probability",
    "static_masks",
    "language",
)
"""``DataConfig`` fields left out of the cache key: how the corpus is spelled (its content is keyed),
where the cache is, the worker count, the training share kept after packing, the masking drawn per
batch or per epoch, a description. Every other field is in the key, so a new one changes the key unless listed here."""


@dataclass
class Blocks:
    """Packed token blocks: ``input_ids`` (and ``word_starts`` for whole-word masking)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    cache_path: Path
    corpus_digest: str
    """The corpus's content fingerprint (``corpus.corpus_digest``), which a checkpoint records for resuming."""


class DamagedEntryError(Exception):
    """A cache entry that cannot be trusted: missing or truncated files, or an unreadable split."""


def default_cache_dir() -> Path:
    """$MONODISTILL_CACHE, else ~/.cache/monodistill."""
    return Path(os.environ.get("MONODISTILL_CACHE", Path.home() / ".cache" / "monodistill"))


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the tokenizer's full definition (vocabulary, normaliser, special tokens).

    The backend's padding and truncation settings are left out: calling the tokenizer changes them,
    so the same tokenizer would hash differently before and after its first use.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        text = repr(sorted(tokenizer.get_vocab().items()))
    else:
        definition = json.loads(backend.to_str())
        definition.pop("padding", None)
        definition.pop("truncation", None)
        text = json.dumps(definition, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def blocks_cache_key(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, digest: str | None = None, objective: str = "masked"
) -> str:
    """The cache key: the corpus's content, the tokenizer, every data setting but ``BLOCKS_FREE_FIELDS``, and for
    the causal objective its packing (``pack_documents``).

    ``digest`` is the corpus's ``corpus_digest`` when the caller has it already (it reads every local file).
    """
    settings = {name: value for name, value in asdict(config).items() if name not in BLOCKS_FREE_FIELDS}
    parts = [
        CACHE_FORMAT,
        digest or corpus_digest(config),
        tokenizer_fingerprint(tokenizer),
        json.dumps(settings, sort_keys=True),
        *([objective] if objective != "masked" else []),  # the masked objective's keys are those of before
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def build_blocks(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int, objective: str = "masked"
) -> Blocks:
    """Load packed train/validation blocks from the cache, building them first if needed.

    Safe to call from every rank of a distributed job and from independent runs sharing a cache.

    Args:
        config: The corpus and how to pack it.
        tokenizer: The student's tokenizer.
        seed: Picks the training blocks that ``data_fraction`` keeps.
        objective: ``masked``: documents end in the separator and every block is framed by CLS ... SEP (an
            encoder's input); ``causal``: documents are encoded as the tokenizer encodes a text (its BOS, where it
            adds one) and end in EOS, and blocks are plain windows of that stream (a decoder's pre-training input).

    Raises:
        MonodistillError: for a corpus too small to give a training and a validation block.
    """
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    digest = corpus_digest(config)
    path = cache_root / "blocks" / blocks_cache_key(config, tokenizer, digest, objective)
    splits = _load_or_build(config, tokenizer, path, digest, objective)
    train = splits["train"]
    if config.data_fraction < 1.0:
        train = train.select(subset_blocks(len(train), config.data_fraction, seed))
    return Blocks(
        train=train.with_format("torch"),
        validation=splits["validation"].with_format("torch"),
        cache_path=path,
        corpus_digest=digest,
    )


def subset_blocks(count: int, fraction: float, seed: int) -> list[int]:
    """The training blocks that ``data.data_fraction`` keeps: a seeded choice, in corpus order."""
    keep = max(1, round(count * fraction))
    return sorted(np.random.default_rng(seed).permutation(count)[:keep].tolist())


def _load_or_build(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, path: Path, digest: str, objective: str
) -> dict[str, datasets.Dataset]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with waiting_lock(Path(f"{path}.lock"), f"blocks cache {path}"):
        # Staging folders live only while their builder holds this lock: any seen now are from a killed run.
        for leftover in path.parent.glob(f"{path.name}{STAGING}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if path.exists():
            try:
                return load_entry(path)
            except DamagedEntryError as damage:
                print(f"blocks cache {path} is damaged ({damage}); rebuilding")
                _discard(path)
        _build_entry(config, tokenizer, path, digest, objective)
        return load_entry(path)


@contextmanager
def waiting_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold ``lock_file`` for the block; while another process holds it, say so (``waiting for another process to
    finish WHAT``) and wait for it."""
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process to finish {what}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def load_entry(path: Path) -> dict[str, datasets.Dataset]:
    """Read a sealed cache entry after checking it against its manifest.

    Raises:
        DamagedEntryError: naming what is wrong, when a file is missing, has the wrong size, or a
            split cannot be read or has the wrong number of rows.
    """
    try:
        if not (path / MANIFEST).is_file():
            raise DamagedEntryError(f"{MANIFEST} is missing")
        manifest = json.loads((path / MANIFEST).read_text())
        for name, expected in manifest["files"].items():
            file = path / name
            if not file.is_file():
                raise DamagedEntryError(f"{name} is missing")
            if file.stat().st_size != expected["bytes"]:
                raise DamagedEntryError(f"{name} has {file.stat().st_size} bytes, expected {expected['bytes']}")
            if crc32(file) != expected["crc32"]:
                raise DamagedEntryError(f"{name} does not match its checksum")
        splits = {name: datasets.load_from_disk(str(path / name)) for name in SPLITS}
        for name, dataset in splits.items():
            if len(dataset) != manifest["rows"][name]:
                raise DamagedEntryError(f"{name} has {len(dataset)} rows, expected {manifest['rows'][name]}")
    except DamagedEntryError:
        raise
    except Exception as error:  # any failure to read an entry means it must be rebuilt, whatever raised it
        raise DamagedEntryError(f"{type(error).__name__}: {error}") from None
    return splits


def crc32(file: Path) -> int:
    """The CRC-32 of a file: catches a flipped byte that leaves the size alone, at several GB/s."""
    value = 0
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            value = zlib.crc32(chunk, value)
    return value


def _discard(path: Path) -> None:
    # Rename first, so the entry vanishes at once even if the deletion is interrupted.
    doomed = path.with_name(f"{path.name}{STAGING}discard-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _build_entry(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, path: Path, digest: str, objective: str
) -> None:
    check_packable(tokenizer, objective, config)
    print(f"building blocks cache {path} from {config.corpus}")
    staging = path.with_name(f"{path.name}{STAGING}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    work = staging / "work"  # intermediate Arrow files, deleted before the entry is sealed
    work.mkdir(parents=True)
    try:
        total_tokens = _tokenize_and_pack(config, tokenizer, work, path.name, digest, objective)
        blocks = datasets.Dataset.from_file(str(work / "blocks.arrow"))
        if len(blocks) < 2:
            raise MonodistillError(
                f"corpus {config.corpus} gives {total_tokens} tokens, fewer than two blocks of "
                f"data.max_seq_length={config.max_seq_length}: one is needed for training and one for validation; "
                "add text or lower max_seq_length"
            )
        blocks = blocks.shuffle(seed=SPLIT_SEED)
        num_validation = min(config.max_validation_blocks, max(1, round(len(blocks) * config.validation_fraction)))
        split = {
            "validation": blocks.select(range(num_validation)),
            "train": blocks.select(range(num_validation, len(blocks))),
        }
        for name, dataset in split.items():
            dataset.save_to_disk(str(staging / name))
        shutil.rmtree(work)
        # The manifest is written last: an entry without a complete one is never trusted.
        manifest = {"format": CACHE_FORMAT, "rows": {name: len(d) for name, d in split.items()}}
        manifest["files"] = {
            str(file.relative_to(staging)): {"bytes": file.stat().st_size, "crc32": crc32(file)}
            for file in sorted(staging.rglob("*"))
            if file.is_file()
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.rename(staging, path)  # under the lock, and no entry is there: nothing valid is ever replaced
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error):
            raise
        raise MonodistillError(
            f"no space left on device while writing the blocks cache in {path.parent} "
            f"({describe_write_error(error, path.parent)}); the partial entry was removed: make room, or set "
            "data.cache_dir (or $MONODISTILL_CACHE) to a disk with space"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_packable(tokenizer: PreTrainedTokenizerBase, objective: str, config: DataConfig) -> None:
    """Refuse, in one line, a tokenizer without the tokens that pack its objective's blocks, and a chat corpus that
    cannot be rendered or trained on."""
    if config.chat_column:
        if objective != "causal":
            raise MonodistillError(
                "data.chat_column: a chat corpus trains a causal student on the assistant's tokens; a masked "
                "teacher's objective reads plain text (unset data.chat_column)"
            )
        check_chat_template(tokenizer, config.corpus)
    if objective == "causal" and tokenizer.eos_token_id is None:
        raise MonodistillError(
            "the tokenizer has no EOS token to end each document with when packing a causal LM's blocks; "
            "give the teacher's tokenizer an eos_token"
        )
    if objective == "masked" and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
        raise MonodistillError("the tokenizer has no CLS/SEP (or <s>/</s>) tokens to frame blocks with")


def _tokenize_and_pack(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, work: Path, fingerprint: str, digest: str, objective: str
) -> int:
    # A scope of its own: the tokenised corpus is unmapped and deleted once packed, so the pages and
    # disk it holds are free before the blocks are shuffled and saved.
    documents = load_corpus(config, digest)
    tokens = _tokenize(documents, tokenizer, config, work / "tokens.arrow", fingerprint, objective)
    frame = (int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)) if objective == "masked" else None
    total_tokens = write_blocks(tokens, work / "blocks.arrow", config.max_seq_length, frame)
    del tokens
    for file in work.glob("tokens*.arrow"):
        file.unlink()
    return total_tokens


def _tokenize(
    documents: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    config: DataConfig,
    cache_file: Path,
    fingerprint: str,
    objective: str = "masked",
) -> datasets.Dataset:
    # Masked: the body of a framed block, each document closed by the separator. Causal: each document as the
    # tokenizer encodes a text (Llama's and Gemma's BOS first; Qwen's and GPT-2's nothing), closed by EOS.
    causal = objective == "causal"
    separator = tokenizer.eos_token_id if causal else tokenizer.sep_token_id

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        if config.chat_column:
            return _tokenize_chats(tokenizer, batch["text"], separator)
        encoded = tokenizer(batch["text"], add_special_tokens=causal)
        # A causal document keeps an EOS its tokenizer put there already.
        closed = [ids if causal and ids[-1:] == [separator] else ids + [separator] for ids in encoded["input_ids"]]
        result: dict[str, list[list[int]]] = {"input_ids": closed}
        if config.whole_word_mask:
            result["word_starts"] = [_word_starts(encoded.word_ids(i)) + [1] for i in range(len(batch["text"]))]
        return result

    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    if config.whole_word_mask:
        features["word_starts"] = datasets.Sequence(datasets.Value("int8"))
    if config.chat_column:
        features["scored"] = datasets.Sequence(datasets.Value("int8"))
    # Row-wise, so the order and the result do not depend on num_proc; packing runs after, in one pass.
    with datasets_progress():  # datasets draws this bar, also across num_proc workers
        return documents.map(
            tokenize,
            batched=True,
            remove_columns=["text"],
            features=features,
            num_proc=config.num_proc if config.num_proc > 1 else None,
            cache_file_name=str(cache_file),
            new_fingerprint=f"{fingerprint}-tokens",
            desc="tokenising corpus",
        )


def _tokenize_chats(
    tokenizer: PreTrainedTokenizerBase, conversations: list[list[dict[str, str]]], eos: int
) -> dict[str, list[list[int]]]:
    """Each conversation under the chat template, closed by EOS (unless the template ends it so), and which of its
    tokens are the assistant's (``scored``; the closing EOS too when it ends an assistant turn)."""
    result: dict[str, list[list[int]]] = {"input_ids": [], "scored": []}
    for messages in conversations:
        ids, scored = render_conversation(tokenizer, messages)
        if ids[-1:] != [eos]:
            ids, scored = [*ids, eos], [*scored, scored[-1] if scored else 0]
        result["input_ids"].append(ids)
        result["scored"].append(scored)
    return result


def write_blocks(tokens: datasets.Dataset, file: Path, block_length: int, frame: tuple[int, int] | None) -> int:
    """Pack tokenised documents into an Arrow file of blocks in one streaming pass.

    Memory stays bounded by ``PACK_BATCH_SIZE`` documents whatever the corpus size.

    Args:
        tokens: one row per document, ``input_ids`` ending in the separator (and ``word_starts``).
        file: the Arrow (IPC stream) file to write, one row per block.
        block_length: tokens per block, framing tokens included.
        frame: the tokens opening and closing every block (an encoder's CLS and SEP), or None: plain windows.

    Returns:
        The number of tokens read, remainder included.
    """
    columns = [name for name in ("input_ids", "word_starts", "scored") if name in tokens.column_names]
    # word_starts: 1 at the framing tokens; scored (chat corpora, never framed): whether a token is a target.
    edges = {"input_ids": frame or (0, 0), "word_starts": (1, 1), "scored": (0, 0)}
    types = {"input_ids": pa.int32(), "word_starts": pa.int8(), "scored": pa.int8()}
    schema = pa.schema([(name, pa.list_(types[name], block_length)) for name in columns])
    total_tokens = 0

    def flat_batches() -> Iterator[dict[str, np.ndarray]]:
        nonlocal total_tokens
        with progress_bar(len(tokens), "packing blocks", "doc", leave=False) as progress:
            for table in tokens.with_format("arrow").iter(batch_size=PACK_BATCH_SIZE):
                flat = {name: pc.list_flatten(table[name]).to_numpy() for name in columns}
                total_tokens += len(flat["input_ids"])
                progress.update(len(table))
                yield flat

    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for bodies in pack_token_stream(flat_batches(), block_length - (2 if frame else 0)):
            framed = [frame_blocks(bodies[name], *edges[name]) if frame else bodies[name] for name in columns]
            arrays = [pa.FixedSizeListArray.from_arrays(blocks.ravel(), block_length) for blocks in framed]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
    return total_tokens


def pack_token_stream(batches: Iterable[dict[str, np.ndarray]], body_length: int) -> Iterator[dict[str, np.ndarray]]:
    """Cut consecutive flat token arrays into block bodies, carrying each remainder to the next batch.

    Args:
        batches: per column, the concatenated tokens of consecutive documents, ``(N,)``; every column
            of a batch has the same length.
        body_length: tokens per block body.

    Yields:
        Per column, the next full bodies, ``(num_blocks, body_length)``. Only the tokens after the last
        full body of the whole stream are never yielded.
    """
    carry: dict[str, np.ndarray] = {}
    for batch in batches:
        joined = {
            name: np.concatenate([carry[name], tokens]) if name in carry else tokens for name, tokens in batch.items()
        }
        usable = len(next(iter(joined.values()))) // body_length * body_length
        if usable:
            yield {name: tokens[:usable].reshape(-1, body_length) for name, tokens in joined.items()}
        carry = {name: tokens[usable:] for name, tokens in joined.items()}


def frame_blocks(bodies: np.ndarray, first: int, last: int) -> np.ndarray:
    """Put ``first`` before and ``last`` after every body, keeping its dtype: ``(B, L - 2)`` -> ``(B, L)``."""
    edge = np.empty((len(bodies), 1), dtype=bodies.dtype)
    return np.concatenate([np.full_like(edge, first), bodies, np.full_like(edge, last)], axis=1)


def _word_starts(word_ids: list[int | None]) -> list[int]:
    starts = []
    previous: int | None = None
    for word_id in word_ids:
        starts.append(int(word_id is None or word_id != previous))
        previous = word_id
    return starts
