"""A model card's Hub metadata: the YAML front matter, with downstream scores as ``model-index`` results.

``base_model`` and ``datasets`` must be Hub ids, which the Hub links to their repositories; ``model-index``
takes only scores on a Hub dataset's own test split, read whole (``results.is_hub_score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monodistill.card.causal import is_from_scratch
from monodistill.card.results import is_hub_score, summary_entry
from monodistill.card.sections import is_adaptation
from monodistill.config import DistillConfig
from monodistill.evaluate.hub_tasks import PRESETS
from monodistill.evaluate.tables import distilled_source
from monodistill.teacher import is_local_reference

UNSET_LICENSE = "unknown"
"""The card's licence until one is chosen: the Hub accepts it, ``monodistill publish`` does not."""
HUB_TASK_TYPES = {
    "classification": "text-classification",
    "pair-classification": "text-classification",
    "token-classification": "token-classification",
}


def front_matter(
    config: DistillConfig, model_index: list[dict[str, Any]] | None = None, license: str | None = None
) -> str:
    """Hub metadata: library, task, language, licence, teacher, Hub datasets and downstream results.

    ``base_model`` and ``datasets`` must be Hub ids, which the Hub links to their repositories: a local
    teacher or corpus is left out of both, in the card ``distill`` saves as in the one ``publish`` uploads
    (the card's text names them).
    """
    # A student whose loss never trains its language-model head is an encoder: the Hub shows no fill-mask (or
    # text-generation) widget.
    head = config.loss.trains_mlm_head()
    causal = config.objective == "causal"
    task, kind = ("text-generation", "causal-lm") if causal else ("fill-mask", "masked-lm")
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": task if head else "feature-extraction",
    }
    if config.data.language:
        metadata["language"] = [config.data.language]
    metadata["license"] = license or UNSET_LICENSE
    metadata["tags"] = ["monodistill", _stage_tag(config), kind if head else "feature-extraction"]
    # base_model says which model's weights this one derives from: none for a decoder trained from scratch.
    if not is_local_reference(config.teacher.name_or_path) and not (causal and is_from_scratch(config)):
        metadata["base_model"] = config.teacher.name_or_path
    if config.data.corpus and not is_local_reference(config.data.corpus):
        metadata["datasets"] = [config.data.corpus]
    if model_index:
        name = config.student.name or config.student.preset
        metadata["model-index"] = [{"name": name, "results": model_index}]
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)


def _stage_tag(config: DistillConfig) -> str:
    """How the model was made, as a Hub tag."""
    if not is_adaptation(config.loss):
        return "knowledge-distillation"
    if config.objective != "causal":
        return "language-adaptation"
    return "from-scratch" if is_from_scratch(config) else "continued-pretraining"


def model_index_results(summary: dict[str, Any], student_dir: Path, task_kinds: dict[str, str]) -> list[dict[str, Any]]:
    """This student's downstream scores as Hub ``model-index`` results (mean over seeds, 0-1 scale).

    Only scores on a Hub dataset's own test split, read whole, as the evaluation recorded the task's source
    (``summary["task_sources"]``): a local task is left out whatever its name (a local file named
    ``hatespeech-filipino`` is not ``jcblaise/hatespeech_filipino``), and so are a capped test split and a
    summary that does not record where its data came from. The card's text names every task's data
    (``task_data``). ``task_kinds`` maps task names to monodistill kinds (``classification``...); unknown:
    text-classification.
    """
    mine = summary_entry(summary, student_dir)
    if mine is None:
        return []
    sources = summary.get("task_sources") or {}
    results = []
    for task, result in mine["tasks"].items():
        source = sources.get(task)
        if source is None or not is_hub_score(source, result):
            continue
        metric = result["main_metric"]
        distilled = distilled_source(summary, result)
        how = f"mean, fine-tuned with task KD from {distilled}" if distilled else "mean"
        dataset = {"name": task, "type": source["hub"], "split": source["test_split"]}
        dataset |= {key: source[key] for key in ("config", "revision") if source.get(key)}
        results.append(
            {
                "task": {"type": HUB_TASK_TYPES.get(task_kinds.get(task, ""), "text-classification")},
                "dataset": dataset,
                "metrics": [
                    {"type": metric, "value": round(result[f"metric.{metric}"]["mean"], 4), "name": f"{metric} ({how})"}
                ],
            }
        )
    return results


def task_kinds(evaluate_config: Path) -> dict[str, str]:
    """Kinds of the tasks an evaluation folder's ``config.yaml`` names, read from presets and task files."""
    if not evaluate_config.is_file():
        return {}
    kinds = {}
    for reference in (yaml.safe_load(evaluate_config.read_text()) or {}).get("tasks", []):
        if reference in PRESETS:
            kinds[reference] = PRESETS[reference].kind
        elif reference.startswith("wikiann:"):
            kinds[reference] = "token-classification"
        elif Path(reference).is_file():
            spec = yaml.safe_load(Path(reference).read_text()) or {}
            kinds[str(spec.get("name"))] = str(spec.get("kind"))
    return kinds
