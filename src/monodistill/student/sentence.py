"""A sentence-transformers configuration beside a saved student: ``SentenceTransformer(path)`` loads it as
an encoder with mean pooling. Written here, so that sentence-transformers is no dependency of monodistill.
Encoders only: a causal student ships a generation config instead (``student.generation``).

The files and their keys are the ones sentence-transformers writes and reads (checked against the
source of sentence-transformers 6.3.0, whose readers still accept the keys 2.x to 5.x write, which these are):

    modules.json                        the pipeline: the transformer (this folder), then pooling
    sentence_bert_config.json           the transformer module: max_seq_length, and model_args for AutoModel
    1_Pooling/config.json               mean pooling over the token vectors, of the model's width
    config_sentence_transformers.json   model-level settings: no prompts, cosine similarity

A masked-LM checkpoint holds no pooler (BERT's next-sentence head, which masked-LM training does not
make). ``AutoModel`` builds one for BERT-like models unless told ``add_pooling_layer=False``, and says
it initialised it at random; ``model_args`` tells it so, and mean pooling never reads a pooler.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

POOLING_DIR = "1_Pooling"
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
]
POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")


def sentence_transformers_files(model: PreTrainedModel, max_seq_length: int) -> dict[str, dict[str, Any] | list[Any]]:
    """Relative path -> JSON content of each file, for ``model`` (a ``*ForMaskedLM`` student) read
    ``max_seq_length`` tokens at a time (the length it was distilled on)."""
    transformer: dict[str, Any] = {"max_seq_length": max_seq_length, "do_lower_case": False}
    if "add_pooling_layer" in inspect.signature(type(model.base_model).__init__).parameters:
        transformer["model_args"] = {"add_pooling_layer": False}  # no pooler to load: build none
    pooling = {"word_embedding_dimension": int(model.config.hidden_size)}
    pooling |= {f"pooling_mode_{mode}": mode == "mean_tokens" for mode in POOLING_MODES}
    pooling["include_prompt"] = True
    model_level: dict[str, Any] = {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    return {
        "modules.json": MODULES,
        "sentence_bert_config.json": transformer,
        f"{POOLING_DIR}/config.json": pooling,
        "config_sentence_transformers.json": model_level,
    }


def save_sentence_transformers_config(folder: Path, model: PreTrainedModel, max_seq_length: int) -> None:
    """Write ``sentence_transformers_files`` into a saved model's ``folder``."""
    for name, content in sentence_transformers_files(model, max_seq_length).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
