"""monodistill: distil small single-language transformers out of massively multilingual masked LMs.

The modules follow the pipeline: teacher -> vocab -> student -> data -> losses -> distill ->
evaluate -> report.
"""

import time

from monodistill.errors import MonodistillError

STARTED = time.monotonic()
"""When the package was first imported: the start of a ``monodistill`` command, start-up included."""

__version__ = "0.1.0"
__all__ = ["MonodistillError", "__version__"]
