"""``monodistill publish``: the dry run lists the files and validates the card; the upload refuses early.

No test reaches the Hub: ``create_repo``/``upload_folder`` are replaced, and any call the test does
not expect fails it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import yaml
from transformers import PreTrainedTokenizerFast

from monodistill import checkpoint as ckpt
from monodistill.cli import main
from monodistill.config import DistillConfig, load_config, save_config
from monodistill.errors import MonodistillError
from monodistill.publish import prepare_card, publish_run
from monodistill.recipe import save_student

from .conftest import build_tiny_decoder, decoder_tokenizer, save_decoder

TASK = "hatespeech-filipino"


@pytest.fixture
def run_dir(tmp_path: Path, tiny_teacher_dir: Path) -> Path:
    """An experiment folder as ``monodistill run`` leaves it: one student, its evaluation and report."""
    experiment = tmp_path / "exp"
    run = experiment / "students" / "tiny"
    student = run / "student"
    student.mkdir(parents=True)
    for file in tiny_teacher_dir.iterdir():  # a stand-in student: any saved masked LM will do
        (student / file.name).write_bytes(file.read_bytes())
    (student / "README.md").write_text("an old card, replaced on upload\n")
    config = load_config(
        DistillConfig,
        updates={
            "teacher": {"name_or_path": str(tiny_teacher_dir)},
            "data": {"corpus": str(tmp_path / "corpus.txt"), "language": "tl"},
            "student": {"name": "tiny"},
        },
    )
    save_config(config, run / "config.yaml")
    (run / "environment.json").write_text(json.dumps({"train_blocks": 10}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "split": "validation", "loss": 2.5}) + "\n")
    score = {"main_metric": "accuracy", "metric.accuracy": {"mean": 0.71234, "std": 0.01}, "finetune_speedup": 3.0}
    score |= {"train_samples": 10_000, "test_samples": 4_232}  # the Hub dataset's splits, read whole
    hub = {"hub": "jcblaise/hatespeech_filipino", "train_split": "train", "test_split": "validation"}
    summary = {
        "baseline": "teacher",
        "tasks": [TASK],
        "task_sources": {TASK: hub | {"train_rows": 10_000, "test_rows": 4_232}},
        "models": {
            "teacher": {"model": str(tiny_teacher_dir), "tasks": {TASK: score}},
            "tiny": {"model": str(student), "tasks": {TASK: score}},
        },
    }
    (experiment / "evaluate").mkdir()
    (experiment / "evaluate" / "summary.json").write_text(json.dumps(summary))
    (experiment / "evaluate" / "config.yaml").write_text(yaml.safe_dump({"tasks": [TASK]}))
    (experiment / "report").mkdir()
    (experiment / "report" / "results.csv").write_text("model,task,accuracy\ntiny,hatespeech-filipino,0.71\n")
    (experiment / "report" / "quality.png").write_bytes(b"\x89PNG" + bytes(2000))
    return run


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hub calls fail the test unless a test replaces them again; returns the names of calls made."""
    calls: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append("hub")
        raise AssertionError("the Hub was called")

    monkeypatch.setattr(huggingface_hub, "create_repo", refuse)
    monkeypatch.setattr(huggingface_hub, "upload_folder", refuse)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    return calls


def test_dry_run_lists_every_file_with_its_size(
    run_dir: Path, no_hub: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(run_dir), "--repo-id", "someone/tiny-tl", "--dry-run"]) == 0
    out = capsys.readouterr().out
    weights = (run_dir / "student" / "model.safetensors").stat().st_size
    listed = {line.split()[0] for line in out.splitlines() if line and not line.startswith(("note", "card"))}
    for name in ("README.md", "model.safetensors", "config.json", "tokenizer.json", "monodistill/config.yaml"):
        assert name in listed
    for name in ("monodistill/metrics.jsonl", "results/summary.json", "results/results.csv", "results/quality.png"):
        assert name in listed
    assert f"{weights / 1e6:.1f} MB" in out or f"{weights / 1e3:.1f} KB" in out
    assert "card metadata valid" in out and "upload will need --license" in out
    assert not no_hub


def test_card_front_matter_holds_language_license_and_model_index(run_dir: Path, tiny_teacher_dir: Path) -> None:
    from monodistill.card import render_card

    card, notes = prepare_card(render_card(run_dir, license="apache-2.0"))
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["language"] == ["tl"] and metadata["license"] == "apache-2.0"
    assert "base_model" not in metadata and not notes  # a local teacher is no Hub id: the card leaves it out
    result = metadata["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {"name": TASK, "type": "jcblaise/hatespeech_filipino", "split": "validation"}
    assert result["metrics"][0]["type"] == "accuracy" and result["metrics"][0]["value"] == pytest.approx(0.7123)
    card_data = huggingface_hub.ModelCard(card).data  # huggingface_hub reads the results back
    assert card_data.eval_results[0].metric_value == pytest.approx(0.7123)


def test_invalid_metadata_is_refused() -> None:
    card = "---\nlibrary_name: transformers\npipeline_tag: fill-mask\nlanguage: [Tagalog]\nlicense: mit\n---\nx\n"
    with pytest.raises(MonodistillError, match="ISO 639"):
        prepare_card(card)
    bad_index = card.replace("Tagalog", "tl") + ""
    bad_index = bad_index.replace("license: mit\n", "license: mit\nmodel-index: [{name: x, results: [{}]}]\n")
    with pytest.raises(MonodistillError, match="metadata is invalid"):
        prepare_card(bad_index)


def test_upload_refuses_an_unset_license_before_any_upload(run_dir: Path, no_hub: list[str]) -> None:
    with pytest.raises(MonodistillError, match="--license"):
        publish_run(run_dir, "someone/tiny-tl")
    assert not no_hub


def test_upload_refuses_without_a_token(run_dir: Path, no_hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(MonodistillError, match="hf auth login"):
        publish_run(run_dir, "someone/tiny-tl", license="apache-2.0")
    assert not no_hub


def test_offline_fails_in_one_line(
    run_dir: Path, no_hub: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["publish", str(run_dir), "--repo-id", "someone/tiny-tl", "--license", "apache-2.0"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(argv) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert not no_hub

    # Online, but the network is down: create_repo's connection error becomes one line too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Failed to resolve 'huggingface.co'\nlong traceback text")

    monkeypatch.setattr(huggingface_hub, "create_repo", unreachable)
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "could not publish" in errors[0] and "huggingface.co" in errors[0]


def test_upload_sends_the_listed_files(run_dir: Path, no_hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[str, Any] = {}

    def create_repo(repo_id: str, **kwargs: Any) -> None:
        sent["create"] = (repo_id, kwargs["private"])

    def upload_folder(*, repo_id: str, folder_path: str, **kwargs: Any) -> None:
        folder = Path(folder_path)
        sent["files"] = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        sent["card"] = (folder / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fakes above are the Hub
    publish_run(run_dir, "someone/tiny-tl", private=True, license="cc-by-4.0")
    assert sent["create"] == ("someone/tiny-tl", True)
    assert {"README.md", "model.safetensors", "monodistill/config.yaml", "results/quality.png"} <= set(sent["files"])
    assert "license: cc-by-4.0" in sent["card"] and "model-index" in sent["card"]


def test_a_bad_repo_id_is_refused(run_dir: Path) -> None:
    with pytest.raises(MonodistillError, match="USER/NAME"):
        publish_run(run_dir, "no-user-part", dry_run=True)


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_student_is_refused_in_one_line(
    run_dir: Path, no_hub: list[str], capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    weights = run_dir / "student" / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        weights.unlink()
    assert main(["publish", str(run_dir), "--repo-id", "someone/tiny-tl", "--dry-run"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "damaged or incomplete" in errors[0] and "model.safetensors" in errors[0]
    assert not no_hub


def test_the_model_manifest_is_checked_and_not_uploaded(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    student = run_dir / "student"
    ckpt.write_manifest(student, ckpt.MODEL_MANIFEST)  # as monodistill saves a student
    sent: list[str] = []

    def upload_folder(*, folder_path: str, **kwargs: Any) -> None:
        sent.extend(str(path.relative_to(folder_path)) for path in Path(folder_path).rglob("*") if path.is_file())

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *args, **kwargs: None)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    publish_run(run_dir, "someone/tiny-tl", license="mit")
    assert "model.safetensors" in sent and not [name for name in sent if ckpt.MODEL_MANIFEST in name]

    (student / "config.json").write_text((student / "config.json").read_text() + " ")  # altered after saving
    with pytest.raises(MonodistillError, match="config.json"):
        publish_run(run_dir, "someone/tiny-tl", dry_run=True)


def test_language_comes_from_the_flag_when_the_run_has_none(
    run_dir: Path, no_hub: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["language"] = None
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    argv = ["publish", str(run_dir), "--repo-id", "someone/tiny-tl", "--dry-run"]
    assert main(argv) == 2
    assert "language is missing" in (error := capsys.readouterr().err) and "--language" in error

    assert main([*argv, "--language", "fil"]) == 0
    assert "card metadata valid" in capsys.readouterr().out
    with pytest.raises(MonodistillError, match="ISO 639"):
        publish_run(run_dir, "someone/tiny-tl", dry_run=True, language="Tagalog")
    assert not no_hub


def test_the_flag_language_goes_into_the_card(run_dir: Path) -> None:
    from monodistill.card import render_card

    card, _ = prepare_card(render_card(run_dir, license="mit", language="fil"))
    assert yaml.safe_load(card.split("---")[1])["language"] == ["fil"] and "the `fil` language" in card


def test_an_unknown_license_is_refused_naming_the_nearest_ids(
    run_dir: Path, no_hub: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["publish", str(run_dir), "--repo-id", "someone/tiny-tl", "--dry-run", "--license"]
    assert main([*argv, "not-a-licence"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "'not-a-licence' is not a Hub licence id" in errors[0] and "other" in errors[0]
    assert main([*argv, "apache2"]) == 2
    assert "apache-2.0" in capsys.readouterr().err
    assert main([*argv, "cc-by-sa-4.0"]) == 0
    card = "---\nlibrary_name: transformers\npipeline_tag: fill-mask\nlanguage: [tl]\nlicense: MIT-ish\n---\nx\n"
    with pytest.raises(MonodistillError, match="licence 'MIT-ish'"):
        prepare_card(card)
    assert not no_hub


def test_a_rewritten_card_keeps_a_checked_student_publishable(run_dir: Path, no_hub: list[str]) -> None:
    from monodistill.card import write_card

    ckpt.write_manifest(run_dir / "student", ckpt.MODEL_MANIFEST, leave_out=("README.md",))  # as a save does
    write_card(run_dir)  # as `monodistill run` does after the evaluation, and `monodistill card`
    assert "Downstream results" in (run_dir / "student" / "README.md").read_text()
    publish_run(run_dir, "someone/tiny-tl", dry_run=True)
    assert not no_hub


@pytest.fixture
def decoder_run(tmp_path: Path, decoder_tokenizers: dict[str, PreTrainedTokenizerFast]) -> Path:
    """A finished causal distillation run: a tiny Llama student saved as distillation saves one, and its record."""
    tokenizer = decoder_tokenizer("llama", decoder_tokenizers)
    teacher = save_decoder("llama", tokenizer, tmp_path / "teacher")
    run = tmp_path / "exp" / "students" / "tiny-clm"
    save_student(run / "student", build_tiny_decoder("llama", tokenizer), tokenizer, "an old card\n")
    config = load_config(
        DistillConfig,
        updates={
            "teacher": {"name_or_path": str(teacher)},
            "data": {"corpus": str(tmp_path / "corpus.txt"), "language": "tl"},
            "student": {"name": "tiny-clm"},
        },
    )
    save_config(config, run / "config.yaml")
    (run / "environment.json").write_text(json.dumps({"train_blocks": 10}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "split": "validation", "mlm_loss": 4.5}) + "\n")
    return run


def test_a_causal_student_publishes_as_a_text_generation_model(
    decoder_run: Path, no_hub: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(decoder_run), "--repo-id", "someone/tiny-clm-tl", "--dry-run"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line and "  " in line}
    assert {"README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= listed
    assert not {"modules.json", "1_Pooling/config.json"} & listed  # no sentence-transformers files for a decoder
    assert not no_hub

    sent: dict[str, Any] = {}

    def upload_folder(*, folder_path: str, **kwargs: Any) -> None:
        folder = Path(folder_path)
        sent["files"] = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        sent["card"] = (folder / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *args, **kwargs: None)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    publish_run(decoder_run, "someone/tiny-clm-tl", license="apache-2.0")
    assert "generation_config.json" in sent["files"] and "monodistill/config.yaml" in sent["files"]
    metadata = yaml.safe_load(sent["card"].split("---")[1])
    assert metadata["pipeline_tag"] == "text-generation" and "causal-lm" in metadata["tags"]
    assert metadata["license"] == "apache-2.0" and "base_model" not in metadata  # a local teacher
    assert 'pipeline("text-generation", model="PATH_OR_REPO")' in sent["card"] and "fill-mask" not in sent["card"]
    assert "| next-token cross-entropy (nats per token) | 4.5000 |" in sent["card"]
