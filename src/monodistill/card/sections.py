"""The Markdown sections of a model card: title and introduction, the model, its training, its last
validation, and its intended use.

A run whose objective is masked-LM alone is the teacher adapted to the corpus language
(``is_adaptation``), described as such; a student whose loss never trains its MLM head is described as
an encoder, without the validation figures that score that head.
"""

from __future__ import annotations

from monodistill.config import DistillConfig, LossConfig
from monodistill.evaluate.summary import COUNTED, ENCODER_COUNTED
from monodistill.student import resolve_shape
from monodistill.teacher import MLM_HEAD_TRAINED

VALIDATION_NAMES = {"agreement_constant": "agreement of a constant prediction (the teacher's most frequent top token)"}
"""Validation metrics whose field name would not say what they are."""
UNTRAINED_HEAD_VALIDATION = (
    "Not shown: every held-out figure (masked-LM loss and accuracy, KL to and agreement with the teacher) scores "
    "the masked-LM head."
)


def is_adaptation(loss: LossConfig) -> bool:
    """Whether a run's objective reads nothing of the teacher (masked-LM alone): the teacher adapted by
    ``monodistill adapt``, not a student distilled from it."""
    return loss.alpha_mlm > 0 and all(getattr(loss, name) == 0 for name in LossConfig.WEIGHTS if name != "alpha_mlm")


def loss_formula(loss: LossConfig, objective: str = "masked") -> str:
    """The objective in words, every active term with its weight (the paper's: KL at T plus MLM; for a causal
    student the same two terms on the next token at every position)."""
    causal = objective == "causal"
    divergence = {"kl": "KL(teacher_T || student_T)", "reverse_kl": "KL(student_T || teacher_T)"}
    divergence["jsd"] = "JSD(teacher_T, student_T)"
    logit = (
        f"{'next-token ' if causal else ''}T^2 x {divergence[loss.logit_loss]} at T = {loss.temperature}"
        if loss.logit_loss in divergence
        else f"MSE of the {'next-token ' if causal else ''}logits"
    )
    terms = [
        (loss.alpha_kl, f"{logit} at {'every position' if causal else 'masked positions'}"),
        (loss.alpha_mlm, "the student's own next-token cross-entropy" if causal else "masked-LM cross-entropy"),
        (loss.alpha_cosine, "(1 - cosine) of the last hidden states"),
        (loss.alpha_relation, "MiniLMv2 Q/K/V self-attention relations"),
        (loss.alpha_hidden, "MSE of mapped layers' hidden states"),
        (loss.alpha_attention, "MSE of mapped layers' attention probabilities"),
    ]
    return " + ".join(f"{weight} x {term}" for weight, term in terms if weight > 0)


def teacher_line(config: DistillConfig) -> str:
    """The training section's line on a teacher read from a cache (``teacher_cache``); empty for a live teacher."""
    if config.teacher_cache is None:
        return ""
    cache, temperature = config.cache, config.loss.temperature
    if cache.method == "sample":
        what = f"{cache.samples} tokens drawn per position from its distribution at T = {temperature}"
        what += ", with their counts (an unbiased estimate of it)"
    else:
        what = f"its {cache.k} most probable tokens per position at T = {temperature} and the mass of the rest"
    return f"\n- Teacher: read from a cache of its outputs (`{cache.method}`), run once: {what}."


def title_and_intro(config: DistillConfig) -> tuple[str, str]:
    """The card's title, and the paragraph under it: what the model is, and what it was made from."""
    name = config.student.name or config.student.preset
    teacher, data = config.teacher.name_or_path, config.data
    if is_adaptation(config.loss):
        layers = config.student.trainable_layers
        trained = f"its top {layers} layers" if layers is not None else "every weight"
        language = language_phrase(config)
        intro = (
            f"The teacher `{teacher}` adapted to {language} by continued masked-LM training on `{data.corpus}` "
            f"(monodistill adapt, as Gurgurov et al. (2025) adapt a teacher before distilling it): {trained} "
            "trained with the masked-LM loss alone, from the teacher's own weights."
        )
        return f"{name}: {teacher} adapted to {language}", intro
    kind = "masked language model" if config.loss.trains_mlm_head() else "encoder"
    intro = (
        f"A single-language {kind} distilled by monodistill from the "
        "multilingual teacher "
        f'`{teacher}` on `{data.corpus}`, following Cruz & Aji (2025), "Extracting General-use Transformers for '
        'Low-resource Languages via Knowledge Distillation".'
    )
    return f"{name}: distilled from {teacher}", intro


def model_section(config: DistillConfig, student_counts: dict[str, int], teacher_counts: dict[str, int]) -> str:
    """The model's parameters beside the teacher's (an adapted teacher's alone), and its architecture."""
    shape = resolve_shape(config.student)
    # The objective is the student's family's when the card is built (``record.student_objective``); unresolved
    # (``auto``), a masked LM, as the card's other sections take it.
    counted = COUNTED.get(config.objective, ENCODER_COUNTED)
    architecture = (
        f"{shape.num_layers} layers, hidden size {shape.hidden_size}, feed-forward size {shape.intermediate_size}, "
        f"{shape.num_heads} attention heads"
    )
    # The teacher itself, trained further: no teacher to compare its size with. (A decoder trained without the
    # teacher's predictions is a student of its own shape, the control of the students distilled.)
    if is_adaptation(config.loss) and config.objective != "causal":
        return f"""| | model |
|---|---|
| parameters ({counted}) | {student_counts["total"]:,} |
| non-embedding parameters | {student_counts["non_embedding"]:,} |
| embedding parameters | {student_counts["embedding"]:,} |

The teacher's shape and vocabulary, unchanged: {architecture}."""
    ratio = teacher_counts["total"] / max(student_counts["total"], 1)
    vocabulary = "trimmed to the target-language corpus" if config.vocab.active else "the teacher's, unchanged"
    return f"""| | student | teacher |
|---|---|---|
| parameters ({counted}) | {student_counts["total"]:,} | {teacher_counts["total"]:,} |
| non-embedding parameters | {student_counts["non_embedding"]:,} | {teacher_counts["non_embedding"]:,} |
| embedding parameters | {student_counts["embedding"]:,} | {teacher_counts["embedding"]:,} |

The student has {ratio:.1f}x fewer parameters than the teacher: {architecture}; vocabulary {vocabulary};
initialisation `{config.student.init}`."""


def training_section(config: DistillConfig, num_blocks: int) -> str:
    """How it was trained: the loss, the data and the optimisation."""
    data = config.data
    return f"""- Loss: {loss_formula(config.loss)}.{teacher_line(config)}
- Data: `{data.corpus}`{f" ({data.hub_config})" if data.hub_config else ""}, {data.data_fraction:.0%} of the
  training blocks, {num_blocks:,} training blocks of {data.max_seq_length} tokens, {data.mlm_probability:.0%} masking
  (80/10/10{", whole words" if data.whole_word_mask else ""}).
- Optimisation: AdamW, learning rate {config.train.learning_rate}, batch {config.train.batch_size} x
  {config.train.gradient_accumulation_steps} accumulation, seed {config.train.seed}."""


def validation_section(config: DistillConfig, metrics: dict[str, float]) -> str:
    """The last validation's table, or why it is not shown (a masked-LM head the loss never trains)."""
    if not config.loss.trains_mlm_head():  # every held-out figure scores the masked-LM head, never trained
        return UNTRAINED_HEAD_VALIDATION
    whose_rows = "; student: the adapted model, teacher: the original" if is_adaptation(config.loss) else ""
    rows = "\n".join(validation_rows(metrics))
    return f"""Held-out blocks of the same corpus, fixed masks{whose_rows}.

| metric | value |
|---|---|
{rows}"""


def validation_rows(metrics: dict[str, float], names: dict[str, str] = VALIDATION_NAMES) -> list[str]:
    """The validation table's rows: a metric a line (named by ``names``, else its field), a token id as an integer."""
    return [
        f"| {names.get(key, key.replace('_', ' '))} | {int(value) if key.endswith('_id') else f'{value:.4f}'} |"
        for key, value in metrics.items()
    ]


def intended_use(config: DistillConfig, adapted: bool) -> str:
    """The card's intended use, how to load the model, and its limitations."""
    use, limits = _use_and_limits(config, adapted)
    load = 'fill = pipeline("fill-mask", model="PATH_OR_REPO")'
    scores = "Validation numbers above are masked-token scores, not downstream quality: evaluate it on your task."
    if not config.loss.trains_mlm_head():  # an encoder: fine-tuning and features, no masked-token predictions
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


def _use_and_limits(config: DistillConfig, adapted: bool) -> tuple[str, str]:
    """What the model is for (and not for), and the first words of its limitations."""
    language = language_phrase(config)
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
    if not config.loss.trains_mlm_head():  # an encoder: fine-tuning and features, no masked-token predictions
        use = f"""A general-purpose encoder for {language}, to fine-tune for sequence classification, sentence-pair
classification and token tagging (named entities, parts of speech), or to embed text (mean-pooled token
vectors), where the multilingual teacher is too large or too slow to serve. Its masked-LM head was never
trained: its distillation loss ({loss_formula(config.loss)}) has no logit or masked-LM term, so the head
is saved as it was initialised, config.json says so (`{MLM_HEAD_TRAINED}: false`), and it predicts no
masked tokens. Out of scope: other languages (the student saw only the corpus above), and any use before
you have measured it on your own task and data."""
    return use, limits


def language_phrase(config: DistillConfig) -> str:
    """How the card names the corpus language: its code where the run says it."""
    return f"the `{config.data.language}` language" if config.data.language else "the corpus language"
