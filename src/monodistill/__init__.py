"""monodistill: distil small single-language transformers out of massively multilingual masked LMs.

The modules follow the pipeline: teacher -> vocab -> student -> data -> losses -> distill ->
evaluate -> report.
"""

from monodistill.errors import MonodistillError

__version__ = "0.1.0"
__all__ = ["MonodistillError", "__version__"]
