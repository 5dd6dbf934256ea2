"""Claiming an output folder: one writer at a time, and no run mixed into another.

Every command that writes a folder (``distill``, ``run``, ``evaluate``) claims it for the life of
the process. The claim is an exclusive ``flock`` on ``FOLDER/.monodistill.lock``: the kernel drops it
when the process dies, however it dies, so a lock left by a killed run is simply taken over. The
owner's pid sits beside it so that a second process can say who holds the folder.

Under torchrun/accelerate launch the ranks of one job share their main process's claim.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from monodistill.checkpoint import atomic_write_text
from monodistill.errors import MonodistillError
from monodistill.ranks import process_state

LOCK_FILE = ".monodistill.lock"
OWNER_FILE = ".monodistill.owner"


def check_output_path(folder: Path, flag: str = "--output") -> None:
    """Refuse an output path that exists but is not a folder, before anything is loaded."""
    if folder.exists() and not folder.is_dir():
        raise MonodistillError(f"{flag} {folder} exists and is not a folder; choose a folder path")


@contextmanager
def claim(folder: Path) -> Iterator[None]:
    """Hold ``folder`` exclusively for the block.

    Raises:
        MonodistillError: when another live process holds it ("FOLDER is in use by pid N").
    """
    check_output_path(folder)
    if not process_state().is_main_process:
        yield
        return
    made = _first_missing(folder)  # the outermost folder this claim makes, if any
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MonodistillError(
            f"{folder} is in use by {_owner(folder)}; wait for it to finish, stop it, or choose another --output"
        ) from None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv}
        atomic_write_text(folder / OWNER_FILE, json.dumps(owner) + "\n")
        yield
    finally:
        (folder / OWNER_FILE).unlink(missing_ok=True)
        if made is not None:
            _remove_if_unused(folder, made)
        lock.release()


def _first_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (None when ``folder`` exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            return missing
        missing = path
    return missing


def _remove_if_unused(folder: Path, made: Path) -> None:
    """Remove ``folder`` if it holds nothing but its lock, and the parents up to ``made`` that it leaves empty.

    A command that failed before writing anything (an unreachable teacher, a typo in a path) then leaves
    no empty run folder behind. The lock file goes while the lock is held, so a process that opens it
    afterwards makes a new one, and the folder stays for it (``rmdir`` of a folder in use fails).
    """
    try:
        if {entry.name for entry in folder.iterdir()} != {LOCK_FILE}:
            return
        (folder / LOCK_FILE).unlink()
        path = folder
        path.rmdir()
        while path != made:  # the parents the claim made, each left empty
            path = path.parent
            path.rmdir()
    except OSError:  # written to meanwhile, or not ours to remove
        return


def _owner(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return "another process"
    host = "" if owner.get("host") == socket.gethostname() else f" on {owner.get('host')}"
    return f"pid {owner.get('pid')}{host}"


def holds_run(folder: Path, entries: Iterable[str]) -> list[str]:
    """Which of a run's ``entries`` (files or folders) are already in ``folder``."""
    return [name for name in entries if (folder / name).exists()]


def clear_run(folder: Path, entries: Iterable[str]) -> None:
    """Remove a previous run's ``entries`` (``--overwrite``); anything else in the folder is left alone."""
    for name in entries:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
