"""The lock file and the drift report of ``make test-latest``."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import tomllib

from .conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("drift", REPO_ROOT / "requirements" / "drift.py")
assert spec is not None and spec.loader is not None
drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drift)
LOCK = REPO_ROOT / "requirements" / "lock.txt"


def test_a_release_that_differs_from_the_lock_is_named_with_both_versions() -> None:
    lock = drift.pinned(["# header", "torch==2.13.0", "transformers==5.24.0", "Typing_Extensions==4.15.0"])
    installed = drift.pinned(
        ["torch==2.13.0+cpu", "transformers==5.25.0", "typing-extensions==4.15.0", "kernels==0.19"]
    )
    assert drift.drift(lock, installed) == ["kernels 0.19 (not in the lock)", "transformers 5.24.0 (lock) -> 5.25.0"]
    assert drift.drift(installed, installed) == []


def test_the_lock_pins_every_dependency_the_metadata_names_to_one_exact_version() -> None:
    pins = drift.pinned(LOCK.read_text().splitlines())
    lines = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line) for line in lines), "only exact pins"
    project = tomllib.loads(Path(REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-") for requirement in wanted}
    assert names <= pins.keys(), f"not locked: {sorted(names - pins.keys())}"
    assert pins["torch"] == "2.13.0"  # the CPU build installed first, from this machine's disk
