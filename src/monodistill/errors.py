"""The one exception type users see: a clear message, no traceback."""


class MonodistillError(Exception):
    """A problem with the user's input or environment, explained in one message.

    The CLI prints the message and exits with status 2; it never shows a traceback for these.
    Raise it early, before any training starts, and name the offending path, field or value.
    """


def not_utf8(path: object, byte: int, offset: int) -> MonodistillError:
    """The error for a text file that is not UTF-8, naming the first bad byte and where it is."""
    return MonodistillError(
        f"{path} is not UTF-8 (byte 0x{byte:02x} at offset {offset}); convert it, e.g. `iconv -f LATIN1 -t UTF-8`"
    )
