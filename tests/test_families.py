"""The family adapters: every registered family on its tiny model, and the rule that only ``families/`` knows names."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PreTrainedTokenizerFast

from monodistill.errors import MonodistillError
from monodistill.evaluate.loading import load_for_task
from monodistill.families import GENERIC, REGISTRY, SHARED_MODULES, family_of, supported_families
from monodistill.internals import capture_projections

from .conftest import (
    REPO_ROOT,
    TINY_DECODERS,
    TINY_TEACHERS,
    build_tiny_decoder,
    build_tiny_teacher,
    decoder_tokenizer,
    save_decoder,
    save_teacher,
)

FAMILIES = supported_families("masked")


def test_only_the_families_package_names_a_family() -> None:
    """No module outside ``families/`` compares with (or lists) a family's ``model_type`` as a string literal."""
    names = "|".join(re.escape(name) for name in supported_families())
    literal = re.compile(rf"""["']({names})["']""")
    package = REPO_ROOT / "src" / "monodistill"
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if "families" not in path.relative_to(package).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not offenders, "\n".join(offenders)


def test_each_module_of_the_package_registers_its_family_once() -> None:
    modules = {path.stem for path in (REPO_ROOT / "src" / "monodistill" / "families").glob("*.py")}
    registered = {type(family).__module__.rsplit(".", 1)[1] for family in REGISTRY.values()}
    assert registered == modules - {"__init__", *SHARED_MODULES}
    # Every family has a tiny model in the tests: a masked LM in TINY_TEACHERS, a causal one in TINY_DECODERS.
    assert sorted(TINY_TEACHERS) == sorted(FAMILIES)
    assert sorted(TINY_DECODERS) == sorted(supported_families("causal"))


def test_an_unknown_family_is_refused_naming_those_served() -> None:
    with pytest.raises(MonodistillError, match=r"no adapter for model type 't5'; monodistill distils bert"):
        family_of("t5")
    assert family_of("t5", required=False) is GENERIC


@pytest.mark.parametrize("name", supported_families())
def test_layers_and_projections_are_where_the_adapter_says(
    name: str, decoder_tokenizers: dict[str, PreTrainedTokenizerFast]
) -> None:
    """4 layers, hidden 32, 4 heads; a decoder with grouped-query attention has 2 key-value heads of 8."""
    if name in TINY_TEACHERS:
        model = build_tiny_teacher(name, 120, 0).eval()
    else:
        model = build_tiny_decoder(name, decoder_tokenizer(name, decoder_tokenizers)).eval()
    family = family_of(model)
    assert len(family.layers(model)) == model.config.num_hidden_layers == 4
    ids = torch.randint(5, 120, (2, 9), generator=torch.Generator().manual_seed(0))
    with capture_projections(model, [1, 4]) as captured, torch.inference_mode():
        model(input_ids=ids)
    key_value = 32 * (getattr(model.config, "num_key_value_heads", None) or 4) // 4
    for layer in (1, 4):
        # q, k, v, split if fused
        assert [tuple(states.shape) for states in captured[layer]] == [(2, 9, 32), (2, 9, key_value), (2, 9, key_value)]
        assert not torch.equal(captured[layer][1], captured[layer][2])


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("task_class", [AutoModelForSequenceClassification, AutoModelForTokenClassification])
def test_a_task_model_drops_exactly_the_masked_lm_head(
    name: str,
    task_class: type,
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Loading a family's masked-LM checkpoint for a task warns of nothing: every weight it lacks is the task head,
    every weight it leaves unused is the masked-LM head (``Family.task_head_prefixes``, ``Family.head_drops``)."""
    path = save_teacher(name, tiny_tokenizer, tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_for_task(task_class, str(path), num_labels=3)
    assert model.config.model_type == name
    assert "as expected" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2", "bloom"])
@pytest.mark.parametrize("task_class", [AutoModelForSequenceClassification, AutoModelForTokenClassification])
def test_a_decoders_task_model_drops_exactly_its_lm_head(
    name: str,
    task_class: type,
    decoder_tokenizers: dict[str, PreTrainedTokenizerFast],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A decoder's classifier adds ``score.*`` (sequence) or ``classifier.*`` (GPT-2's and BLOOM's token classifiers)
    and leaves its ``lm_head`` unused: nothing else is warned of."""
    path = save_decoder(name, decoder_tokenizer(name, decoder_tokenizers), tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_for_task(task_class, str(path), num_labels=3)
    assert "as expected" in capsys.readouterr().out
