"""Fine-tune and evaluate teachers and students on target-language tasks, measuring their cost."""

from monodistill.evaluate.harness import check_evaluation, run_evaluation

__all__ = ["check_evaluation", "run_evaluation"]
