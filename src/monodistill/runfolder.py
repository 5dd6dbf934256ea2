"""Claiming an output folder: one writer at a time, and no run mixed into another.

Every command that writes a folder (``distill``, ``adapt``, ``run``, ``evaluate``) claims it for the
life of the process. The claim is an exclusive ``flock`` on ``FOLDER/.monodistill.lock``, taken
without waiting: the kernel drops it when the process dies, however it dies, so a lock left by a
killed run is simply taken over. The owner's pid sits beside it so that a second process can say who
holds the folder. A claim names the kind of folder its command writes (``FOLDER_KINDS``), and a folder
that holds another kind's files is refused: ``evaluate`` never writes its ``config.yaml`` over a
distillation run's.

The CLI calls ``check_free`` as soon as it knows the folder, before it imports the libraries that
train (seconds to tens of seconds): a second writer is refused at once, not after that wait.

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

import yaml
from filelock import FileLock, Timeout

from monodistill.checkpoint import atomic_write_text
from monodistill.errors import MonodistillError
from monodistill.ranks import process_state

LOCK_FILE = ".monodistill.lock"
OWNER_FILE = ".monodistill.owner"

DISTILLATION_RUN, EXPERIMENT, EVALUATION = "distillation run", "experiment", "evaluation"
FOLDER_KINDS = {
    DISTILLATION_RUN: ("checkpoints", "student", "metrics.jsonl", "tensorboard"),
    EXPERIMENT: ("students", "teacher-adapted", "evaluate", "report"),
    EVALUATION: ("results", "summary.json", "summary.md"),
}
"""What each kind of folder holds that no other kind does: ``distill`` and ``adapt`` write a distillation
run, ``run`` (and ``distill`` of a config listing students) an experiment, ``evaluate`` an evaluation.
``config.yaml``, ``environment.json`` and ``vocab`` are in several; a folder holding only a ``config.yaml``
is known by its sections (``CONFIG_SECTIONS``)."""
CONFIG_SECTIONS = {"students": EXPERIMENT, "student": DISTILLATION_RUN, "models": EVALUATION}
"""A top-level key of a ``config.yaml`` and the kind of folder whose config holds it."""


def check_output_path(folder: Path, flag: str = "--output") -> None:
    """Refuse an output path that exists but is not a folder, before anything is loaded."""
    if folder.exists() and not folder.is_dir():
        raise MonodistillError(f"{flag} {folder} exists and is not a folder; choose a folder path")


@contextmanager
def claim(folder: Path, kind: str | None = None) -> Iterator[None]:
    """Hold ``folder`` exclusively for the block.

    Args:
        folder: The output folder; made if missing (and removed again if the block writes nothing).
        kind: The kind of folder the command writes (a key of ``FOLDER_KINDS``); a folder holding
            another kind's files is refused. None: no check (a folder inside one already checked).

    Raises:
        MonodistillError: when another live process holds it ("FOLDER is in use by pid N"), or it holds
            another kind of folder.
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
        raise _in_use(folder) from None
    try:
        if kind is not None:
            check_kind(folder, kind)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv}
        atomic_write_text(folder / OWNER_FILE, json.dumps(owner) + "\n")
        yield
    finally:
        (folder / OWNER_FILE).unlink(missing_ok=True)
        if made is not None:
            _remove_if_unused(folder, made)
        lock.release()


def check_free(folder: Path, kind: str) -> None:
    """Refuse at once what ``claim(folder, kind)`` would refuse, changing nothing on disk.

    For the CLI, before it imports what a command needs: a busy folder or another kind's is refused in
    well under a second. ``claim`` checks again, under its lock.

    Raises:
        MonodistillError: as ``claim`` does.
    """
    check_output_path(folder)
    if not folder.is_dir() or not _is_main_rank():  # the other ranks of a job share its main process's claim
        return
    # A holder always has its lock file there; where there is none, nobody holds the folder.
    if (folder / LOCK_FILE).is_file():
        lock = FileLock(folder / LOCK_FILE)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise _in_use(folder) from None
        except OSError:  # removed meanwhile by a claim that left the folder empty: nobody holds it
            return
        lock.release()
    check_kind(folder, kind)


def _is_main_rank() -> bool:
    # From the launcher's environment: the process group does not exist yet when the CLI checks.
    return os.environ.get("RANK", "0") == "0"


def folder_kinds(folder: Path) -> dict[str, list[str]]:
    """The kinds of folder ``folder`` holds the files of, each with those files (``FOLDER_KINDS``)."""
    found = {kind: held for kind, entries in FOLDER_KINDS.items() if (held := holds_run(folder, entries))}
    if not found and (folder / "config.yaml").is_file():
        try:
            sections = yaml.safe_load((folder / "config.yaml").read_text())
        except (OSError, ValueError, yaml.YAMLError):
            sections = None
        if isinstance(sections, dict):
            found = {kind: ["config.yaml"] for key, kind in CONFIG_SECTIONS.items() if key in sections}
    return found


def check_kind(folder: Path, kind: str) -> None:
    """Refuse a folder holding the files of another kind of folder than ``kind`` (``FOLDER_KINDS``).

    Raises:
        MonodistillError: naming the folder, what it holds and the kind it is.
    """
    other = {found: held for found, held in folder_kinds(folder).items() if found != kind}
    if other:
        found, held = next(iter(other.items()))
        raise MonodistillError(
            f"{folder} is {_article(found)} {found} folder (it holds {', '.join(held)}), and this command writes "
            f"{_article(kind)} {kind} folder: choose another --output"
        )


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _in_use(folder: Path) -> MonodistillError:
    return MonodistillError(
        f"{folder} is in use by {_owner(folder)}; wait for it to finish, stop it, or choose another --output"
    )


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
