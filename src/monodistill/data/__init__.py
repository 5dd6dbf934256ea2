"""The distillation corpus: reading (corpus), tokenising and packing (blocks), masking (masking)."""
