"""``monodistill publish``: a distilled student, its card, results and figures, to a Hugging Face Hub model repo.

What goes up, from a run folder ``EXP/students/NAME`` (``monodistill run``) or any distillation run::

    README.md                  the model card, rendered afresh, with Hub front matter (model-index results)
    config.json, model.safetensors, tokenizer files      RUN/student/ (a decoder's: and generation_config.json)
    monodistill/config.yaml, environment.json, metrics.jsonl         the resolved config and the run's record
    results/summary.json, summary.md                     EXP/evaluate/, when the student was evaluated
    results/results.csv, results.json, report.md, *.png  EXP/report/, when there is one

``--dry-run`` prints that list with sizes and validates the card's metadata offline with
``huggingface_hub``'s own parser (``ModelCard``: YAML, ``model-index`` structure) plus the checks the
Hub applies to ids and the Hub's licence list (``HUB_LICENSES``); the Hub's full validator needs the
network. A damaged student folder is refused before anything is loaded. The upload refuses before
any transfer when the licence is unset or there is no token, and fails in one line when the Hub is
unreachable.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from monodistill import checkpoint as ckpt
from monodistill.card import UNSET_LICENSE, render_card
from monodistill.errors import MonodistillError
from monodistill.teacher import is_local_reference

RUN_RECORD = ("config.yaml", "environment.json", "metrics.jsonl")
EVALUATION_FILES = ("summary.json", "summary.md")
REPORT_PATTERNS = ("results.csv", "results.json", "report.md", "*.png")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
"""A plausible ISO 639 code (``tl``, ``fil``), optionally with BCP-47 subtags (``pt-BR``)."""
HUB_LICENSES = frozenset(
    # The Hub's own ids, from its docs page "Licenses" (huggingface.co/docs/hub/repositories-licenses);
    # any other licence is `other` (with license_name and license_link in the card).
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa
    unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1
    llama3.2 llama3.3 llama4 gemma unknown other""".split()  # noqa: SIM905 (80 ids: a list literal is 80 lines)
)
"""Licence ids the Hub knows (``unknown`` is one, but ``publish`` treats it as unset)."""


def publish_run(
    run_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    license: str | None = None,
    language: str | None = None,
) -> Path:
    """Upload (or with ``dry_run`` list and validate) a distillation run; returns the run folder.

    ``license`` is a Hub licence id (``HUB_LICENSES``); ``language`` an ISO 639 code for the card, in
    place of the run's ``data.language``.

    Raises:
        MonodistillError: a bad repo id, licence, language or run folder, a damaged student, invalid card
            metadata, and for the real upload an unset licence, no token, or an unreachable Hub, each in
            one line saying what to do.
    """
    hub = _require_hub()
    try:
        hub.utils.validate_repo_id(repo_id)
    except Exception as error:
        raise MonodistillError(f"--repo-id {repo_id!r} is not a Hub repository id: {_first_line(error)}") from None
    if repo_id.count("/") != 1:
        raise MonodistillError(f"--repo-id must be USER/NAME (or ORG/NAME), got {repo_id!r}")
    if license is not None and (problem := license_problem(license)):
        raise MonodistillError(f"--license {problem}")
    if language is not None and not LANGUAGE_CODE.match(language):
        raise MonodistillError(f"--language {language!r} is not an ISO 639 code (2-3 lowercase letters: tl, fil)")
    card, notes = prepare_card(render_card(run_dir, license=license, language=language))
    files = collect_files(run_dir)
    for note in notes:
        print(f"note: {note}")
    print(format_listing(files, len(card.encode())))
    unset = card_license(card) in (None, UNSET_LICENSE)
    if dry_run:
        print(f"card metadata valid; dry run, nothing uploaded to {repo_id}")
        if unset:
            print("note: the licence is unset; the upload will need --license ID")
        return run_dir
    if unset:
        raise MonodistillError(
            "the card's licence is unset: pass --license ID, a Hub licence id (apache-2.0, mit, cc-by-4.0, ...) "
            "that the teacher's and the corpus's licences allow"
        )
    token = hub.get_token()
    if not token:
        raise MonodistillError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then publish again")
    if hub.constants.HF_HUB_OFFLINE:
        raise MonodistillError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it where there is a network")
    with tempfile.TemporaryDirectory() as staging:
        stage(files, card, Path(staging))
        try:
            hub.create_repo(repo_id, private=private, exist_ok=True, token=token)
            hub.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                token=token,
                commit_message=f"monodistill publish {run_dir.name}",
            )
        except Exception as error:  # httpx/requests connection errors, HfHubHTTPError, OfflineModeIsEnabled
            raise MonodistillError(f"could not publish to the Hub ({repo_id}): {_first_line(error)}") from None
    print(f"published https://huggingface.co/{repo_id}")
    return run_dir


def collect_files(run_dir: Path) -> dict[str, Path]:
    """Repository path -> local file: the student, the run's record, and the evaluation and report if present.

    The student's README.md is replaced by the card rendered afresh; hidden files (the manifest that
    vouches for the saved student, ``checkpoint.MODEL_MANIFEST``) stay local. Subfolders go up as they are
    (``1_Pooling/``, the sentence-transformers pooling an encoder student is saved with); a causal student's
    ``generation_config.json`` goes up beside its weights, and its card is a text-generation model's.
    """
    student_dir = run_dir / ckpt.STUDENT_DIR
    files = {
        path.relative_to(student_dir).as_posix(): path
        for path in sorted(student_dir.rglob("*"))
        if path.is_file() and path != student_dir / "README.md" and not path.name.startswith(".")
    }
    files |= {f"monodistill/{name}": run_dir / name for name in RUN_RECORD if (run_dir / name).is_file()}
    experiment = run_dir.parent.parent
    evaluation, report = experiment / "evaluate", experiment / "report"
    files |= {f"results/{name}": evaluation / name for name in EVALUATION_FILES if (evaluation / name).is_file()}
    for pattern in REPORT_PATTERNS:
        files |= {f"results/{path.name}": path for path in sorted(report.glob(pattern)) if path.is_file()}
    return files


def prepare_card(card: str) -> tuple[str, list[str]]:
    """The card as uploaded, validated offline; returns it and notes about what was changed.

    A local teacher folder in ``base_model`` means nothing on the Hub, which links ``base_model`` to a
    repository: it is removed from the uploaded card (its text still names the teacher).
    """
    from huggingface_hub import ModelCard

    notes = []
    metadata, body = _split_card(card)
    base = metadata.get("base_model")
    if isinstance(base, str) and is_local_reference(base):
        del metadata["base_model"]
        notes.append(f"base_model left out of the uploaded card: the teacher {base} is a local folder, not a Hub id")
    card = "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + body
    try:
        parsed = ModelCard(card, ignore_metadata_errors=False)
    except Exception as error:
        raise MonodistillError(f"the model card's metadata is invalid: {_first_line(error)}") from None
    problems = metadata_problems(parsed.data.to_dict(), getattr(parsed.data, "eval_results", None) or [])
    if problems:
        raise MonodistillError("the model card's metadata is invalid: " + "; ".join(problems))
    return card, notes


def metadata_problems(metadata: dict[str, Any], eval_results: list[Any]) -> list[str]:
    """What the Hub would reject or not show in card metadata, checked without the network."""
    from huggingface_hub.utils import validate_repo_id

    problems = []
    for key in ("library_name", "pipeline_tag", "license", "language"):
        if not metadata.get(key):
            hint = " (pass --language CODE, e.g. tl, or set data.language)" if key == "language" else ""
            problems.append(f"{key} is missing{hint}")
    if metadata.get("license") and (problem := license_problem(str(metadata["license"]))):
        problems.append(f"licence {problem}")
    languages = metadata.get("language") or []
    for code in [languages] if isinstance(languages, str) else languages:
        if not LANGUAGE_CODE.match(str(code)):
            problems.append(f"language {code!r} is not an ISO 639 code")
    ids = [metadata["base_model"]] if isinstance(metadata.get("base_model"), str) else metadata.get("base_model", [])
    for hub_id in [*ids, *(metadata.get("datasets") or [])]:
        try:
            validate_repo_id(hub_id)
        except Exception as error:
            problems.append(f"{hub_id!r} is not a Hub id ({_first_line(error)})")
    for result in eval_results:
        if not isinstance(result.metric_value, int | float):
            problems.append(f"model-index result {result.dataset_name}: metric value {result.metric_value!r}")
    return problems


def license_problem(license: str) -> str | None:
    """Why ``license`` is not a Hub licence id, naming the nearest ones; None when it is one."""
    if license in HUB_LICENSES:
        return None
    nearest = difflib.get_close_matches(license.lower(), sorted(HUB_LICENSES - {"other"}), n=3, cutoff=0.5)
    suggestion = f"nearest: {', '.join(nearest)}; " if nearest else ""
    return f"{license!r} is not a Hub licence id ({suggestion}any other licence is `other`)"


def card_license(card: str) -> str | None:
    """The ``license`` of a card's front matter."""
    license = _split_card(card)[0].get("license")
    return str(license) if license else None


def format_listing(files: dict[str, Path], card_bytes: int) -> str:
    """One line per file that would be uploaded, with its size, and the total."""
    sizes = {"README.md": card_bytes} | {name: path.stat().st_size for name, path in files.items()}
    width = max(len(name) for name in sizes)
    lines = [f"{name:<{width}}  {_human(size):>9}" for name, size in sorted(sizes.items())]
    lines.append(f"{len(sizes)} files, {_human(sum(sizes.values()))}")
    return "\n".join(lines)


def stage(files: dict[str, Path], card: str, folder: Path) -> None:
    """Lay the repository out in ``folder``: hard links where the filesystem allows (no copy of the weights)."""
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copy2(source, target)
    (folder / "README.md").write_text(card)


def _split_card(card: str) -> tuple[dict[str, Any], str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, flags=re.DOTALL)
    if match is None:
        raise MonodistillError("the model card has no YAML front matter")
    return yaml.safe_load(match.group(1)) or {}, match.group(2)


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return f"{size:.2f} GB"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _require_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise MonodistillError("publish needs huggingface_hub: pip install 'monodistill[publish]'") from None
    return huggingface_hub
