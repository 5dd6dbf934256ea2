"""Teacher loading for every family, its masked-position head, and the errors on bad teachers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertModel,
    CamembertConfig,
    DebertaV2Config,
    DebertaV2Model,
    ElectraConfig,
    ElectraForPreTraining,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as transformers_logging

from monodistill.config import TeacherConfig
from monodistill.errors import MonodistillError
from monodistill.families import supported_families
from monodistill.teacher import encoder, load_teacher, max_positions, mlm_head

from .conftest import TINY_TEACHERS, save_teacher

FAMILIES = supported_families("masked")


def test_every_family_adapter_has_a_tiny_teacher_row() -> None:
    assert sorted(TINY_TEACHERS) == sorted(supported_families("masked"))


@pytest.mark.smoke
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


@pytest.mark.smoke
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
    assert max_positions(CamembertConfig(max_position_embeddings=514, pad_token_id=1)) == 512
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


def test_a_family_without_adapter_is_refused_naming_the_masked_and_causal_ones(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    config = OPTConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, ffn_dim=64
    )
    OPTForCausalLM(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    pattern = r"'opt' model; monodistill distils masked-LM families \('bert'.* and causal-LM families \('bloom'"
    with pytest.raises(MonodistillError, match=pattern):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


def test_tokenizer_larger_than_the_embedding_matrix_is_refused(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    from .conftest import build_tiny_teacher

    build_tiny_teacher("bert", len(tiny_tokenizer) - 50, 0).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match="tokenizer and model do not match"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


# DeBERTa-v2 keeps its MLM head in one of two layouts; the config's `legacy` flag picks the one
# transformers builds. The original microsoft checkpoints (mdeberta-v3-base) store the second and
# leave the flag unset, which means `legacy=True`.
DEBERTA_HEAD = {
    "cls.predictions": {
        "dense": "cls.predictions.transform.dense",
        "norm": "cls.predictions.transform.LayerNorm",
        "bias": "cls.predictions.bias",
    },
    "lm_predictions": {
        "dense": "lm_predictions.lm_head.dense",
        "norm": "lm_predictions.lm_head.LayerNorm",
        "bias": "lm_predictions.lm_head.bias",
    },
}


def save_deberta(
    tokenizer: PreTrainedTokenizerFast, path: Path, layout: str, legacy: bool | None, drop: str | None = None
) -> Path:
    """A tiny DeBERTa-v2 masked LM whose head is stored in ``layout``, ``legacy`` written as given.

    transformers saves the ``cls.predictions`` layout; the other is that state dict with renamed keys.
    ``drop`` names a head tensor ("dense", "norm", "bias") to leave out of the file.
    """
    save_teacher("deberta-v2", tokenizer, path)
    saved_names = DEBERTA_HEAD["cls.predictions"]
    renamed = {}
    for key, value in load_file(path / "model.safetensors").items():
        part = next((part for part, name in saved_names.items() if key.startswith(name)), None)
        if part is None:
            renamed[key] = value
        elif part != drop:
            renamed[DEBERTA_HEAD[layout][part] + key.removeprefix(saved_names[part])] = value
    if layout == "lm_predictions":
        # The replaced-token-detection head that microsoft's checkpoints carry beside it; never used.
        renamed["mask_predictions.classifier.weight"] = torch.zeros(1, 32)
    save_file(renamed, path / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config.pop("legacy", None)
    if legacy is not None:
        config["legacy"] = legacy
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("legacy", [None, True, False], ids=["legacy-unset", "legacy-true", "legacy-false"])
@pytest.mark.parametrize("layout", list(DEBERTA_HEAD))
def test_deberta_head_in_either_layout_loads_trained_and_scores_as_its_weights(
    layout: str, legacy: bool | None, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save_deberta(tiny_tokenizer, tmp_path, layout, legacy)
    verbosity = transformers_logging.get_verbosity()
    model, _ = load_teacher(TeacherConfig(name_or_path=str(path)))
    assert transformers_logging.get_verbosity() == verbosity
    assert model.config.legacy == (layout == "cls.predictions")

    # Fill-mask logits by hand from the stored tensors: LayerNorm(gelu(dense(h))) @ E^T + bias.
    stored = load_file(path / "model.safetensors")
    names = DEBERTA_HEAD[layout]
    ids = torch.randint(5, len(tiny_tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    ids[:, 4] = tiny_tokenizer.mask_token_id
    with torch.inference_mode():
        hidden = encoder(model)(input_ids=ids).last_hidden_state  # (B, T, H)
        transformed = F.layer_norm(
            F.gelu(F.linear(hidden, stored[f"{names['dense']}.weight"], stored[f"{names['dense']}.bias"])),
            (hidden.shape[-1],),
            stored[f"{names['norm']}.weight"],
            stored[f"{names['norm']}.bias"],
            eps=model.config.layer_norm_eps,
        )
        by_hand = transformed @ stored["deberta.embeddings.word_embeddings.weight"].T + stored[names["bias"]]
        assert torch.allclose(mlm_head(model).logits(hidden), by_hand, atol=1e-5)
        assert torch.allclose(model(input_ids=ids).logits, by_hand, atol=1e-5)


@pytest.mark.parametrize("drop", ["dense", "norm", "bias"])
@pytest.mark.parametrize("layout", list(DEBERTA_HEAD))
def test_deberta_head_missing_a_tensor_is_refused_in_either_layout(
    layout: str, drop: str, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save_deberta(tiny_tokenizer, tmp_path, layout, legacy=None, drop=drop)
    with pytest.raises(MonodistillError, match=rf"no trained masked-LM head \(missing \['{layout}"):
        load_teacher(TeacherConfig(name_or_path=str(path)))


@pytest.mark.parametrize("legacy", [True, False])
def test_deberta_encoder_without_any_head_is_refused(
    legacy: bool, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    config = DebertaV2Config(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        legacy=legacy,
    )
    DebertaV2Model(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config_file.read_text().replace('"DebertaV2Model"', '"DebertaV2ForMaskedLM"'))
    with pytest.raises(MonodistillError, match="no trained masked-LM head"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


def test_electra_discriminator_is_refused_with_a_pointer_to_generators(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    config = ElectraConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    ElectraForPreTraining(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match="ELECTRA discriminator.*ElectraForMaskedLM"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
    # Without architectures in its config, the missing generator head gives it away.
    config_file = tmp_path / "config.json"
    config_file.write_text(config_file.read_text().replace('"ElectraForPreTraining"', '"ElectraForMaskedLM"'))
    with pytest.raises(
        MonodistillError, match=r"no trained masked-LM head \(missing \['generator_.*generator checkpoint"
    ):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


# --- the tokenizer must be the model's own ---


def test_a_folder_without_tokenizer_files_is_refused_not_given_a_stand_in(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # transformers would hand this folder a 5-token BertTokenizer: every corpus token [UNK].
    from .conftest import build_tiny_teacher

    build_tiny_teacher("bert", len(tiny_tokenizer), 0).save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match=rf"teacher folder {tmp_path} holds no tokenizer files.*copy the tok"):
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_a_trimmed_tokenizer_beside_a_full_teacher_is_refused(
    family: str, tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    from .conftest import build_tiny_teacher

    build_tiny_teacher(family, len(tiny_tokenizer) + 2000, tiny_tokenizer.pad_token_id).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MonodistillError, match=rf"{tmp_path}.* {len(tiny_tokenizer)} tokens .*vocab\.path") as error:
        load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
    assert "\n" not in str(error.value)
    # A trimmed vocabulary folder's tokenizer indexes a sliced model: its id_map.json says so.
    (tmp_path / "id_map.json").write_text(json.dumps({"id_map": list(range(len(tiny_tokenizer)))}))
    model, tokenizer = load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
    assert len(tokenizer) == len(tiny_tokenizer) and model.config.vocab_size == len(tiny_tokenizer) + 2000


def test_embedding_rows_padded_beyond_the_tokenizer_are_accepted(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # Real models round vocab_size up (DeBERTa-v3: 128,001 tokens in 128,100 rows).
    from .conftest import build_tiny_teacher

    build_tiny_teacher("bert", len(tiny_tokenizer) + 99, 0).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    model, tokenizer = load_teacher(TeacherConfig(name_or_path=str(tmp_path)))
    assert model.config.vocab_size - len(tokenizer) == 99


def test_a_config_vocab_size_that_disagrees_with_the_weights_is_one_line(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = save_teacher("bert", tiny_tokenizer, tmp_path / "bert")
    config = json.loads((path / "config.json").read_text())
    config["vocab_size"] = len(tiny_tokenizer) + 50
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MonodistillError, match=rf"teacher {path}: config.json .*vocab_size") as error:
        load_teacher(TeacherConfig(name_or_path=str(path)))
    message = str(error.value)
    assert "\n" not in message and f"{len(tiny_tokenizer)} rows" in message


def test_teachers_load_without_hub_kernels_unless_asked(
    tiny_teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers 5.25 applies Hub kernels by default; a teacher is loaded with torch's own layers unless
    ``teacher.use_kernels`` says otherwise, and the model checks never load weights at all."""
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    model, _ = load_teacher(TeacherConfig(name_or_path=str(tiny_teacher_dir)))
    assert model.use_kernels is False
    # The same load through transformers' default would have asked for them (where the kernels package is).
    default = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir)
    assert default.use_kernels is (importlib.util.find_spec("kernels") is not None)
