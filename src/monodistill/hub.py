"""Read a dataset from the Hugging Face Hub, falling back to its Parquet conversion.

An unreachable Hub ends the read at once (``teacher.hub_connection_error``), not after datasets' retries.

``datasets`` 4 and later no longer run loading scripts, yet many datasets of the low-resource
literature (Hatespeech Filipino, NewsPH-NLI, OSCAR 2019) still ship one. The Hub keeps a Parquet
conversion of each of them under the revision ``refs/convert/parquet``; it is read instead, saying so.
"""

from __future__ import annotations

from typing import Any

import datasets

from monodistill.errors import MonodistillError
from monodistill.teacher import hub_connection_error, hub_error, is_local_reference

PARQUET_REVISION = "refs/convert/parquet"


def load_hub_dataset(
    kind: str, name: str, config: str | None, split: str, revision: str | None = None, streaming: bool = False
) -> Any:
    """``datasets.load_dataset`` for a Hub id, with the Parquet fallback for script-based repositories.

    Args:
        kind: What the dataset is for, in messages ("corpus", "task dataset").
        name: The Hub id.
        config: The dataset configuration, e.g. a language subset.
        split: The split to read.
        revision: A pinned revision; the fallback applies only when none is given.
        streaming: Stream instead of downloading.

    Raises:
        MonodistillError: naming the dataset and saying how to point at local files, when neither
            the plain load nor the Parquet conversion can be read; at once when the Hub cannot be reached.
    """
    reason = None if is_local_reference(name) else hub_connection_error()
    if reason is not None:
        # datasets would retry each file for 23 s; a copy in its cache is read offline (HF_HUB_OFFLINE=1).
        raise hub_error(
            kind, name, f"it cannot be reached ({reason}); to read a copy in the local cache, set HF_HUB_OFFLINE=1"
        )
    try:
        return datasets.load_dataset(name, config, split=split, revision=revision, streaming=streaming)
    except Exception as error:  # datasets raises many types for offline, missing or script-based repositories
        if revision is not None or not is_script_error(error):
            raise hub_error(kind, name, error) from None
    print(f"{kind} {name} still carries a loading script, which datasets no longer runs; reading {PARQUET_REVISION}")
    try:
        return datasets.load_dataset(name, config, split=split, revision=PARQUET_REVISION, streaming=streaming)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MonodistillError(
            f"{kind} {name} has a loading script, which datasets no longer runs, and its Parquet conversion "
            f"({PARQUET_REVISION}) could not be read: {first_line}. Download its data files where there is "
            f"a network (`hf download {name} --repo-type dataset --local-dir DIR`) and point at them as local files"
        ) from None


def is_script_error(error: BaseException) -> bool:
    """Whether ``datasets`` refused a repository because it holds a loading script."""
    return "scripts are no longer supported" in str(error) or "trust_remote_code" in str(error)
