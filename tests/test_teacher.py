"""Teacher loading for every family, its masked-position head, and the errors on bad teachers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.teacher import encoder, load_teacher, max_positions, mlm_head

from .conftest import save_teacher

FAMILIES = ["bert", "xlm-roberta", "deberta-v2"]


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_frozen_in_eval_mode_with_the_requested_dtype(
    family: str, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save_teacher(family, tiny_tokenizer, tmp_path / family)
    model, tokenizer = load_teacher(TeacherConfig(name_or_path=str(path), dtype="bfloat16"))
    assert model.config.model_type == family
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16
    assert len(tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("family", FAMILIES)
def test_head_at_masked_positions_equals_the_models_own_logits(
    family: str, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model, _ = load_teacher(TeacherConfig(name_or_path=str(save_teacher(family, tiny_tokenizer, tmp_path / family))))
    ids = torch.randint(5, len(tiny_tokenizer), (2, 20), generator=torch.Generator().manual_seed(0))
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, [3, 7]] = True
    positions[1, 11] = True
    with torch.inference_mode():
        full = model(input_ids=ids).logits[positions]  # (3, V)
        hidden = encoder(model)(input_ids=ids).last_hidden_state[positions]
        head = mlm_head(model)
        assert torch.allclose(head.logits(hidden), full, atol=1e-5)
        rows = torch.tensor([0, 9, 17, 42])
        assert torch.allclose(head.restricted(rows).logits(hidden), full[:, rows], atol=1e-5)


def test_roberta_positions_exclude_the_padding_offset() -> None:
    from transformers import XLMRobertaConfig

    assert max_positions(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert max_positions(BertConfig(max_position_embeddings=512)) == 512


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="teacher path .*nowhere does not exist"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path / "nowhere")))


def test_offline_hub_id_says_how_to_use_a_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MonodistillError, match=r"(?s)Hugging Face Hub.*HF_HUB_OFFLINE.*--local-dir"):
        load_teacher(TeacherConfig(name_or_path="someone/not-cached-anywhere"))


def test_bare_encoder_without_mlm_head_is_refused(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    BertModel(
        BertConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match="not a masked language model"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


def test_bare_encoder_with_a_masked_lm_label_is_still_refused(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # The config claims *ForMaskedLM but no head weights are stored: a random head would be silently wrong.
    config = BertConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config_file.read_text().replace('"BertModel"', '"BertForMaskedLM"'))
    with pytest.raises(MonodistillError, match="no trained masked-LM head"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


def test_causal_lm_is_refused(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(
        tmp_path
    )
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match="'gpt2' model"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


def test_tokenizer_larger_than_the_embedding_matrix_is_refused(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    from .conftest import build_tiny_teacher

    build_tiny_teacher("bert", len(tiny_tokenizer) - 50, 0).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match="tokenizer and model do not match"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
