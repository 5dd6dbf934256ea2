"""Config loading: precedence, validation naming the field, and every shipped YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from monodistill.config import DistillConfig, ExperimentConfig, load_config
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
