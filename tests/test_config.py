"""Config loading: precedence, validation naming the field, and every shipped YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from monodistill.config import DistillConfig, EvaluateConfig, ExperimentConfig, load_config
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


def test_both_loss_weights_zero_is_refused() -> None:
    with pytest.raises(MonodistillError, match="both zero"):
        load_config(DistillConfig, None, ["loss.alpha_kl=0", "loss.alpha_mlm=0"])


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
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} needs a header comment saying how to run it"
    assert "monodistill " in text.split("\n\n")[0] + text[:800]
    schema = ExperimentConfig if "students:" in text else DistillConfig
    load_config(schema, path)


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
