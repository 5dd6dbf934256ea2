"""What a user reads while a command runs: progress bars that suit where they go, and quiet libraries.

Every long stage (distillation steps, validation, vocabulary counting, tokenising and packing the
corpus, each fine-tuning run) shows a ``progress_bar``. On a terminal it is a normal tqdm bar; in a
log file or CI, where a carriage-return redraw turns into hundreds of lines, it is one plain line at
most every ``LINE_INTERVAL`` seconds plus the final one (a transient bar, ``leave=False``, writes its
final line only when it wrote any other).

transformers', datasets' and huggingface_hub's own bars (a "Loading weights" bar on every model load,
"Writing model shards" on every save, "Saving the dataset" on every cache write) are off while a
command runs (``library_output``); ``monodistill --verbose`` or ``MONODISTILL_VERBOSE=1`` keeps them.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import IO, Any

from tqdm.std import tqdm

LINE_INTERVAL = float(os.environ.get("MONODISTILL_PROGRESS_INTERVAL", "30"))
"""Seconds between two lines of one bar when its output is not a terminal."""
TRUE = ("1", "true", "yes", "on")


class Progress(tqdm):
    """A tqdm bar that writes whole lines, throttled to ``interval`` seconds, where its file is not a terminal."""

    def __init__(self, *args: Any, interval: float | None = None, **kwargs: Any) -> None:
        # Set before tqdm's __init__, which draws the bar once.
        self.lines = not _is_terminal(kwargs.get("file") or sys.stderr)
        self.interval = LINE_INTERVAL if interval is None else interval
        self.printed_n: float | None = None
        self.printed_at = -math.inf
        self.paused_seconds = 0.0  # time in ``paused`` blocks, left out of the rate
        if self.lines:
            kwargs["ncols"] = 0  # tqdm's "statistics only": no bar characters in a log
            kwargs["dynamic_ncols"] = False
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self.lines:
            return bool(super().display(msg, pos))
        # tqdm erases a bar by displaying "" (clear, close); a log has nothing to erase. A redraw without
        # progress (after tqdm.write) would repeat the last line.
        if msg is not None or not hasattr(self, "start_t") or self.n == self.printed_n:
            return False
        if self._time() - max(self.printed_at, self.start_t) >= self.interval:
            self._write_line()
        return True

    def clear(self, nolock: bool = False) -> None:
        if not self.lines:
            super().clear(nolock)

    def close(self) -> None:
        if self.lines and not self.disable:
            # A kept bar always ends with its final line; a transient one only if it showed any other.
            keep = getattr(self, "leave", True) is not False
            if self.n != self.printed_n and (keep or self.printed_n is not None):
                self._write_line()
            self.leave = False  # the line is written: tqdm's close adds no newline and no erasing
        super().close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time the block takes (a validation between two steps) out of the rate, so out of the ETA.

        The bar's rate is its units over its elapsed time (``smoothing=0``: one slow step does not throw
        the ETA), which would count the block as training time. The elapsed time shown stays the wall time.
        """
        if self.disable:  # a disabled bar (off the main rank) is never drawn, and tqdm gave it no clock
            yield
            return
        started = self._time()
        try:
            yield
        finally:
            self.paused_seconds += self._time() - started

    @property
    def format_dict(self) -> dict[str, Any]:
        shown = dict(super().format_dict)
        # smoothing=0 leaves the rate to format_meter: units over the elapsed time. Here over the unpaused time.
        active = shown["elapsed"] - self.paused_seconds
        if shown["rate"] is None and active > 0 and shown["n"] > shown["initial"]:
            shown["rate"] = (shown["n"] - shown["initial"]) / active
        return shown

    def _write_line(self) -> None:
        self.fp.write(f"{self}\n")
        self.fp.flush()
        self.printed_n, self.printed_at = self.n, self._time()


def progress_bar(
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    *,
    initial: float = 0,
    leave: bool = True,
    disable: bool = False,
    file: IO[str] | None = None,
    interval: float | None = None,
) -> Progress:
    """The progress bar of a long stage; use it as a context manager, or ``close()`` it.

    Args:
        total: Units of work, or None when unknown.
        desc: What the stage does, e.g. "distilling".
        unit: The unit counted, e.g. "step", "doc".
        initial: Units done already (a resumed run).
        leave: Keep the bar once done; a transient bar (False) vanishes from a terminal and leaves a log
            line only if it ran longer than ``interval``.
        disable: Show nothing (e.g. off the main rank).
        file: Where it goes; default stderr.
        interval: Seconds between lines where ``file`` is not a terminal; default ``LINE_INTERVAL``.
    """
    # smoothing=0: the ETA from the average speed since the start, which one slow step (a validation)
    # or one fast one does not throw.
    return Progress(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        disable=disable,
        file=file,
        interval=interval,
        smoothing=0,
        dynamic_ncols=True,
    )


class DatasetsProgress(Progress):
    """``datasets``' own bars (``Dataset.map(desc=...)``) drawn as a transient ``Progress``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("leave", False)
        super().__init__(*args, **kwargs)


@contextmanager
def datasets_progress() -> Iterator[None]:
    """Show ``datasets``' progress bars in the block as this module's, whatever ``library_output`` says.

    For a stage of monodistill's own that runs inside ``datasets`` (``Dataset.map`` tokenising a corpus
    or a task), whose bar datasets draws, also across ``num_proc`` worker processes.
    """
    from datasets import arrow_dataset

    previous = arrow_dataset.hf_tqdm  # the bar class Dataset.map draws with
    arrow_dataset.hf_tqdm = DatasetsProgress
    try:
        yield
    finally:
        arrow_dataset.hf_tqdm = previous


class Countdown:
    """The time left for ``jobs`` jobs of about equal length (fine-tuning runs), from the average one so far.

    A job found done already (a reused result) is ``skip``ped: it says nothing of how long one takes.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.done = 0
        self.spent = 0.0  # seconds spent on the jobs done
        self.started: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def skip(self) -> None:
        self.jobs -= 1

    def finish(self) -> None:
        if self.started is not None:
            self.spent += time.monotonic() - self.started
        self.done, self.started = self.done + 1, None

    def left(self, fraction: float = 0.0) -> str:
        """The time left, as tqdm writes times, with ``fraction`` of the current job done ("?" before any)."""
        elapsed = self.spent + (time.monotonic() - self.started if self.started is not None else 0.0)
        progress = self.done + fraction
        if progress <= 0 or elapsed <= 0:
            return "?"
        return tqdm.format_interval(elapsed / progress * max(self.jobs - progress, 0.0))


_SAID: set[str] = set()
"""Lines ``say_once`` has printed in this process."""


def say_once(message: str, file: IO[str] | None = None) -> None:
    """Print ``message`` (to stdout, or ``file``) unless this process printed it already.

    For what a command learns again each time it reads the same input (a task file's format, its unseen
    labels): ``run`` checks every task before distilling and evaluation reads them again, and a dev split
    a third time, which said each line up to six times.
    """
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=file or sys.stdout)


def format_duration(seconds: float) -> str:
    """A wall time as a person reads it: ``9.6 s``, ``3 min 13 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, whole = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {whole:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def is_verbose(flag: bool = False) -> bool:
    """Whether library output stays on: ``--verbose`` or ``MONODISTILL_VERBOSE=1``."""
    return flag or os.environ.get("MONODISTILL_VERBOSE", "").strip().lower() in TRUE


@contextmanager
def library_output(verbose: bool = False) -> Iterator[None]:
    """transformers', datasets' and huggingface_hub's progress bars off for the block, unless ``verbose``;
    as they were afterwards. Their warnings stay: the harmless ones are filtered where they are raised.

    A library's own environment variable (``HF_DATASETS_DISABLE_PROGRESS_BARS=0``,
    ``HF_HUB_DISABLE_PROGRESS_BARS=0``) wins over this, as those libraries intend.
    """
    if verbose:
        yield
        return
    import datasets.config
    import datasets.utils
    import huggingface_hub.constants
    import huggingface_hub.utils
    from transformers.utils import logging as transformers_logging

    transformers_on = transformers_logging.is_progress_bar_enabled()
    datasets_on = not datasets.utils.are_progress_bars_disabled()
    datasets_on = datasets_on and datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is None
    transformers_logging.disable_progress_bar()
    if datasets_on:
        datasets.utils.disable_progress_bars()
    hub_bars_fixed = huggingface_hub.constants.HF_HUB_DISABLE_PROGRESS_BARS is not None
    try:
        with nullcontext() if hub_bars_fixed else huggingface_hub.utils.disable_progress_bars():
            yield
    finally:
        if transformers_on:
            transformers_logging.enable_progress_bar()
        if datasets_on:
            datasets.utils.enable_progress_bars()


def _is_terminal(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
