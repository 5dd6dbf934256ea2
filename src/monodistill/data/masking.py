"""Dynamic BERT masking: select 15% of tokens; replace 80% with [MASK], 10% with a random token, keep 10%.

Written here rather than taken from transformers' collators because the masks must be a pure
function of (seed, step): a resumed run then draws exactly the masks the uninterrupted run would
have, whatever the global RNG state, and whole-word masking must work on packed blocks for both
WordPiece and SentencePiece vocabularies (word starts are recorded at tokenisation time).
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    probability: float,
    generator: torch.Generator,
    word_starts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch for masked-LM training.

    Args:
        input_ids: (B, T) token ids.
        special_mask: (B, T) bool, True at special tokens, which are never selected.
        mask_token_id: Id of the mask token.
        vocab_size: Random replacements are drawn from ``[0, vocab_size)``.
        probability: Chance that a token (or a whole word) is selected.
        generator: Source of randomness, on the same device as ``input_ids``.
        word_starts: (B, T) bool, True where a word begins; selects whole words when given.

    Returns:
        ``(masked_ids, labels)``, both (B, T); labels hold the original id at selected positions and
        ``IGNORE_INDEX`` elsewhere. At least one position in the batch is always selected.
    """
    device = input_ids.device
    draws = torch.rand(input_ids.shape, generator=generator, device=device)  # (B, T)
    if word_starts is not None:
        # Every token takes the draw of the first token of its word.
        positions = torch.arange(input_ids.shape[1], device=device).expand_as(input_ids)
        starts = word_starts.clone()
        starts[:, 0] = True
        word_start_position = torch.cummax(torch.where(starts, positions, 0), dim=1).values  # (B, T)
        draws = draws.gather(1, word_start_position)
    selected = (draws < probability) & ~special_mask
    if not selected.any():
        # An all-unselected batch would give an empty loss; select the first ordinary token.
        first = (~special_mask).flatten().nonzero()[0]
        selected.view(-1)[first] = True

    labels = torch.where(selected, input_ids, IGNORE_INDEX)
    action = torch.rand(input_ids.shape, generator=generator, device=device)  # (B, T)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    masked_ids = torch.where(selected & (action < 0.8), mask_token_id, input_ids)
    masked_ids = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, masked_ids)
    return masked_ids, labels


def stream_seed(seed: int, step: int, stream: int) -> int:
    """The seed of (seed, step, stream): training masks are stream 0, validation 1, dropout 2 and up."""
    # Large odd multipliers keep nearby (seed, step, stream) triples far apart.
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729) % (2**63 - 1)


def step_generator(seed: int, step: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator whose draws depend only on (seed, step, stream) (``stream_seed``)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(stream_seed(seed, step, stream))
    return generator
