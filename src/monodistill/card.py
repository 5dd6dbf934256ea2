"""Model cards for distilled students: what a user needs to trust, cite and reuse the model.

Parameters are counted as the evaluation summary and the report count them (the encoder with its
embeddings, heads aside: ``evaluate.summary.encoder_parameter_counts``), so a model has one figure on
every page. A student whose last validation predicts one token at most masked positions is called what
it is, degenerate; one whose loss never trains its MLM head (no logit or MLM term) is said to have
fill-mask predictions that mean nothing instead (``validation_note``, which the report's distillation
table shows too).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoTokenizer

from monodistill import checkpoint as ckpt
from monodistill.config import DistillConfig, LossConfig, load_config
from monodistill.errors import MonodistillError
from monodistill.evaluate.summary import (
    ENCODER_COUNTED,
    card_table,
    distilled_source,
    encoder_parameter_counts,
    seed_count,
    seeds_phrase,
)
from monodistill.evaluate.tasks import PRESETS
from monodistill.labels import run_name
from monodistill.student import resolve_shape
from monodistill.teacher import MLM_HEAD_TRAINED, is_local_reference

DEGENERATE_SHARE = 0.5
"""A student that predicts one token at more than this share of masked positions is degenerate."""
FLAT_METRICS = ("mlm_loss", "kl_to_teacher", "teacher_agreement", "student_accuracy", "student_top_prediction_share")
"""The student's validation metrics that a stuck student repeats from one validation to the next."""


def loss_formula(loss: LossConfig) -> str:
    """The objective in words, every active term with its weight (the paper's: KL at T plus MLM)."""
    logit = (
        f"T^2 x KL(teacher_T || student_T) at T = {loss.temperature}"
        if loss.logit_loss == "kl"
        else "MSE of the logits"
    )
    terms = [
        (loss.alpha_kl, f"{logit} at masked positions"),
        (loss.alpha_mlm, "masked-LM cross-entropy"),
        (loss.alpha_cosine, "(1 - cosine) of the last hidden states"),
        (loss.alpha_relation, "MiniLMv2 Q/K/V self-attention relations"),
        (loss.alpha_hidden, "MSE of mapped layers' hidden states"),
        (loss.alpha_attention, "MSE of mapped layers' attention probabilities"),
    ]
    return " + ".join(f"{weight} x {term}" for weight, term in terms if weight > 0)


def build_model_card(
    config: DistillConfig,
    metrics: dict[str, float],
    student_counts: dict[str, int],
    teacher_counts: dict[str, int],
    num_blocks: int,
    results: str = "",
    model_index: list[dict[str, Any]] | None = None,
    license: str | None = None,
    note: str | None = None,
) -> str:
    """A Hugging Face README.md for the student folder, with YAML front matter.

    ``student_counts`` and ``teacher_counts`` are ``encoder_parameter_counts``; ``results`` is a Markdown
    section of downstream results (from ``evaluation_section``), if any; ``model_index`` the same results
    as Hub ``model-index`` entries (from ``model_index_results``). ``license`` is a Hub licence id; unset,
    the card says ``unknown`` and ``monodistill publish`` refuses it. ``note`` follows the validation
    table (``validation_note``).
    """
    shape = resolve_shape(config.student)
    name = config.student.name or config.student.preset
    loss = config.loss
    data = config.data
    teacher = config.teacher.name_or_path
    adapted = is_adaptation(loss)
    head = loss.trains_mlm_head()
    vocabulary = "trimmed to the target-language corpus" if config.vocab.active else "the teacher's, unchanged"
    rows = "\n".join(validation_rows(metrics))
    language = f"the `{data.language}` language" if data.language else "the corpus language"
    architecture = (
        f"{shape.num_layers} layers, hidden size {shape.hidden_size}, feed-forward size {shape.intermediate_size}, "
        f"{shape.num_heads} attention heads"
    )
    if adapted:  # the teacher itself, trained further: no student, no teacher to compare its size with
        layers = config.student.trainable_layers
        trained = f"its top {layers} layers" if layers is not None else "every weight"
        title = f"{name}: {teacher} adapted to {language}"
        intro = (
            f"The teacher `{teacher}` adapted to {language} by continued masked-LM training on `{data.corpus}` "
            f"(monodistill adapt, as Gurgurov et al. (2025) adapt a teacher before distilling it): {trained} "
            "trained with the masked-LM loss alone, from the teacher's own weights."
        )
        model = f"""| | model |
|---|---|
| parameters ({ENCODER_COUNTED}) | {student_counts["total"]:,} |
| non-embedding parameters | {student_counts["non_embedding"]:,} |
| embedding parameters | {student_counts["embedding"]:,} |

The teacher's shape and vocabulary, unchanged: {architecture}."""
    else:
        ratio = teacher_counts["total"] / max(student_counts["total"], 1)
        title = f"{name}: distilled from {teacher}"
        intro = (
            f"A single-language {'masked language model' if head else 'encoder'} distilled by monodistill from the "
            "multilingual teacher "
            f'`{teacher}` on `{data.corpus}`, following Cruz & Aji (2025), "Extracting General-use Transformers for '
            'Low-resource Languages via Knowledge Distillation".'
        )
        model = f"""| | student | teacher |
|---|---|---|
| parameters ({ENCODER_COUNTED}) | {student_counts["total"]:,} | {teacher_counts["total"]:,} |
| non-embedding parameters | {student_counts["non_embedding"]:,} | {teacher_counts["non_embedding"]:,} |
| embedding parameters | {student_counts["embedding"]:,} | {teacher_counts["embedding"]:,} |

The student has {ratio:.1f}x fewer parameters than the teacher: {architecture}; vocabulary {vocabulary};
initialisation `{config.student.init}`."""
    stage = "adaptation" if adapted else "distillation"
    whose_rows = "; student: the adapted model, teacher: the original" if adapted else ""
    validation = f"""Held-out blocks of the same corpus, fixed masks{whose_rows}.

| metric | value |
|---|---|
{rows}"""
    if not head:  # every held-out figure scores the masked-LM head, which this loss never trains
        validation = UNTRAINED_HEAD_VALIDATION
    return f"""---
{front_matter(config, model_index, license)}---

# {title}

{intro}

## Model

{model}

## {stage.capitalize()}

- Loss: {loss_formula(loss)}.
- Data: `{data.corpus}`{f" ({data.hub_config})" if data.hub_config else ""}, {data.data_fraction:.0%} of the
  training blocks, {num_blocks:,} training blocks of {data.max_seq_length} tokens, {data.mlm_probability:.0%} masking
  (80/10/10{", whole words" if data.whole_word_mask else ""}).
- Optimisation: AdamW, learning rate {config.train.learning_rate}, batch {config.train.batch_size} x
  {config.train.gradient_accumulation_steps} accumulation, seed {config.train.seed}.

## Validation at the end of {stage}

{validation}
{f"{chr(10)}{note}{chr(10)}" if note else ""}
{results}{intended_use(config, adapted)}"""


VALIDATION_NAMES = {"agreement_constant": "agreement of a constant prediction (the teacher's most frequent top token)"}
"""Validation metrics whose field name would not say what they are."""


def validation_rows(metrics: dict[str, float]) -> list[str]:
    """The validation table's rows: a metric a line, a token id as an integer."""
    return [
        f"| {VALIDATION_NAMES.get(key, key.replace('_', ' '))} | "
        f"{int(value) if key.endswith('_id') else f'{value:.4f}'} |"
        for key, value in metrics.items()
    ]


def intended_use(config: DistillConfig, adapted: bool) -> str:
    """The card's intended use, how to load the model, and its limitations."""
    data = config.data
    language = f"the `{data.language}` language" if data.language else "the corpus language"
    head = config.loss.trains_mlm_head()
    load = 'fill = pipeline("fill-mask", model="PATH_OR_REPO")'
    scores = "Validation numbers above are masked-token scores, not downstream quality: evaluate it on your task."
    if adapted:
        use = f"""The teacher adapted to {language}, to distil single-language students from
(`monodistill distill --teacher PATH_OR_REPO`), or a masked language model for {language} to fine-tune. It
fills in masked tokens, it does not generate text. Out of scope: the teacher's other languages (this
training saw only the corpus above, and what it did to them is not measured here), and any use before you
have measured it on your own task and data."""
        limits = "It was trained further on this corpus alone: its quality on other domains and languages is"
    else:
        use = f"""A general-purpose encoder for {language}, to fine-tune for sequence classification, sentence-pair
classification and token tagging (named entities, parts of speech) where the multilingual teacher is
too large or too slow to serve. It is a masked language model: it fills in masked tokens, it does not
generate text. Out of scope: other languages (the student saw only the corpus above), and any use
before you have measured it on your own task and data."""
        limits = "The student knows only what the teacher showed it on this corpus: its quality on other domains"
        limits += " and languages is"
    if not head:  # an encoder: fine-tuning and features, no masked-token predictions
        use = f"""A general-purpose encoder for {language}, to fine-tune for sequence classification, sentence-pair
classification and token tagging (named entities, parts of speech), or to embed text (mean-pooled token
vectors), where the multilingual teacher is too large or too slow to serve. Its masked-LM head was never
trained: its distillation loss ({loss_formula(config.loss)}) has no logit or masked-LM term, so the head
is saved as it was initialised, config.json says so (`{MLM_HEAD_TRAINED}: false`), and it predicts no
masked tokens. Out of scope: other languages (the student saw only the corpus above), and any use before
you have measured it on your own task and data."""
        load = 'embed = pipeline("feature-extraction", model="PATH_OR_REPO")'
        scores = "Nothing above measures its quality: evaluate it on your task."
    return f"""## Intended use

{use}

## Use

```python
from transformers import pipeline

{load}
```

Fine-tune it like any encoder (`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`).
For sentence embeddings, `SentenceTransformer("PATH_OR_REPO")` (sentence-transformers) reads the configuration
saved beside the weights: mean pooling over the token vectors, inputs of up to {config.data.max_seq_length} tokens.

## Limitations

{limits} not measured here. It inherits the teacher's biases and the corpus's. {scores} Before
publishing, add a licence that the teacher's and the corpus's licences allow.
"""


def is_adaptation(loss: LossConfig) -> bool:
    """Whether a run's objective reads nothing of the teacher (masked-LM alone): the teacher adapted by
    ``monodistill adapt``, not a student distilled from it."""
    return loss.alpha_mlm > 0 and all(getattr(loss, name) == 0 for name in LossConfig.WEIGHTS if name != "alpha_mlm")


UNTRAINED_HEAD_VALIDATION = (
    "Not shown: every held-out figure (masked-LM loss and accuracy, KL to and agreement with the teacher) scores "
    "the masked-LM head."
)
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
    # A student whose loss never trains its masked-LM head is an encoder: the Hub shows no fill-mask widget.
    head = config.loss.trains_mlm_head()
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "fill-mask" if head else "feature-extraction",
    }
    if config.data.language:
        metadata["language"] = [config.data.language]
    metadata["license"] = license or UNSET_LICENSE
    stage = "language-adaptation" if is_adaptation(config.loss) else "knowledge-distillation"
    metadata["tags"] = ["monodistill", stage, "masked-lm" if head else "feature-extraction"]
    if not is_local_reference(config.teacher.name_or_path):
        metadata["base_model"] = config.teacher.name_or_path
    if config.data.corpus and not is_local_reference(config.data.corpus):
        metadata["datasets"] = [config.data.corpus]
    if model_index:
        name = config.student.name or config.student.preset
        metadata["model-index"] = [{"name": name, "results": model_index}]
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)


def model_index_results(summary: dict[str, Any], student_dir: Path, task_kinds: dict[str, str]) -> list[dict[str, Any]]:
    """This student's downstream scores as Hub ``model-index`` results (mean over seeds, 0-1 scale).

    Only scores on a Hub dataset's own test split, read whole, as the evaluation recorded the task's source
    (``summary["task_sources"]``): a local task is left out whatever its name (a local file named
    ``hatespeech-filipino`` is not ``jcblaise/hatespeech_filipino``), and so are a capped test split and a
    summary that does not record where its data came from. The card's text names every task's data
    (``task_data``). ``task_kinds`` maps task names to monodistill kinds (``classification``...); unknown:
    text-classification.
    """
    mine = _summary_entry(summary, student_dir)
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


def is_hub_score(source: dict[str, Any], result: dict[str, Any]) -> bool:
    """Whether a task result is a score on the Hub dataset its source names: read from the Hub, and its whole
    test split scored (``evaluate.max_eval_samples`` scores a sample of it)."""
    return bool(source.get("hub")) and result.get("test_samples") == source.get("test_rows")


def task_data(task: str, source: dict[str, Any] | None, result: dict[str, Any], epochs: float | None) -> str:
    """One line naming the data a task's score was made on, as the evaluation recorded it."""
    if not source:
        return (
            f"`{task}`: this evaluation did not record where its data was read (evaluate again to record it), so "
            "its score is not given to the Hub's model-index"
        )
    trained, scored = result.get("train_samples"), result.get("test_samples")
    train = _examples(trained, source.get("train_rows"), "fine-tuned on")
    test = _examples(scored, source.get("test_rows"), "scored on")
    cadence = f", {epochs:g} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    if source.get("hub"):
        config = f" ({source['config']})" if source.get("config") else ""
        line = (
            f"`{task}`: the Hub dataset `{source['hub']}`{config}, its `{source['train_split']}` split ({train}) and "
            f"`{source['test_split']}` split ({test}){cadence}"
        )
        return line if is_hub_score(source, result) else line + "; a sample of the split, not given to model-index"
    files = {split: "/".join(Path(path).parts[-2:]) for split, path in source.get("files", {}).items()}
    return (
        f"`{task}`: local files, not a Hub dataset: `{files.get('train')}` ({train}) and `{files.get('test')}` as "
        f"the test split ({test}){cadence}; not given to the Hub's model-index"
    )


def _examples(used: int | None, rows: int | None, verb: str) -> str:
    if used is None or rows is None:
        return f"{verb} {rows:,} examples" if rows is not None else "examples not recorded"
    return f"{verb} all {rows:,} examples" if used == rows else f"{verb} {used:,} of its {rows:,} examples"


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


def evaluation_epochs(evaluate_config: Path) -> float | None:
    """The fine-tuning epochs an evaluation folder's ``config.yaml`` records, or None."""
    if not evaluate_config.is_file():
        return None
    epochs = (yaml.safe_load(evaluate_config.read_text()) or {}).get("epochs")
    return float(epochs) if isinstance(epochs, int | float) else None


def _summary_entry(summary: dict[str, Any], student_dir: Path) -> dict[str, Any] | None:
    entries = summary["models"].values()
    return next((entry for entry in entries if Path(entry["model"]).resolve() == student_dir.resolve()), None)


def evaluation_section(summary: dict[str, Any], student_dir: Path, epochs: float | None = None) -> str:
    """Downstream results of this student beside the baseline's, from an evaluation ``summary.json``, and the
    data each task's score was made on (``task_data``; ``epochs``: the evaluation's ``epochs``)."""
    entries = summary["models"]
    mine = _summary_entry(summary, student_dir)
    if mine is None:
        return ""
    baseline_label = summary["baseline"]
    baseline = entries[baseline_label]
    counts = {
        seed_count(result[f"metric.{result['main_metric']}"])
        for entry in (mine, baseline)
        for result in entry["tasks"].values()
    }
    intro = f"Fine-tuned with identical settings; {seeds_phrase(counts)}; "
    intro += f"baseline: {baseline_label} (`{baseline['model']}`)."
    # evaluate.distil_from: fine-tuned with a KL term to another model's fine-tuned logits, not plainly.
    sources = sorted(
        {result["distilled_from"]["model"] for result in mine["tasks"].values() if result.get("distilled_from")}
    )
    if sources:
        intro += f" Rows marked (task KD): fine-tuned with task-stage distillation from `{', '.join(sources)}`."
    lines = [
        "## Downstream results",
        "",
        intro,
        "",
        *card_table(summary, next(label for label, entry in entries.items() if entry is mine)),
    ]
    data = summary.get("task_sources") or {}
    lines += ["", "Task data:", ""]
    lines += [f"- {task_data(task, data.get(task), result, epochs)}." for task, result in mine["tasks"].items()]
    return "\n".join(lines) + "\n\n"


def mlm_head_trained(run_dir: Path) -> bool:
    """Whether a distillation run's loss trains the student's MLM head (``LossConfig.trains_mlm_head`` of
    the config it recorded); a folder that recorded none is taken as the default recipe's."""
    if not (run_dir / "config.yaml").is_file():
        return LossConfig().trains_mlm_head()
    return read_run_config(run_dir).loss.trains_mlm_head()


def validation_note(run_dir: Path, records: list[dict[str, Any]], name: str) -> str | None:
    """A plain word on what the last validation of a run says about its student, or None.

    A student whose loss never trains its MLM head (TinyBERT's or TiME's recipe alone) predicts masked
    tokens through a head left as it was initialised: its masked-token metrics mean nothing, and one
    token at most positions is no sign of a degenerate student. Otherwise a degenerate student: one that
    predicts one token at more than ``DEGENERATE_SHARE`` of masked positions (the token decoded with the
    student's own tokenizer), and whether its validation metrics stopped changing.
    """
    if not mlm_head_trained(run_dir):
        return (
            f"{name}'s masked-LM head is never trained (its loss has no logit or MLM term): its masked-token "
            "accuracy, agreement, KL and top prediction say nothing about the encoder, which fine-tuning uses."
        )
    student_dir = run_dir / ckpt.STUDENT_DIR
    validations = [record for record in records if record.get("split") == "validation"]
    last = validations[-1] if validations else {}
    share = last.get("student_top_prediction_share")
    if share is None or share <= DEGENERATE_SHARE:
        return None
    token_id = int(last["student_top_prediction_id"])
    try:
        token = (
            f"the token `{AutoTokenizer.from_pretrained(student_dir).convert_ids_to_tokens(token_id)}` (id {token_id})"
        )
    except (OSError, ValueError):  # no tokenizer beside it (the student folder was moved away)
        token = f"token id {token_id}"
    note = (
        f"{name} predicts {token} at {share:.0%} of masked positions at its last validation (step {last['step']}): "
        "a degenerate student, typical of a smoke-test budget (too few steps)."
    )
    flat = _unchanged_since(validations)
    if flat is not None:
        note += f" Its validation metrics did not change between steps {flat} and {last['step']}."
    return note


def _unchanged_since(validations: list[dict[str, Any]]) -> int | None:
    """The first step of the validations that end the run with the same metrics (to 4 decimals), or None."""

    def metrics(record: dict[str, Any]) -> list[float]:
        return [round(record[key], 4) for key in FLAT_METRICS if isinstance(record.get(key), float | int)]

    first = len(validations) - 1
    while first > 0 and metrics(validations[first - 1]) == metrics(validations[-1]):
        first -= 1
    return int(validations[first]["step"]) if first < len(validations) - 1 else None


def write_card(run_dir: Path, summary_path: Path | None = None) -> Path:
    """``monodistill card RUN_DIR``: (re)write RUN/student/README.md from what the run folder holds.

    Adds downstream results when ``summary_path`` (or ``RUN/../../evaluate/summary.json``, where
    ``monodistill run`` puts it) holds an evaluation of this student.
    """
    card = render_card(run_dir, summary_path)
    path = run_dir / ckpt.STUDENT_DIR / "README.md"
    ckpt.atomic_write_text(path, card)  # the student's manifest leaves the card out: it is rewritten freely
    return path


def read_run_config(run_dir: Path) -> DistillConfig:
    """The config a distillation run recorded in ``RUN/config.yaml``, as it trained.

    Never the defaults in its place: they would name a teacher (mBERT) and settings the run did not use.

    Raises:
        MonodistillError: naming the file, when it is empty, not valid YAML, not a mapping of sections, or
            not a distillation config.
    """
    path = run_dir / "config.yaml"
    remedy = "restore the run's config there (the settings it was distilled with), or distil the student again"
    try:
        recorded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise MonodistillError(f"{path} cannot be read ({error.__class__.__name__}: {error}); {remedy}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise MonodistillError(f"{path} is not valid YAML{at}; {remedy}") from None
    if recorded is None:
        raise MonodistillError(f"{path} is empty: the card is written from the config the run recorded; {remedy}")
    if not isinstance(recorded, dict):
        raise MonodistillError(
            f"{path} holds a {type(recorded).__name__}, not the mapping of sections a run records; {remedy}"
        )
    try:
        return load_config(DistillConfig, updates=recorded)
    except MonodistillError as error:
        raise MonodistillError(f"{path} is not a distillation run's config ({error}); {remedy}") from None


def render_card(
    run_dir: Path, summary_path: Path | None = None, license: str | None = None, language: str | None = None
) -> str:
    """The model card of a distillation run (see ``write_card``), returned instead of written.

    ``language`` (an ISO 639 code) stands in for the run's ``data.language``.

    Raises:
        MonodistillError: not a finished run, or a student folder that cannot be loaded.
    """
    student_dir = run_dir / ckpt.STUDENT_DIR
    if not (run_dir / "config.yaml").is_file() or not student_dir.is_dir():
        students = sorted(path.parent for path in run_dir.glob(f"students/*/{ckpt.STUDENT_DIR}") if path.is_dir())
        if students:  # an experiment folder of `monodistill run`
            held = ", ".join(f"students/{student.name}" for student in students)
            raise MonodistillError(
                f"{run_dir} is an experiment folder, not a distillation run: it holds {held}; pass one, "
                f"e.g. monodistill card {students[0]}"
            )
        raise MonodistillError(f"{run_dir} is not a finished distillation run (no config.yaml or student/)")
    config = read_run_config(run_dir)
    # The run's label, as the console, the evaluation and the report name it (``labels.run_name``).
    config = replace(config, student=replace(config.student, name=run_name(run_dir)))
    ckpt.check_model_folder(student_dir, what="student")
    if language is not None:
        config = replace(config, data=replace(config.data, language=language))
    records = ckpt.read_metrics(run_dir)
    validations = [r for r in records if r.get("split") == "validation"]
    metrics = {k: v for k, v in (validations[-1] if validations else {}).items() if k not in ("step", "split")}
    student_counts = encoder_parameter_counts(str(student_dir))
    teacher_counts = encoder_parameter_counts(config.teacher.name_or_path, config.teacher.revision)
    if student_counts is None or teacher_counts is None:
        unread = student_dir if student_counts is None else config.teacher.name_or_path
        raise MonodistillError(f"cannot read the config.json of {unread} to count its parameters")
    name = str(config.student.name or config.student.preset)
    environment = json.loads((run_dir / "environment.json").read_text())
    summary_path = summary_path or run_dir.parent.parent / "evaluate" / "summary.json"
    results, model_index = "", None
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        evaluation = summary_path.parent / "config.yaml"
        results = evaluation_section(summary, student_dir, evaluation_epochs(evaluation))
        model_index = model_index_results(summary, student_dir, task_kinds(evaluation))
    return build_model_card(
        config,
        metrics,
        student_counts,
        teacher_counts,
        int(environment.get("train_blocks", 0)),
        results,
        model_index,
        license,
        validation_note(run_dir, records, name),
    )
