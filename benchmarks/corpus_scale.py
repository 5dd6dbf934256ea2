"""Corpus preparation at scale: wall time, MB/s and peak memory of ``build_blocks`` per corpus size.

Each size is a corpus made by repeating the shared Tagalog corpus into a temporary folder (never under
the repository), tokenised with the real mBERT tokenizer and packed into a fresh blocks cache. Each
size runs in its own process so its peaks are its own: max RSS of the process and of its tokenising
workers (``ru_maxrss``, which counts the pages of memory-mapped Arrow files it touched), and, sampled
from /proc, the main process's peak anonymous memory (``Pss_Anon``: the heap, what must stay bounded)
and mapped-file pages (``Pss_File``: the Arrow files, reclaimable), and the anonymous memory of all
the processes together. The corpora, caches and the Hugging Face datasets cache of the runs are
deleted at the end. The last line printed is ``rss_growth: X.XX`` (peak RSS at the largest size / at
the smallest).

    python benchmarks/corpus_scale.py                       # 100 MB and 1,000 MB, data.num_proc=2
    python benchmarks/corpus_scale.py --sizes-mb 20 --num-proc 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARED = Path(os.environ.get("MONODISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MB = 1_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000], help="corpus sizes in MB (10^6 B)")
    parser.add_argument("--num-proc", type=int, default=2, help="data.num_proc")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--source", default=str(SHARED / "data" / "tl" / "corpus.txt"), help="text to repeat")
    parser.add_argument("--tokenizer", default=str(SHARED / "data" / "tokenizers" / "bert-base-multilingual-cased"))
    parser.add_argument("--work-dir", default=None, help="parent of the temporary folder (default: the system's)")
    parser.add_argument("--measure", nargs=2, metavar=("CORPUS", "CACHE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def write_corpus(source: Path, target: Path, size_mb: int) -> int:
    """Repeat ``source`` into ``target`` until it holds ``size_mb`` MB, cut at a line end; returns bytes."""
    text = source.read_bytes()
    remaining = size_mb * MB
    with target.open("wb") as file:
        while remaining > 0:
            piece = text if remaining >= len(text) else text[: text.rfind(b"\n", 0, remaining) + 1]
            if not piece:
                break
            file.write(piece)
            remaining -= len(piece)
    return target.stat().st_size


def memory_now() -> tuple[int, int, int]:
    """Bytes, from /proc (Linux): this process's anonymous and file-backed memory, and the anonymous
    memory of it and its children together.

    Proportional set sizes, so pages a forked worker still shares with its parent count once.
    """
    import psutil  # installed with accelerate

    def rollup(pid: int) -> dict[str, int]:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:  # a worker that has just exited
            return {}
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss_")}

    main = rollup(os.getpid())
    children = [rollup(child.pid) for child in psutil.Process().children(recursive=True)]
    tree = main.get("Pss_Anon", 0) + sum(child.get("Pss_Anon", 0) for child in children)
    return main.get("Pss_Anon", 0), main.get("Pss_File", 0), tree


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Build the blocks of one corpus into an empty cache, in this process; returns time and peaks."""
    from transformers import AutoTokenizer

    from monodistill.config import DataConfig
    from monodistill.data.blocks import build_blocks

    corpus, cache = args.measure
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = DataConfig(corpus=corpus, max_seq_length=args.max_seq_length, num_proc=args.num_proc, cache_dir=cache)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peaks = [0, 0, 0]  # as memory_now() gives them
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peaks[:] = [max(peak, now) for peak, now in zip(peaks, memory_now(), strict=True)]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    blocks = build_blocks(config, tokenizer, seed=0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    cache_bytes = sum(file.stat().st_size for file in blocks.cache_path.rglob("*") if file.is_file())
    return {
        "seconds": seconds,
        "blocks": len(blocks.train) + len(blocks.validation),
        "baseline_rss": baseline,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "peak_anonymous_main": peaks[0],
        "peak_file_main": peaks[1],
        "peak_anonymous": peaks[2],
        "cache_bytes": cache_bytes,
    }


def run_size(args: argparse.Namespace, folder: Path, size_mb: int) -> dict[str, float]:
    """Make one corpus, measure it in a fresh process, delete it; returns the measurement."""
    corpus = folder / f"corpus-{size_mb}mb.txt"
    corpus_bytes = write_corpus(Path(args.source), corpus, size_mb)
    # The text's Arrow copy goes to the datasets cache: keep it in the temporary folder too.
    env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf"), "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--measure", str(corpus), str(folder / "cache")]
    command += ["--num-proc", str(args.num_proc), "--max-seq-length", str(args.max_seq_length)]
    command += ["--tokenizer", args.tokenizer]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    corpus.unlink()
    for path in (folder / "cache", folder / "hf"):
        shutil.rmtree(path, ignore_errors=True)
    return {"corpus_bytes": corpus_bytes, **measured}


def print_table(rows: list[dict[str, float]]) -> None:
    print(
        "| corpus | wall | MB/s | blocks | peak RSS: main / workers | main: peak anon. / mapped files"
        " | peak anon., all processes | blocks cache |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        size_mb = row["corpus_bytes"] / MB
        print(
            f"| {size_mb:,.0f} MB | {row['seconds']:,.0f} s | {size_mb / row['seconds']:.2f} | {row['blocks']:,}"
            f" | {gib(row['peak_rss'])} / {gib(row['peak_rss_workers'])}"
            f" | {gib(row['peak_anonymous_main'])} / {gib(row['peak_file_main'])} | {gib(row['peak_anonymous'])}"
            f" | {gib(row['cache_bytes'])} |"
        )


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f} GiB"


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    folder = Path(tempfile.mkdtemp(prefix="corpus_scale-", dir=args.work_dir))
    try:
        rows = []
        for size_mb in sorted(args.sizes_mb):
            rows.append(run_size(args, folder, size_mb))
            print(f"{size_mb} MB: {json.dumps(rows[-1])}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_table(rows)
    peaks = [max(row["peak_rss"], row["peak_rss_workers"]) for row in rows]
    print(f"anonymous_growth: {rows[-1]['peak_anonymous'] / rows[0]['peak_anonymous']:.2f}")
    print(f"rss_growth: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
