"""Stored results of a Hub model are reused only at the commit they were made from.

The model lives in a local folder laid out as the Hub cache (``models--OWNER--NAME/refs/main`` naming
the commit, ``snapshots/COMMIT/`` holding its files), read offline as transformers reads a Hub id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from transformers import PreTrainedTokenizerFast

from monodistill.cli import main
from monodistill.evaluate import results

from ..conftest import save_teacher, write_keyword_task

MODEL = "owner/tiny"
FIRST, SECOND = "1" * 40, "2" * 40
SETTINGS = ["epochs=1", "max_length=16", "max_train_samples=16", "max_eval_samples=8"]


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache that huggingface_hub and transformers read instead of the user's, offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    # Read when each request is made; the constant was fixed when huggingface_hub was first imported,
    # which may be before HF_HUB_OFFLINE was set.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def publish(cache: Path, source: Path, commit: str) -> None:
    """Put ``source``'s files in the cache as commit ``commit`` of MODEL, its main branch now pointing there."""
    repository = cache / f"models--{MODEL.replace('/', '--')}"
    shutil.copytree(source, repository / "snapshots" / commit)
    (repository / "refs").mkdir(exist_ok=True)
    (repository / "refs" / "main").write_text(commit)


def test_the_commit_of_a_hub_id_is_read_from_the_local_cache_offline(
    hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    publish(hub_cache, folder, FIRST)
    assert results.resolve_hub_commit(MODEL) == FIRST
    assert results.resolve_hub_commit("owner/absent") is None
    assert "could not resolve the Hub commit of owner/absent" in capsys.readouterr().err


def test_stored_results_of_a_hub_model_are_reused_only_at_the_same_commit(
    hub_cache: Path,
    tiny_tokenizer: PreTrainedTokenizerFast,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = save_teacher("bert", tiny_tokenizer, tmp_path / "model")
    publish(hub_cache, model, FIRST)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", MODEL, "--task", str(write_keyword_task(tmp_path)), "--output", str(out), *SETTINGS]
    assert main(argv) == 0
    assert "fine-tuning tiny on keyword (seed 42)\n" in capsys.readouterr().out
    assert main(argv) == 0
    assert "fine-tuning tiny" not in capsys.readouterr().out  # same commit: reused

    publish(hub_cache, model, SECOND)  # the Hub's main branch moved on
    assert main(argv) == 0
    out_text = capsys.readouterr().out
    assert f"made with other commit ({FIRST[:12]}, now {SECOND[:12]}); recomputing" in out_text
    (result,) = (out / "results").glob("tiny-*/keyword/seed-42.json")
    assert json.loads(result.read_text())["made_from"]["commit"] == SECOND

    monkeypatch.setattr(results, "resolve_hub_commit", lambda model: None)  # offline, nothing cached
    assert main(argv) == 0
    assert f"the Hub commit of {MODEL} could not be resolved" in capsys.readouterr().out
