"""A student's randomness: its dropout drawn from each micro-batch's own seed, and a stream of its own for the rest.

Each micro-batch carries the seed of its dropout (``MaskedBatch.dropout_seed``: seed, step and place in
the global batch), so a student trained beside others ends with the weights it would have had alone,
and a run resumed on another process count draws the dropout the uninterrupted run drew. Anything
else random runs on the student's own stream, swapped in for the block that draws from it and saved
in its checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch random state that dropout draws from: the CPU one, and the GPU's on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Make ``state`` (from ``capture_rng``) the global random state."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


class RandomStream:
    """One student's random stream on ``device``, from ``state`` (default: the global state now)."""

    def __init__(self, device: torch.device, state: dict[str, torch.Tensor] | None = None) -> None:
        self.device = device
        self.state = state or capture_rng(device)
        """Where the stream has got to, while it is not swapped in."""

    @contextmanager
    def dropout(self, seed: int | None) -> Iterator[None]:
        """Draw the block's randomness (dropout) from ``seed``; the global state is as before after.

        Whatever process and micro-batch a batch's blocks fall to, they see the same dropout. Without a
        seed the block draws from this stream (``own``).
        """
        if seed is None:
            with self.own():
                yield
            return
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)  # the current device's, the one dropout draws on
            yield

    @contextmanager
    def own(self) -> Iterator[None]:
        """Swap this stream in for the block (what is random beside dropout: the state a checkpoint saves), and
        keep where it got to."""
        outer = capture_rng(self.device)
        set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = capture_rng(self.device)
            set_rng_state(outer)
