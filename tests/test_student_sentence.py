"""The sentence-transformers configuration saved beside every student: mean pooling of its width, loadable
by ``AutoModel`` without a weight initialised at random, and uploaded by ``publish``."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoModel, PreTrainedTokenizerFast

from monodistill import checkpoint as ckpt
from monodistill.cli import main
from monodistill.publish import collect_files
from monodistill.student.sentence import sentence_transformers_files

from .conftest import build_tiny_teacher

STUDENT = ["student.preset=custom", "student.num_layers=1", "student.hidden_size=16", "student.intermediate_size=32"]
BUDGET = ["student.num_heads=2", "data.max_seq_length=32", "train.batch_size=4", "data.max_validation_blocks=4"]


def test_a_saved_student_holds_a_sentence_transformers_configuration(
    tiny_teacher_dir: Path, corpus_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    common = ["--teacher", str(tiny_teacher_dir), "--corpus", str(corpus_file), "--output", str(run)]
    assert main(["distill", *common, "--max-steps", "4", *STUDENT, *BUDGET, f"data.cache_dir={tmp_path}"]) == 0
    student = run / "student"
    modules = json.loads((student / "modules.json").read_text())
    assert [(module["path"], module["type"]) for module in modules] == [
        ("", "sentence_transformers.models.Transformer"),
        ("1_Pooling", "sentence_transformers.models.Pooling"),
    ]
    pooling = json.loads((student / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == json.loads((student / "config.json").read_text())["hidden_size"] == 16
    assert [mode for mode, on in pooling.items() if mode.startswith("pooling_mode_") and on] == [
        "pooling_mode_mean_tokens"
    ]
    transformer = json.loads((student / "sentence_bert_config.json").read_text())
    assert transformer["max_seq_length"] == 32  # the length it was distilled on
    assert json.loads((student / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    # What sentence-transformers asks of AutoModel: every weight from the checkpoint, none made up.
    encoder, loading = AutoModel.from_pretrained(student, **transformer["model_args"], output_loading_info=True)
    assert not loading["missing_keys"] and encoder.pooler is None
    assert ckpt.manifest_problem(student, ckpt.MODEL_MANIFEST) is None  # the manifest vouches for them too
    assert "1_Pooling/config.json" in collect_files(run) and "modules.json" in collect_files(run)


def test_a_family_without_a_pooler_gets_no_model_args(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    model = build_tiny_teacher("distilbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    files = sentence_transformers_files(model, max_seq_length=64)
    assert "model_args" not in files["sentence_bert_config.json"]
    assert files["1_Pooling/config.json"]["word_embedding_dimension"] == 32  # type: ignore[call-overload]
