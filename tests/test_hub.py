"""Hub datasets that still carry a loading script are read from their Parquet conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

from monodistill import hub
from monodistill.errors import MonodistillError
from monodistill.evaluate.tasks import HubPreset, load_hub_task
from monodistill.hub import PARQUET_REVISION, load_hub_dataset

ROWS = {"text": ["maganda ito", "pangit ito", "ayos lang", "masama"], "label": [0, 1, 0, 1]}


def make_repository(root: Path, script: bool, conversion: bool) -> Path:
    """A local folder laid out as a Hub dataset repository: a loading script and/or Parquet files."""
    folder = root / "hatespeech"
    (folder / "data").mkdir(parents=True)
    if script:
        (folder / "hatespeech.py").write_text("# a datasets loading script\n")
    else:
        datasets.Dataset.from_dict(ROWS).to_parquet(str(folder / "data" / "train.parquet"))
    if conversion:  # the Hub's refs/convert/parquet layout: CONFIG/SPLIT/0000.parquet
        (folder / "conversion" / "default" / "train").mkdir(parents=True)
        datasets.Dataset.from_dict(ROWS).to_parquet(str(folder / "conversion" / "default" / "train" / "0000.parquet"))
    return folder


@pytest.fixture
def hub_revisions(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Serve the Parquet revision of a local repository from its conversion folder, as the Hub does."""
    revisions: list[str | None] = []
    load_dataset = datasets.load_dataset

    def load(path: str, config: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
        revisions.append(kwargs.get("revision"))
        if kwargs.get("revision") == PARQUET_REVISION:
            files = sorted((Path(path) / "conversion" / (config or "default") / str(split)).glob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"no Parquet conversion of {path}")
            return load_dataset("parquet", data_files=[str(file) for file in files], split="train")
        return load_dataset(path, config, split=split)

    monkeypatch.setattr(hub.datasets, "load_dataset", load)
    return revisions


def test_a_repository_with_a_script_is_read_from_its_parquet_conversion(
    tmp_path: Path, hub_revisions: list[str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_repository(tmp_path, script=True, conversion=True)
    dataset = load_hub_dataset("task dataset", str(folder), None, "train")
    assert dataset["text"] == ROWS["text"]
    assert hub_revisions == [None, PARQUET_REVISION]
    assert f"reading {PARQUET_REVISION}" in capsys.readouterr().out


def test_a_plain_repository_is_read_as_it_is(tmp_path: Path, hub_revisions: list[str | None]) -> None:
    folder = make_repository(tmp_path, script=False, conversion=False)
    assert load_hub_dataset("corpus", str(folder), None, "train")["label"] == ROWS["label"]
    assert hub_revisions == [None]


def test_a_script_without_a_conversion_names_the_dataset_and_the_way_out(
    tmp_path: Path, hub_revisions: list[str | None]
) -> None:
    folder = make_repository(tmp_path, script=True, conversion=False)
    with pytest.raises(MonodistillError) as error:
        load_hub_dataset("task dataset", str(folder), None, "train")
    message = str(error.value)
    assert str(folder) in message and "loading script" in message and "local files" in message


def test_a_task_preset_pinned_to_the_conversion_reads_it(tmp_path: Path, hub_revisions: list[str | None]) -> None:
    folder = make_repository(tmp_path, script=True, conversion=True)
    preset = HubPreset(str(folder), "classification", "text", "label", test_split="train", revision=PARQUET_REVISION)
    task = load_hub_task("hatespeech", preset)
    assert task.train["text"] == ROWS["text"] and task.labels == ["0", "1"]
    assert hub_revisions == [PARQUET_REVISION]  # train and test name one split: it is read once
