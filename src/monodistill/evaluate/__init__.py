"""Fine-tune and evaluate teachers and students on target-language tasks, measuring their cost."""

from monodistill.evaluate.harness import run_evaluation

__all__ = ["run_evaluation"]
