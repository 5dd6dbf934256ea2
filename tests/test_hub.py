"""Hub datasets that still carry a loading script are read from their Parquet conversion; an unreachable Hub
ends a command at its first failure, in one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import httpx2
import huggingface_hub
import pytest
from huggingface_hub.utils._http import default_client_factory

from monodistill import hub, teacher
from monodistill.cli import main
from monodistill.errors import MonodistillError
from monodistill.evaluate.hub_tasks import HubPreset
from monodistill.evaluate.tasks import load_hub_task
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


# --- an unreachable Hub ---


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Online mode on a machine whose network cannot resolve the Hub: every request fails to connect.

    Yields the URLs asked for. The failure is simulated in huggingface_hub's own HTTP client, so every
    library that reaches the Hub through it (transformers, datasets) meets it as it would offline.
    """
    requests: list[str] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        requests.append(f"{request.method} {request.url}")
        raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    teacher.hub_connection_error.cache_clear()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(refuse)))
    try:
        yield requests
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
        teacher.hub_connection_error.cache_clear()


@pytest.mark.parametrize("command", ["distill", "vocab"])
def test_an_unreachable_hub_ends_at_the_first_failure_in_one_line(
    command: str,
    unreachable_hub: list[str],
    corpus_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "runs" / "paper" / "students" / "tiny"
    argv = [command, "--teacher", "monodistill-tests/no-such-teacher", "--corpus", str(corpus_file)]
    started = time.perf_counter()
    assert main([*argv, "--output", str(output)]) == 2
    elapsed = time.perf_counter() - started
    assert len(unreachable_hub) == 1, unreachable_hub  # one quick check, no retries (there were seven)
    assert elapsed < 10  # not the 23 s of backoff
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines  # no "Retrying in 8s [Retry 5/5]" lines before it
    assert "could not load teacher" in lines[0] and "no-such-teacher" in lines[0] and "cannot be reached" in lines[0]
    assert ".." not in lines[0]
    assert not (tmp_path / "runs").exists()  # the folders the failed command made are gone


def test_an_unreachable_hub_dataset_ends_at_the_first_failure(
    unreachable_hub: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    with pytest.raises(MonodistillError, match="cannot be reached") as error:
        load_hub_dataset("corpus", "monodistill-tests/no-such-corpus", None, "train")
    assert time.perf_counter() - started < 10 and len(unreachable_hub) == 1
    assert "HF_HUB_OFFLINE=1" in str(error.value) and ".." not in str(error.value)
    assert "Retrying" not in capsys.readouterr().err


def test_a_hub_error_ends_in_one_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    reason = OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them.")
    message = str(teacher.hub_error("teacher", "someone/model", reason))
    assert "couldn't find them. If this machine is offline" in message and ".." not in message
