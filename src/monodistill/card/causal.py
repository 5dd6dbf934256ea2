"""The Markdown sections of a causal student's card (a decoder: its family's objective is ``causal``).

A causal student predicts the next token, so its card says how it generates (``AutoModelForCausalLM``,
``pipeline("text-generation")``), how it was trained (every position of packed blocks predicts the token
after it) and what its validation scored (next tokens, not masked ones). A run that reads nothing of the
teacher's predictions (the student's own next-token cross-entropy alone) is trained, not distilled: from a
random initialisation it is the control of Goldfish's recipe, the same model on the same tokens, which
shows what distillation buys.
"""

from __future__ import annotations

from monodistill.card.sections import is_adaptation, language_phrase, loss_formula, teacher_line, validation_rows
from monodistill.config import DistillConfig

CAUSAL_VALIDATION_NAMES = {
    "mlm_loss": "next-token cross-entropy (nats per token)",
    "student_accuracy": "next-token accuracy",
    "teacher_mlm_loss": "teacher's next-token cross-entropy (nats per token)",
    "teacher_accuracy": "teacher's next-token accuracy",
    "teacher_agreement": "agreement with the teacher's top next token",
    "agreement_constant": "agreement of a constant prediction (the teacher's most frequent top token)",
}
"""Validation metrics as a decoder's card names them (the validation logs the same fields for both objectives)."""
UNTRAINED_HEAD_VALIDATION = (
    "Not shown: every held-out figure (next-token loss and accuracy, KL to and agreement with the teacher) scores "
    "the language-model head, which this loss never trains."
)


def stage(config: DistillConfig) -> str:
    """``distillation``, or ``training`` for a run whose loss reads nothing of the teacher (``is_adaptation``)."""
    return "training" if is_adaptation(config.loss) else "distillation"


def is_from_scratch(config: DistillConfig) -> bool:
    """Whether the student was trained without its teacher from random weights: no weight of the teacher's
    (``base_model`` then names none)."""
    return stage(config) == "training" and config.student.init == "random"


def title_and_intro(config: DistillConfig) -> tuple[str, str]:
    """The card's title, and the paragraph under it: what the model is, and what it was made from."""
    name = config.student.name or config.student.preset
    teacher, corpus = config.teacher.name_or_path, config.data.corpus
    if stage(config) == "distillation":
        intro = (
            f"A single-language causal language model (a decoder) distilled by monodistill from the multilingual "
            f'teacher `{teacher}` on `{corpus}`: the recipe of Cruz & Aji (2025), "Extracting General-use '
            'Transformers for Low-resource Languages via Knowledge Distillation", carried from masked to causal '
            "language models (the teacher's next-token distribution at every position, over the student's "
            "vocabulary)."
        )
        return f"{name}: distilled from {teacher}", intro
    start = (
        "from scratch (random weights)"
        if is_from_scratch(config)
        else f"from the teacher's weights (`{config.student.init}`)"
    )
    intro = (
        f"A single-language causal language model (a decoder) trained by monodistill {start} on `{corpus}`, by its "
        f"own next-token cross-entropy alone: no prediction of the teacher `{teacher}` is read. On the vocabulary "
        "and the tokens of the students distilled from that teacher, it is the control that shows what "
        "distillation buys (Goldfish's recipe: a small monolingual model trained on its language alone)."
    )
    return f"{name}: trained without distillation, a control for {teacher}", intro


def training_section(config: DistillConfig, num_blocks: int) -> str:
    """How it was trained: the loss, the data (packed blocks, every next token) and the optimisation."""
    data = config.data
    return f"""- Loss: {loss_formula(config.loss, "causal")}.{teacher_line(config)}
- Data: `{data.corpus}`{f" ({data.hub_config})" if data.hub_config else ""}, {data.data_fraction:.0%} of the
  training blocks, {num_blocks:,} training blocks of {data.max_seq_length} tokens: documents encoded one after
  another, each closed by the tokenizer's end-of-text token, cut into blocks; every position but a block's last
  predicts the token after it (nothing is masked).
- Optimisation: AdamW, learning rate {config.train.learning_rate}, batch {config.train.batch_size} x
  {config.train.gradient_accumulation_steps} accumulation, seed {config.train.seed}."""


def validation_section(config: DistillConfig, metrics: dict[str, float]) -> str:
    """The last validation's table, or why it is not shown (a language-model head the loss never trains)."""
    if not config.loss.trains_mlm_head():
        return UNTRAINED_HEAD_VALIDATION
    rows = "\n".join(validation_rows(metrics, CAUSAL_VALIDATION_NAMES))
    return f"""Held-out blocks of the same corpus, every next token scored (the teacher over the student's vocabulary).

| metric | value |
|---|---|
{rows}"""


def intended_use(config: DistillConfig) -> str:
    """The card's intended use, how to load and run the model, and its limitations."""
    language = language_phrase(config)
    use = f"""A small generative language model for {language}: to continue, generate or score text (log-likelihood,
perplexity) where the multilingual teacher is too large or too slow to serve, or to fine-tune further
(instructions, a task). It predicts the next token: it follows instructions only as far as its teacher did
and its corpus showed it. Out of scope: other languages (the student saw only the corpus above), facts (a
small model trained on little text makes things up), and any use before you have measured it on your own
task and data."""
    if not config.loss.trains_mlm_head():
        use = f"""A decoder for {language} whose language-model head was never trained: its loss
({loss_formula(config.loss, "causal")}) has no logit or next-token term, so it generates nothing meaningful
and config.json says so (`mlm_head_trained: false`). Its hidden states are what it offers, to fine-tune.
Out of scope: other languages, and any use before you have measured it on your own task and data."""
    biases = "the corpus's biases" if is_from_scratch(config) else "the teacher's biases and the corpus's"
    return f"""## Intended use

{use}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

generate = pipeline("text-generation", model="PATH_OR_REPO")
print(generate("Your text", max_new_tokens=40, do_sample=False)[0]["generated_text"])

tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")
model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")
```

Generation stops at the tokenizer's end-of-text token (and a chat template's end of turn, where the tokenizer
has one): `generation_config.json` holds them in the student's own token ids. It was trained on blocks of
{config.data.max_seq_length} tokens: longer contexts are untested. Fine-tune it like any causal language model
(`AutoModelForCausalLM`; `AutoModelForSequenceClassification` for classification).

## Limitations

It knows only what it learned on this corpus: its quality on other domains and languages is not measured
here. It inherits {biases}. Validation numbers above are next-token scores on
held-out blocks of the training corpus, not downstream quality: evaluate it on your task (held-out bits per
byte compare it with its teacher across vocabularies). Before publishing, add a licence that the teacher's
and the corpus's licences allow.
"""
