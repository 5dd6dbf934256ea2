"""Model cards for distilled students: what a user needs to trust, cite and reuse the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoConfig, AutoModelForMaskedLM

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.student import resolve_shape
from monodistill.teacher import is_local_reference, parameter_counts


def build_model_card(
    config: DistillConfig,
    metrics: dict[str, float],
    student_counts: dict[str, int],
    teacher_counts: dict[str, int],
    num_blocks: int,
    results: str = "",
) -> str:
    """A Hugging Face README.md for the student folder, with YAML front matter.

    ``results`` is a Markdown section of downstream results (from ``evaluation_section``), if any.
    """
    shape = resolve_shape(config.student)
    name = config.student.name or config.student.preset
    loss = config.loss
    data = config.data
    vocabulary = "trimmed to the target-language corpus" if config.vocab.active else "the teacher's, unchanged"
    rows = "\n".join(f"| {key.replace('_', ' ')} | {value:.4f} |" for key, value in metrics.items())
    cosine = f"+ {loss.alpha_cosine} x hidden-state cosine " if loss.alpha_cosine else ""
    ratio = teacher_counts["total"] / max(student_counts["total"], 1)
    language = f"the `{data.language}` language" if data.language else "the corpus language"
    return f"""---
{_front_matter(config)}---

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

{results}## Intended use

A general-purpose encoder for {language}, to fine-tune for sequence classification, sentence-pair
classification and token tagging (named entities, parts of speech) where the multilingual teacher is
too large or too slow to serve. It is a masked language model: it fills in masked tokens, it does not
generate text. Out of scope: other languages (the student saw only the corpus above), and any use
before you have measured it on your own task and data.

## Use

```python
from transformers import pipeline

fill = pipeline("fill-mask", model="PATH_OR_REPO")
```

Fine-tune it like any encoder (`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`).

## Limitations

The student knows only what the teacher showed it on this corpus: its quality on other domains and
languages is not measured here. It inherits the teacher's biases and the corpus's. Validation numbers
above are masked-token agreement, not downstream quality: evaluate it on your task. Before publishing,
add a licence that the teacher's and the corpus's licences allow.
"""


def _front_matter(config: DistillConfig) -> str:
    """Hub metadata: library, task, language, teacher and, for a Hub corpus, the dataset."""
    lines = ["library_name: transformers", "pipeline_tag: fill-mask"]
    if config.data.language:
        lines.append(f"language: [{config.data.language}]")
    lines += ["tags: [monodistill, knowledge-distillation, masked-lm]", f"base_model: {config.teacher.name_or_path}"]
    if config.data.corpus and not is_local_reference(config.data.corpus):
        lines.append(f"datasets: [{config.data.corpus}]")
    return "".join(line + "\n" for line in lines)


def evaluation_section(summary: dict[str, Any], student_dir: Path) -> str:
    """Downstream results of this student beside the baseline's, from an evaluation ``summary.json``."""
    entries = summary["models"]
    mine = next((entry for entry in entries.values() if Path(entry["model"]).resolve() == student_dir.resolve()), None)
    if mine is None:
        return ""
    baseline_label = summary["baseline"]
    baseline = entries[baseline_label]
    lines = [
        "## Downstream results",
        "",
        f"Fine-tuned with identical settings; mean ± std over seeds; baseline: `{baseline['model']}`.",
        "",
        "| task | metric | this model | baseline | fine-tuning speedup |",
        "|---|---|---|---|---|",
    ]
    for task, result in mine["tasks"].items():
        key = f"metric.{result['main_metric']}"
        base = baseline["tasks"].get(task, {}).get(key)
        base_text = f"{100 * base['mean']:.2f} ± {100 * base['std']:.2f}" if base else "-"
        lines.append(
            f"| {task} | {result['main_metric']} | {100 * result[key]['mean']:.2f} ± {100 * result[key]['std']:.2f} "
            f"| {base_text} | {result.get('finetune_speedup', float('nan')):.2f}x |"
        )
    return "\n".join(lines) + "\n\n"


def write_card(run_dir: Path, summary_path: Path | None = None) -> Path:
    """``monodistill card RUN_DIR``: (re)write RUN/student/README.md from what the run folder holds.

    Adds downstream results when ``summary_path`` (or ``RUN/../../evaluate/summary.json``, where
    ``monodistill run`` puts it) holds an evaluation of this student.
    """
    student_dir = run_dir / ckpt.STUDENT_DIR
    if not (run_dir / "config.yaml").is_file() or not student_dir.is_dir():
        raise MonodistillError(f"{run_dir} is not a finished distillation run (no config.yaml or student/)")
    config = load_config(DistillConfig, updates=yaml.safe_load((run_dir / "config.yaml").read_text()))
    validations = [r for r in ckpt.read_metrics(run_dir) if r.get("split") == "validation"]
    metrics = {k: v for k, v in (validations[-1] if validations else {}).items() if k not in ("step", "split")}
    student_counts = parameter_counts(AutoModelForMaskedLM.from_pretrained(student_dir))
    with torch.device("meta"):
        teacher_config = AutoConfig.from_pretrained(config.teacher.name_or_path, revision=config.teacher.revision)
        teacher_counts = parameter_counts(AutoModelForMaskedLM.from_config(teacher_config))
    environment = json.loads((run_dir / "environment.json").read_text())
    summary_path = summary_path or run_dir.parent.parent / "evaluate" / "summary.json"
    results = evaluation_section(json.loads(summary_path.read_text()), student_dir) if summary_path.is_file() else ""
    card = build_model_card(
        config, metrics, student_counts, teacher_counts, int(environment.get("train_blocks", 0)), results
    )
    ckpt.atomic_write_text(student_dir / "README.md", card)
    return student_dir / "README.md"
