"""The exception types users see: a clear message, no traceback."""


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


def not_utf8(path: object, byte: int, offset: int) -> MonodistillError:
    """The error for a text file that is not UTF-8, naming the first bad byte and where it is."""
    return MonodistillError(
        f"{path} is not UTF-8 (byte 0x{byte:02x} at offset {offset}); convert it, e.g. `iconv -f LATIN1 -t UTF-8`"
    )
