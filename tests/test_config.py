"""Config loading: precedence, validation naming the field, and every shipped YAML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monodistill.cli import CONFIG_KINDS
from monodistill.config import (
    ConfigError,
    DataConfig,
    DistillConfig,
    EvaluateConfig,
    ExperimentConfig,
    LossConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VocabConfig,
    config_to_dict,
    flatten,
    load_config,
)
from monodistill.errors import MonodistillError

from .conftest import REPO_ROOT


def test_precedence_defaults_file_flags_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  temperature: 2.0\ntrain:\n  max_steps: 10\n  seed: 7\n")
    config = load_config(
        DistillConfig,
        path,
        ["train.max_steps=30", "loss.alpha_kl=0.9"],
        {"train": {"max_steps": 20, "seed": None}},
    )
    assert config.loss.temperature == 2.0  # file beats default
    assert config.train.seed == 7  # a None flag does not erase the file
    assert config.train.max_steps == 30  # override beats flag beats file
    assert config.loss.alpha_kl == 0.9
    assert config.loss.alpha_mlm == 0.5  # default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.temperature=0", "loss.temperature must be > 0"),
        ("loss.temperature=-1", "loss.temperature must be > 0"),
        ("train.learning_rate=abc", "train.learning_rate"),
        ("train.nonsense=1", "train.nonsense"),
        ("data.data_fraction=1.5", "data.data_fraction"),
        ("teacher.dtype=float8", "teacher.dtype"),
        ("student.init=magic", "student.init"),
        ("train.batch_size=0", "train.batch_size"),
        ("novalue", "section.field=value"),
    ],
)
def test_nonsense_values_name_the_field(override: str, message: str) -> None:
    with pytest.raises(MonodistillError, match=message.replace(".", r"\.")):
        load_config(DistillConfig, None, [override])


def test_every_loss_weight_zero_is_refused_but_any_one_term_alone_is_a_recipe() -> None:
    with pytest.raises(MonodistillError, match="every loss weight"):
        load_config(DistillConfig, None, ["loss.alpha_kl=0", "loss.alpha_mlm=0"])
    # TiME's recipe: the relation loss alone; TinyBERT's general distillation: hidden and attention MSE.
    for alone in (["loss.alpha_relation=1"], ["loss.alpha_hidden=1", "loss.alpha_attention=1"]):
        load_config(DistillConfig, None, ["loss.alpha_kl=0", "loss.alpha_mlm=0", *alone])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.logit_loss=l2", "loss.logit_loss must be one of"),
        ("loss.hidden_layers=1-2", "student:teacher layer pairs"),
        ("loss.hidden_layers=1:2,1:3", "maps a student layer twice"),
        ("loss.relation_heads=0", "loss.relation_heads must be >= 1"),
        ("loss.alpha_relation=-1", "got loss.alpha_relation=-1.0"),
    ],
)
def test_recipe_fields_are_validated(override: str, message: str) -> None:
    with pytest.raises(MonodistillError, match=message):
        load_config(DistillConfig, None, [override])


def test_bad_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MonodistillError, match="does not exist"):
        load_config(DistillConfig, tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed")
    with pytest.raises(MonodistillError, match="not valid YAML"):
        load_config(DistillConfig, broken)


SHIPPED = sorted((REPO_ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_every_shipped_config_loads_and_says_how_to_run_it(path: Path) -> None:
    # The header names the command that reads this very file, and the file loads as that command's config
    # (an evaluate config was once loaded as a distill config here, and failed CI).
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} needs a header comment saying how to run it"
    command = re.search(rf"monodistill (\w+) [^\n]*--config configs/{re.escape(path.name)}", text[:2000])
    assert command, f"{path.name}: the header should show `monodistill <command> --config configs/{path.name}`"
    load_config(CONFIG_KINDS[command.group(1)], path)


def test_text_fields_take_the_value_as_typed(tmp_path: Path) -> None:
    # YAML 1.1 reads `no` as False, and the documented `train.mixed_precision=no` was refused as 'False'.
    config = load_config(
        EvaluateConfig, None, ["mixed_precision=no", "output_dir=0.10", "learning_rate=1e-4", "seeds=2"]
    )
    assert (config.mixed_precision, config.output_dir) == ("no", "0.10")
    assert (config.learning_rate, config.seeds) == (1e-4, 2)  # other fields still read numbers
    overrides = ["train.mixed_precision=no", "data.language=no", "teacher.revision=null", "vocab.enabled=yes"]
    config = load_config(DistillConfig, None, [*overrides, "data.hub_config='on'"])
    assert (config.train.mixed_precision, config.data.language, config.data.hub_config) == ("no", "no", "on")
    assert config.teacher.revision is None and config.vocab.enabled is True

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\nvocab:\n  enabled: yes\ndata:\n  language: off\n")
    config = load_config(DistillConfig, path)
    assert (config.train.mixed_precision, config.vocab.enabled, config.data.language) == ("no", True, "off")


def test_unknown_fields_name_their_source_and_the_nearest_field(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text("train:\n  max_steps: 5\nstudents:\n  - preset: dbert-tiny\n    nmae: small\n")
    with pytest.raises(MonodistillError, match=r"experiment\.yaml: students\.0 has no field 'nmae' \(did you mean"):
        load_config(ExperimentConfig, path)
    path.write_text("train:\n  max_steps: 5\n")
    # An override's mistake names the override, not the file it was applied on top of.
    with pytest.raises(MonodistillError) as caught:
        load_config(ExperimentConfig, path, ["train.max_stepz=3"])
    message = str(caught.value)
    assert message == "override 'train.max_stepz=3': train has no field 'max_stepz' (did you mean 'train.max_steps'?)"
    with pytest.raises(MonodistillError, match=r"^override 'train\.max_steps=0': train\.max_steps must be > 0"):
        load_config(ExperimentConfig, path, ["train.max_steps=0"])
    path.write_text("train:\n  max_steps: 0\n")
    with pytest.raises(MonodistillError, match=r"^invalid config in .*experiment\.yaml: train\.max_steps must be > 0"):
        load_config(ExperimentConfig, path, ["train.seed=1"])


def test_config_files_are_utf8_with_a_bom_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + "# Tagalog: ñ\ntrain:\n  seed: 7\n".encode())
    assert load_config(DistillConfig, path).train.seed == 7
    path.write_bytes("# Tagalog: ñ\ntrain:\n  seed: 7\n".encode("latin-1"))
    with pytest.raises(MonodistillError, match=r"c\.yaml is not UTF-8 \(byte 0xf1 at offset 11\)"):
        load_config(DistillConfig, path)


@pytest.mark.parametrize(
    ("schema", "values", "fields"),
    [
        (LossConfig, {"temperature": 0}, ("loss.temperature",)),
        (LossConfig, {"alpha_cosine": -1.0}, ("loss.alpha_cosine",)),
        (
            LossConfig,
            {"alpha_kl": 0.0, "alpha_mlm": 0.0},
            tuple(f"loss.{name}" for name in LossConfig.WEIGHTS),  # every weight is zero: each is to blame
        ),
        (TrainConfig, {"learning_rate": 0}, ("train.learning_rate",)),
        (TrainConfig, {"save_interval": 0}, ("train.save_interval",)),
        (EvaluateConfig, {"epochs": 0}, ("evaluate.epochs",)),
        (StudentConfig, {"num_layers": 0}, ("student.num_layers",)),
        (TeacherConfig, {"dtype": "float8"}, ("teacher.dtype",)),
        (VocabConfig, {"coverage": 2.0}, ("vocab.coverage",)),
        (DataConfig, {"streaming": True}, ("data.streaming", "data.max_documents")),
    ],
)
def test_config_errors_carry_the_fields_they_are_about(
    schema: type, values: dict[str, object], fields: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        schema(**values)
    assert caught.value.fields == fields
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, MonodistillError)
    assert {name.split(".")[0] for name in fields} == {schema.section}  # type: ignore[attr-defined]


def test_a_bad_value_is_blamed_on_the_last_layer_that_set_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 0\n")
    with pytest.raises(MonodistillError, match=r"^override 'train\.epochs=-1': train\.epochs must be > 0, got -1"):
        load_config(DistillConfig, path, ["train.epochs=-1"])
    with pytest.raises(MonodistillError, match=r"^invalid config in .*c\.yaml: train\.epochs must be > 0, got 0"):
        load_config(DistillConfig, path, ["train.seed=1"], {"train": {"max_steps": 5}})
    with pytest.raises(MonodistillError, match=r"^invalid config: train\.epochs must be > 0"):
        load_config(DistillConfig, path, ["train.seed=1"], {"train": {"epochs": 0}})
    # The root schema of `monodistill evaluate` is the evaluate section: `epochs` is `evaluate.epochs`.
    with pytest.raises(MonodistillError, match=r"^override 'epochs=0': evaluate\.epochs must be > 0, got 0"):
        load_config(EvaluateConfig, overrides=["epochs=0"])
    path.write_text("epochs: 0\n")
    with pytest.raises(MonodistillError, match=r"^invalid config in .*c\.yaml: evaluate\.epochs must be > 0"):
        load_config(EvaluateConfig, path, ["seeds=2"])


def test_a_cross_field_error_is_blamed_on_a_layer_that_set_either_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  streaming: true\n")
    with pytest.raises(MonodistillError, match=r"^invalid config in .*c\.yaml: data\.streaming needs data\.max_"):
        load_config(DistillConfig, path, ["data.split=validation"])
    path.write_text("data:\n  streaming: true\n  max_documents: 10\n")
    with pytest.raises(MonodistillError, match=r"^override 'data\.max_documents=null': data\.streaming needs"):
        load_config(DistillConfig, path, ["data.max_documents=null"])


def test_each_student_in_a_list_is_the_student_section(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text("students:\n  - preset: dbert-tiny\n  - preset: dbert-base\n    num_layers: 0\n")
    with pytest.raises(MonodistillError, match=r"^invalid config in .*experiment\.yaml: student\.num_layers must"):
        load_config(ExperimentConfig, path)
    path.write_text("students:\n  - preset: dbert-tiny\n  - preset: dbert-base\n")
    with pytest.raises(MonodistillError, match=r"^override 'students\.1\.num_layers=0': student\.num_layers must"):
        load_config(ExperimentConfig, path, ["students.1.num_layers=0"])
    config = load_config(ExperimentConfig, path, ["students.1.name=base", "students.0.num_layers=2"])
    assert [(student.name, student.num_layers) for student in config.students] == [(None, 2), ("base", None)]
    with pytest.raises(MonodistillError, match=r"^override 'students\.1\.name=dbert-tiny': students need distinct"):
        load_config(ExperimentConfig, path, ["students.1.name=dbert-tiny"])


def test_a_field_merely_mentioned_in_a_message_is_not_blamed(tmp_path: Path) -> None:
    # The check names all three weights, but only alpha_cosine is negative, and the file set it.
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  alpha_cosine: -1\n")
    with pytest.raises(
        MonodistillError, match=r"^invalid config in .*c\.yaml: loss weights \(loss\.alpha_kl, loss\.alpha_mlm"
    ):
        load_config(DistillConfig, path, ["loss.alpha_kl=0.3"])


def test_a_word_in_a_message_is_not_a_section() -> None:
    # The message lists 'teacher-embeddings'; the override of the teacher section set nothing it is about.
    with pytest.raises(MonodistillError, match=r"^override 'student\.init=magic': student\.init must be one of"):
        load_config(DistillConfig, None, ["student.init=magic", "teacher={dtype: auto}"])


def test_the_section_name_is_not_a_field() -> None:
    with pytest.raises(MonodistillError, match=r"teacher has no field 'section'"):
        load_config(DistillConfig, None, ["teacher.section=x"])
    assert "section" not in config_to_dict(DistillConfig())["teacher"]


def test_flatten_gives_dotted_keys_and_keeps_every_value() -> None:
    data = {"name": "x", "train": {"max_steps": None, "seed": 1}, "evaluate": {"tasks": ["a", "b"], "deep": {"k": 0}}}
    assert flatten(data) == {
        "name": "x",
        "train.max_steps": None,
        "train.seed": 1,
        "evaluate.tasks": ["a", "b"],
        "evaluate.deep.k": 0,
    }
    assert flatten({"seed": 1}, "config.") == {"config.seed": 1}
    flat = flatten(config_to_dict(DistillConfig()))
    assert flat["teacher.revision"] is None and flat["student.overrides"] == []
    assert flat["loss.temperature"] == 4.0 and "loss" not in flat
