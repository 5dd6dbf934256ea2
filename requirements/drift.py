"""What the newest installable versions change against the lock: ``python requirements/drift.py LOCK VENV_PYTHON``.

Prints one line per package whose version in the environment of ``VENV_PYTHON`` differs from the lock
(``transformers 5.25.0 (lock) -> 5.26.0``), packages the lock lacks, and packages the environment lacks.
``make test-latest`` prints it beside the smoke tests' result, so a failure names the releases that caused it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pinned(lines: list[str]) -> dict[str, str]:
    """``name==version`` lines as {normalised name: version}; comments, blanks and local tags (``+cpu``) dropped."""
    versions = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip().lower().replace("_", "-")] = version.strip().split("+")[0]
    return versions


def drift(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per difference, sorted by package name."""
    lines = []
    for name in sorted(lock.keys() | installed.keys()):
        before, now = lock.get(name), installed.get(name)
        if before == now:
            continue
        if before is None:
            lines.append(f"{name} {now} (not in the lock)")
        elif now is None:
            lines.append(f"{name} {before} (lock) is no longer installed")
        else:
            lines.append(f"{name} {before} (lock) -> {now}")
    return lines


def main(lock_file: str, python: str) -> int:
    """Print the drift between ``lock_file`` and the environment of ``python``; the exit status is always 0."""
    lock = pinned(Path(lock_file).read_text().splitlines())
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    )
    lines = drift(lock, pinned(freeze.stdout.splitlines()))
    if lines:
        print(f"newest versions the metadata allows, against {lock_file}:")
        print("\n".join(f"  {line}" for line in lines))
    else:
        print(f"the newest versions the metadata allows are the ones in {lock_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
