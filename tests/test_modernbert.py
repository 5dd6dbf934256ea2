"""ModernBERT (mmBERT's architecture) as teacher and as student, on tiny models built here (sdpa, CPU).

The tiny teacher (``conftest.build_tiny_teacher("modernbert", ...)``) alternates global and local attention
(window 8), so blocks of 32 tokens exercise both; its fused Wqkv projection feeds the relation term.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForMaskedLM,
    ModernBertForMaskedLM,
    ModernBertModel,
    PreTrainedTokenizerFast,
)

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.teacher import encoder, load_teacher, mlm_head
from monodistill.vocab import id_map_tensor, trim_teacher

from .conftest import build_tiny_teacher


def tiny_modernbert(tokenizer: PreTrainedTokenizerFast, **changes: object) -> ModernBertForMaskedLM:
    """The conftest teacher, with config fields changed and biases made random (a zero bias hides slicing bugs)."""
    config = build_tiny_teacher("modernbert", len(tokenizer), tokenizer.pad_token_id).config
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model = ModernBertForMaskedLM(config)
    with torch.no_grad():
        model.decoder.bias.normal_(generator=torch.Generator().manual_seed(7))
    return model.eval()


def save(model: ModernBertForMaskedLM | ModernBertModel, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --- teacher ---


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_head_equals_the_models_own_logits_tied_or_untied(
    tied: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save(tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied), tiny_tokenizer, tmp_path)
    model, _ = load_teacher(TeacherConfig(name_or_path=str(path)))
    assert (model.decoder.weight is model.model.embeddings.tok_embeddings.weight) == tied
    stored = load_file(path / "model.safetensors")
    assert ("decoder.weight" in stored) == (not tied)
    ids = torch.randint(5, len(tiny_tokenizer), (2, 32), generator=torch.Generator().manual_seed(0))
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, [3, 20]] = True
    positions[1, 31] = True
    with torch.inference_mode():
        full = model(input_ids=ids).logits[positions]  # (3, V)
        hidden = encoder(model)(input_ids=ids).last_hidden_state[positions]  # after final_norm
        head = mlm_head(model)
        assert torch.allclose(head.logits(hidden), full, atol=1e-5)
        rows = torch.tensor([0, 9, 17, 42])
        assert torch.allclose(head.restricted(rows).logits(hidden), full[:, rows], atol=1e-5)
    assert torch.equal(head.bias, stored["decoder.bias"])


def test_a_bare_encoder_is_refused_with_or_without_a_masked_lm_label(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    config = build_tiny_teacher("modernbert", len(tiny_tokenizer), tiny_tokenizer.pad_token_id).config
    path = save(ModernBertModel(config), tiny_tokenizer, tmp_path)
    with pytest.raises(MonodistillError, match="not a masked language model"):
        load_teacher(TeacherConfig(name_or_path=str(path)))
    config_file = path / "config.json"
    config_file.write_text(config_file.read_text().replace('"ModernBertModel"', '"ModernBertForMaskedLM"'))
    missing = r"no trained masked-LM head \(missing \['decoder.bias', 'head."
    with pytest.raises(MonodistillError, match=missing) as error:
        load_teacher(TeacherConfig(name_or_path=str(path)))
    assert "\n" not in str(error.value)


def test_embedding_rows_padded_beyond_the_tokenizer_are_accepted(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # mmBERT's tokenizer fills its 256,000 rows; English ModernBERT's 50,280 tokens sit in 50,368 rows.
    model = build_tiny_teacher("modernbert", len(tiny_tokenizer) + 88, tiny_tokenizer.pad_token_id)
    teacher, tokenizer = load_teacher(TeacherConfig(name_or_path=str(save(model, tiny_tokenizer, tmp_path))))
    assert teacher.config.vocab_size - len(tokenizer) == 88


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_trimmed_teacher_slices_embeddings_decoder_weight_and_bias(
    tied: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    full = tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied)
    kept = [0, 1, 2, 3, 4, *range(10, 60, 3)]
    trimmed = trim_teacher(tiny_modernbert(tiny_tokenizer, tie_word_embeddings=tied), kept)
    save(trimmed, tiny_tokenizer, tmp_path)
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert exported.config.vocab_size == len(kept) == exported.get_input_embeddings().num_embeddings
    assert exported.decoder.weight.shape[0] == exported.decoder.bias.shape[0] == len(kept)
    assert (exported.decoder.weight is exported.model.embeddings.tok_embeddings.weight) == tied
    assert json.loads((tmp_path / "config.json").read_text())["pad_token_id"] == 0
    student_ids = torch.randint(5, len(kept), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = full(input_ids=id_map_tensor(kept)[student_ids]).logits[..., kept]  # (2, 24, V_kept)
        logits = exported(input_ids=student_ids).logits
    assert torch.allclose(logits, expected, atol=1e-5)
