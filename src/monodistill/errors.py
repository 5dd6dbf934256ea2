"""The exception types users see: a clear message, no traceback; and the command that continues a run."""

from __future__ import annotations

import shlex

_COMMAND: list[str] = []


class MonodistillError(Exception):
    """A problem with the user's input or environment, explained in one message.

    The CLI prints the message and exits with status 2; it never shows a traceback for these.
    Raise it early, before any training starts, and name the offending path, field or value.
    """


class Interrupted(MonodistillError):
    """The run was stopped by a signal after saving what it had.

    ``signal`` is the number of the signal this process received, or ``None`` when another rank
    received it; the CLI exits with 128 + that number, as a shell does (130 for Ctrl-C).
    """

    def __init__(self, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal


class NonFiniteLoss(MonodistillError):
    """A student's loss was NaN or infinite; in a group only that student stops."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT outside the distillation loop (which saves a checkpoint first, ``Interrupted``).

    A ``KeyboardInterrupt``, so that no library's ``except Exception`` swallows it on the way out.
    """

    def __init__(self, signal: int) -> None:
        super().__init__(signal)
        self.signal = signal


def record_command(argv: list[str]) -> None:
    """Remember the command line being run (``cli.main``), for ``command_to_resume``."""
    _COMMAND[:] = ["monodistill", *argv]


def command_to_resume() -> str:
    """The command that continues what this one started: the same, with ``--resume`` for ``distill``.

    ``--overwrite`` is dropped: it would start again. Outside the CLI (the Python API), a description.
    """
    if not _COMMAND:
        return "the same call with resume=True"
    argv = [item for item in _COMMAND if item != "--overwrite"]
    if len(argv) > 1 and argv[1] == "distill" and "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


def not_utf8(path: object, byte: int, offset: int) -> MonodistillError:
    """The error for a text file that is not UTF-8, naming the first bad byte and where it is."""
    return MonodistillError(
        f"{path} is not UTF-8 (byte 0x{byte:02x} at offset {offset}); convert it, e.g. `iconv -f LATIN1 -t UTF-8`"
    )
