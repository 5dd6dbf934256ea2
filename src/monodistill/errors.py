"""The one exception type users see: a clear message, no traceback."""


class MonodistillError(Exception):
    """A problem with the user's input or environment, explained in one message.

    The CLI prints the message and exits with status 2; it never shows a traceback for these.
    Raise it early, before any training starts, and name the offending path, field or value.
    """
