"""Run-folder I/O in one place: resolved config, metrics, checkpoints and the final student.

A run folder looks like::

    RUN/
      config.yaml          resolved config
      environment.json     package versions, git SHA, command line, devices
      metrics.jsonl        one JSON object per logged step (train and validation)
      checkpoints/step-00000200/   model, optimizer, scheduler, RNG (Accelerate) + trainer_state.json
      student/             the final student and tokenizer (save_pretrained) with a model card
      tensorboard/

Every write that a later run trusts is atomic: written under a temporary name, then renamed.
A checkpoint counts only once its folder has its final name, so a run killed mid-save resumes from
the previous one. Each checkpoint also carries a manifest (every file's size and SHA-256), written
last before the rename; resuming verifies it, so a checkpoint damaged later (a truncated or deleted
file) is skipped for the previous intact one instead of loading wrong state.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from monodistill import ranks
from monodistill.errors import MonodistillError, command_to_resume

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
STUDENT_DIR = "student"
MODEL_MANIFEST = ".monodistill-manifest.json"
"""Sizes and SHA-256 of a saved student's files (its README.md card aside), written last;
``model_folder_problem`` checks it."""
PACKAGES = ("monodistill", "torch", "transformers", "tokenizers", "datasets", "accelerate")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a staging folder that replaces ``path`` only if the block finishes."""
    staging = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    honour_umask(staging)
    _fsync_tree(staging)
    if path.exists():
        # Move the old folder aside first so that `path` is never missing a complete version for long.
        retired = path.with_name(f".old-{path.name}-{os.getpid()}")
        os.replace(path, retired)
        os.replace(staging, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, path)


def honour_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode a plain write would (0644 under umask 022).

    Some writers (transformers' safetensors save among them) create files 0600 through a temporary
    file: another user, or a container, could then not load the student.
    """
    umask = os.umask(0)
    os.umask(umask)
    for item in [folder, *folder.rglob("*")]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file under a temporary name and rename it into place."""
    staging = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        with open(staging, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)  # a full disk must not leave half-written files behind
        raise


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def write_environment(run_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """Record package versions, git SHA, command line and devices beside the run."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    environment = {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": _git_sha(),
        "command": sys.argv,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        **(extra or {}),
    }
    atomic_write_text(run_dir / "environment.json", json.dumps(environment, indent=2) + "\n")


def _git_sha() -> str | None:
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record to metrics.jsonl."""
    with open(run_dir / METRICS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All metric records of a run, skipping a torn last line."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop records logged after ``last_step``: a resumed run logs those steps again."""
    records = [record for record in read_metrics(run_dir) if record.get("step", 0) <= last_step]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in records))


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of an optimizer step lives."""
    return run_dir / CHECKPOINTS / f"step-{step:08d}"


def staging_path(path: Path, job_id: int) -> Path:
    """Where a checkpoint is written before it is published under its final name, unique to one job."""
    return path.with_name(f".tmp-{path.name}-{job_id}")


def save_checkpoint(
    run_dir: Path,
    step: int,
    write: Callable[[Path], None],
    state: dict[str, Any],
    keep: int,
    job_id: int,
    estimate: int,
) -> Path:
    """Save a checkpoint atomically from every rank, publish it with its state and manifest, prune old ones.

    Args:
        run_dir: The run folder.
        step: The optimizer step it holds.
        write: Writes each rank's files into the staging folder it is given (model, optimizer, RNG).
        state: The trainer state, written by the main rank.
        keep: How many recent checkpoints to keep.
        job_id: The same on every rank of this job (``ranks.job_id``): names the staging folder.
        estimate: About how many bytes a checkpoint takes when none exists yet to measure.

    Raises:
        MonodistillError: on every rank when any rank could not write (a full disk above all), after
            removing the partial save; the previous checkpoints are untouched.
    """
    path = checkpoint_path(run_dir, step)
    staging = staging_path(path, job_id)
    main = ranks.process_state().is_main_process
    ranks.process_state().wait_for_everyone()
    error: Exception | None = None
    try:
        write(staging)
    except (OSError, RuntimeError) as failure:  # torch's writer reports a full disk as a RuntimeError
        error = failure
    # Every rank writes its own random state into the staging folder before it is published.
    _raise_if_save_failed(error, staging, step, run_dir, estimate)
    if main:
        try:
            publish_checkpoint(staging, path, state)
            prune_checkpoints(run_dir, keep)
        except (OSError, RuntimeError) as failure:
            error = failure
    _raise_if_save_failed(error, staging, step, run_dir, estimate)
    return path


def _raise_if_save_failed(error: Exception | None, staging: Path, step: int, run_dir: Path, estimate: int) -> None:
    failed_ranks = ranks.ranks_where(error is not None)  # also the barrier between save and publish
    if not failed_ranks:
        return
    if ranks.process_state().is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    if error is None:
        raise MonodistillError(f"saving checkpoint step {step} failed on rank {failed_ranks[0]}")
    latest = latest_checkpoint(run_dir)
    # About how much one checkpoint takes: the last one's size, else the estimate.
    needed = sum(file.stat().st_size for file in latest.rglob("*") if file.is_file()) if latest else estimate
    reason = describe_write_error(error, staging.parent, needed)
    raise MonodistillError(
        f"could not save the checkpoint of step {step}: {reason}; the partial save was removed. "
        f"Last good checkpoint: {latest or 'none'}; make room, then run `{command_to_resume()}` to resume"
    )


def publish_checkpoint(staging: Path, path: Path, state: dict[str, Any]) -> None:
    """Add the trainer state and the manifest to a fully written staging folder, then give it its final name."""
    atomic_write_text(staging / STATE_FILE, json.dumps(state) + "\n")
    write_manifest(staging)
    _fsync_tree(staging)
    if path.exists():
        shutil.rmtree(path)
    os.replace(staging, path)


def write_manifest(folder: Path, name: str = MANIFEST_FILE, leave_out: tuple[str, ...] = ()) -> None:
    """Record the size and SHA-256 of every file in ``folder`` (written last: it vouches for the rest).

    ``leave_out``: file names the manifest does not vouch for (a model card, rewritten after evaluation).
    """
    files = {
        str(file.relative_to(folder)): {"bytes": file.stat().st_size, "sha256": _sha256(file)}
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name != name and file.name not in leave_out
    }
    atomic_write_text(folder / name, json.dumps({"files": files}, indent=1) + "\n")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be trusted (a missing, resized or altered file), or None when it is intact.

    The manifest is written last, so a checkpoint without one was never completed.
    """
    if not (checkpoint / MANIFEST_FILE).is_file():
        return f"{MANIFEST_FILE} is missing (the save never completed)"
    return manifest_problem(checkpoint, MANIFEST_FILE)


def manifest_problem(folder: Path, manifest_name: str) -> str | None:
    """The first file of ``folder`` that does not match its manifest (missing, resized, altered), or None."""
    try:
        files = json.loads((folder / manifest_name).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return f"{manifest_name} is unreadable"
    for name, expected in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size:,} of its {expected['bytes']:,} bytes"
        if _sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def model_folder_problem(folder: Path) -> str | None:
    """Why a saved model folder cannot be loaded, or None: files that fail the manifest monodistill wrote
    with it (``MODEL_MANIFEST``), or, for a folder written elsewhere, no weights or a truncated one.

    Reads every file once when there is a manifest (about a second per GB), only headers otherwise.
    """
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    if (folder / MODEL_MANIFEST).is_file():
        return manifest_problem(folder, MODEL_MANIFEST)
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        return "it holds no model weights (model.safetensors or pytorch_model.bin)"
    from safetensors import SafetensorError, safe_open

    for file in weights:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), "pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            return f"{file.name} is damaged ({str(error).splitlines()[0]})"
    return None


def check_model_folder(folder: Path, what: str = "model") -> None:
    """Refuse, in one line naming the folder and the problem, a model folder that cannot be loaded.

    Raises:
        MonodistillError: see ``model_folder_problem``.
    """
    problem = model_folder_problem(folder)
    if problem is not None:
        raise MonodistillError(f"{what} folder {folder} is damaged or incomplete: {problem}")


def latest_intact_checkpoint(run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that passes its manifest, and the newer ones skipped with the reason."""
    skipped: list[tuple[Path, str]] = []
    for checkpoint in reversed(list_checkpoints(run_dir)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint, skipped
        skipped.append((checkpoint, problem))
    return None, skipped


def set_aside(checkpoint: Path) -> Path:
    """Move a damaged checkpoint out of the listing (``damaged-step-N``), kept for a look; returns where it went."""
    target = checkpoint.with_name(f"damaged-{checkpoint.name}")
    number = 1
    while target.exists():
        number += 1
        target = checkpoint.with_name(f"damaged-{checkpoint.name}-{number}")
    os.replace(checkpoint, target)
    return target


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def free_bytes(path: Path) -> int:
    """Free space on the file system holding ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def is_disk_full(error: BaseException) -> bool:
    """Whether an error means the file system ran out of space (or quota), whichever library raised it.

    safetensors and torch's writer report the OS error in their own types, as text ("os error 28").
    """
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return any(f"os error {code}" in text for code in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in text


def describe_write_error(error: BaseException, folder: Path, needed: int | None = None) -> str:
    """A failed write in a few words: no space left (and how much is needed where), or the OS's reason."""
    if is_disk_full(error) or (needed is not None and free_bytes(folder) < needed):
        room = f"needs about {needed / 1e6:,.1f} MB in {folder}" if needed else f"in {folder}"
        return f"no space left on device ({room})"
    if isinstance(error, OSError):
        return f"{error.strerror or error} ({error.filename or folder})"
    return str(error).splitlines()[0]


def describe_disk(root: Path) -> str:
    """What a run or experiment folder takes on disk, and what of it may go once the work is done: its
    checkpoints, each the student with its AdamW state (about 3x the student), needed only to ``--resume`` or
    extend a run. E.g. ``disk: 255 MB in RUN; checkpoints/ 191 MB of it (...; delete once done: rm -r ...)``."""

    def size(folder: Path) -> int:
        return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())

    folders = sorted(path for path in root.rglob(CHECKPOINTS) if path.is_dir())
    line = f"disk: {_megabytes(size(root))} in {root}"
    if folders:
        held = sum(size(folder) for folder in folders)
        line += (
            f"; {CHECKPOINTS}/ {_megabytes(held)} of it (the model and optimizer state for --resume; delete once "
            f"done: rm -r {' '.join(map(str, folders))})"
        )
    return line


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Staging folders of interrupted saves are not listed."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    complete = [
        path for path in folder.glob("step-*") if (path / STATE_FILE).is_file() or (path / MANIFEST_FILE).is_file()
    ]
    return sorted(complete, key=lambda path: int(path.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, if any."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def clean_staging(run_dir: Path) -> None:
    """Remove staging folders left by a run killed mid-save."""
    for path in (run_dir / CHECKPOINTS).glob(".tmp-*") if (run_dir / CHECKPOINTS).is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints."""
    for path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state saved with a checkpoint."""
    return json.loads((checkpoint / STATE_FILE).read_text())
