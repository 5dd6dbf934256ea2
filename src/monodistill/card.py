"""Model cards for distilled students: what a user needs to trust, cite and reuse the model."""

from __future__ import annotations

from monodistill.config import DistillConfig
from monodistill.student import resolve_shape


def build_model_card(
    config: DistillConfig,
    metrics: dict[str, float],
    student_counts: dict[str, int],
    teacher_counts: dict[str, int],
    num_blocks: int,
) -> str:
    """A Hugging Face README.md for the student folder, with YAML front matter."""
    shape = resolve_shape(config.student)
    name = config.student.name or config.student.preset
    loss = config.loss
    data = config.data
    vocabulary = "trimmed to the target-language corpus" if config.vocab.active else "the teacher's, unchanged"
    rows = "\n".join(f"| {key.replace('_', ' ')} | {value:.4f} |" for key, value in metrics.items())
    cosine = f"+ {loss.alpha_cosine} x hidden-state cosine " if loss.alpha_cosine else ""
    ratio = teacher_counts["total"] / max(student_counts["total"], 1)
    return f"""---
library_name: transformers
pipeline_tag: fill-mask
tags: [monodistill, knowledge-distillation, masked-lm]
base_model: {config.teacher.name_or_path}
---

# {name}: distilled from {config.teacher.name_or_path}

A single-language masked language model distilled by
monodistill from the multilingual teacher `{config.teacher.name_or_path}` on
`{data.corpus}`, following Cruz & Aji (2025), "Extracting General-use Transformers for Low-resource
Languages via Knowledge Distillation".

## Model

| | student | teacher |
|---|---|---|
| parameters | {student_counts["total"]:,} | {teacher_counts["total"]:,} |
| non-embedding parameters | {student_counts["non_embedding"]:,} | {teacher_counts["non_embedding"]:,} |
| embedding parameters | {student_counts["embedding"]:,} | {teacher_counts["embedding"]:,} |

The student is {ratio:.1f}x smaller: {shape.num_layers} layers, hidden size {shape.hidden_size},
feed-forward size {shape.intermediate_size}, {shape.num_heads} attention heads; vocabulary {vocabulary};
initialisation `{config.student.init}`.

## Distillation

- Loss: {loss.alpha_kl} x T^2 x KL(teacher_T || student_T) + {loss.alpha_mlm} x masked-LM cross-entropy
  {cosine}at masked positions, T = {loss.temperature}.
- Data: `{data.corpus}`{f" ({data.hub_config})" if data.hub_config else ""}, {data.data_fraction:.0%} of the
  documents, {num_blocks:,} training blocks of {data.max_seq_length} tokens, {data.mlm_probability:.0%} masking
  (80/10/10{", whole words" if data.whole_word_mask else ""}).
- Optimisation: AdamW, learning rate {config.train.learning_rate}, batch {config.train.batch_size} x
  {config.train.gradient_accumulation_steps} accumulation, seed {config.train.seed}.

## Validation at the end of distillation

Held-out blocks of the same corpus, fixed masks.

| metric | value |
|---|---|
{rows}

## Use

```python
from transformers import pipeline

fill = pipeline("fill-mask", model="PATH_OR_REPO")
```

Fine-tune it like any encoder (`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`).

## Limitations

The student knows only what the teacher showed it on this corpus: its quality on other domains and
languages is not measured here. It inherits the teacher's biases and the corpus's. Validation numbers
above are masked-token agreement, not downstream quality: evaluate it on your task.
"""
