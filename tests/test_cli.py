"""The console script's manners: --version, --help for users, one-line errors, Ctrl-C, overrides."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from monodistill import __version__
from monodistill.cli import main
from monodistill.config import DistillConfig, EvaluateConfig
from monodistill.distill import Interrupted

from .conftest import REPO_ROOT


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The single stderr line of a refused command (no traceback, nothing else)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"monodistill {command}: error: ")
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"monodistill {__version__}\n"


def test_top_level_help_is_written_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Distil small single-language BERT students" in text
    assert "monodistill run --config configs/local-quickstart.yaml" in text  # an example to start from
    assert "exits with 130" in text and "exit status 2" in text
    assert "dispatch" not in text  # the module docstring, meant for developers, once stood here


CLASSIFICATION = (
    "name: t\nkind: classification\ntrain: train.{0}\ntest: test.{0}\ntext_column: text\nlabel_column: label\n"
)


@pytest.mark.parametrize(
    ("extension", "test_file", "extra", "message"),
    [
        # A leading quote once swallowed the lines after it; now the error points at the bad line.
        # (The labels are declared: inferred from one-valued training data the task would be refused.)
        (
            "tsv",
            b'text\tlabel\n"sabi niya\tpos\nok\tpos\nbad\tmaybe\n',
            "labels: [pos, neg]\n",
            "test.tsv:4: label 'maybe' is not",
        ),
        ("csv", b"text,label\nok,pos\n", "lables: [pos, neg]\n", "unknown key 'lables' (did you mean 'labels'?)"),
        ("csv", b"", "", "test.csv: the split is empty"),
        ("csv", b"text,label\ncaf\xe9,pos\n", "", "test.csv is not UTF-8 (byte 0xe9 at offset 14)"),
    ],
)
def test_bad_task_files_are_refused_in_one_line(
    extension: str,
    test_file: bytes,
    extra: str,
    message: str,
    tiny_teacher_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    separator = "\t" if extension == "tsv" else ","
    (tmp_path / f"train.{extension}").write_text(f"text{separator}label\nmaganda{separator}pos\npangit{separator}neg\n")
    (tmp_path / f"test.{extension}").write_bytes(test_file)
    (tmp_path / "task.yaml").write_text(CLASSIFICATION.format(extension) + extra)
    argv = ["evaluate", "--model", str(tiny_teacher_dir), "--task", str(tmp_path / "task.yaml")]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    assert message in one_line_error(capsys, "evaluate")


def test_an_override_typo_in_run_names_the_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = REPO_ROOT / "configs" / "local-quickstart.yaml"
    argv = ["run", "--config", str(config), "--output", str(tmp_path / "run"), "train.max_stepz=3"]
    assert main(argv) == 2
    line = one_line_error(capsys, "run")
    assert "override 'train.max_stepz=3'" in line and "did you mean 'train.max_steps'?" in line
    assert "local-quickstart.yaml" not in line  # the file is fine; blaming it sent users looking there
    assert not (tmp_path / "run").exists()


def test_evaluate_takes_overrides_bare_and_with_the_section_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[EvaluateConfig] = []

    def record(config: EvaluateConfig) -> Path:
        seen.append(config)
        return tmp_path

    monkeypatch.setattr("monodistill.evaluate.run_evaluation", record)
    argv = ["evaluate", "--model", "m", "--task", "t", "--output", str(tmp_path)]
    assert main([*argv, "epochs=1", "evaluate.learning_rate=1e-4", "evaluate.mixed_precision=no"]) == 0
    assert (seen[0].epochs, seen[0].learning_rate, seen[0].mixed_precision) == (1.0, 1e-4, "no")


def test_documented_text_values_are_taken_as_typed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[DistillConfig] = []

    def record(config: DistillConfig, **_: Any) -> Path:
        seen.append(config)
        return tmp_path

    monkeypatch.setattr("monodistill.recipe.run_distillation", record)
    # `no` was read as the boolean False and refused: "must be one of ('no', 'bf16', 'fp16'), got 'False'".
    assert main(["distill", "--output", str(tmp_path), "train.mixed_precision=no"]) == 0
    assert seen[0].train.mixed_precision == "no"


@pytest.mark.parametrize(
    ("received", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (None, 143)],  # None: another rank received the signal
)
def test_a_run_stopped_by_ctrl_c_exits_130_after_saving(
    received: int | None,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def stopped(config: DistillConfig, **_: Any) -> Path:
        # What Distiller.fit raises once the checkpoint of the interrupted step is saved.
        raise Interrupted("stopped by a signal at step 6/10; checkpoint saved in RUN", signal=received)

    monkeypatch.setattr("monodistill.recipe.run_distillation", stopped)
    assert main(["distill", "--output", str(tmp_path)]) == status
    assert "checkpoint saved in RUN" in one_line_error(capsys, "distill")


def test_overrides_may_stand_anywhere_among_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[DistillConfig] = []

    def record(config: DistillConfig, **_: Any) -> Path:
        seen.append(config)
        return tmp_path

    monkeypatch.setattr("monodistill.recipe.run_distillation", record)
    argv = ["distill", "--student", "custom", "student.num_layers=1", "--output", str(tmp_path), "train.batch_size=4"]
    assert main([*argv, "student.hidden_size=8", "student.intermediate_size=8", "student.num_heads=2"]) == 0
    assert seen[0].student.num_layers == 1 and seen[0].train.batch_size == 4 and seen[0].student.hidden_size == 8


def test_other_leftover_arguments_are_still_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["distill", "--output", str(tmp_path), "train.seed=1", "--bogus", "3"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_config_prints_every_section_with_its_fields_defaults_and_docs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    resolved = yaml.safe_load(text)  # the output is the resolved config, as YAML
    assert list(resolved) == [
        "teacher", "vocab", "student", "data", "loss", "train", "adapt", "output_dir", "objective", "teacher_cache",
        "cache",
    ]  # fmt: skip
    assert resolved["teacher"]["name_or_path"] == DistillConfig().teacher.name_or_path
    assert resolved["train"]["eval_interval"] == 200
    # Each field with its one-line doc, the dataclass docstring under it in the source.
    assert "# Optimizer steps between validations; 0 validates only at the end." in text
    assert "# Hub id or local folder of an ``AutoModelForMaskedLM`` checkpoint." in text
    assert "section.field=value" in "".join(text.splitlines()[:3])  # the header says how to set them


def test_config_shows_a_file_and_overrides_with_the_defaults_they_replace(capsys: pytest.CaptureFixture[str]) -> None:
    config = REPO_ROOT / "configs" / "local-quickstart.yaml"
    assert main(["config", "--config", str(config), "train.max_steps=7", "evaluate.epochs=2"]) == 0
    text = capsys.readouterr().out
    resolved = yaml.safe_load(text)
    assert "students" in resolved and "evaluate" in resolved  # a file listing students is a `run` config
    assert resolved["train"]["max_steps"] == 7 and resolved["evaluate"]["epochs"] == 2
    assert resolved["train"]["eval_interval"] == 30  # from the file
    line = next(line for line in text.splitlines() if line.strip().startswith("eval_interval:"))
    assert "default: 200" in line
    assert resolved["students"][0]["hidden_size"] == 128


def test_config_kind_chooses_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--kind", "evaluate", "epochs=1", "evaluate.seeds=3"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["epochs"] == 1 and resolved["seeds"] == 3 and "teacher" not in resolved
    assert main(["config", "--kind", "run"]) == 0
    assert "students" in yaml.safe_load(capsys.readouterr().out)
    assert main(["config", "train.max_stepz=3"]) == 2
    assert "did you mean 'train.max_steps'?" in one_line_error(capsys, "config")


def test_user_facing_lines_are_printed_by_the_main_rank_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under torchrun every rank runs the command: what it prints for the user is printed once, by rank 0,
    and every rank's errors still reach stderr (each says what happened to it)."""

    def printed(rank: str, argv: list[str]) -> tuple[int, str, str]:
        monkeypatch.setenv("RANK", rank)
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = printed("0", ["config"])
    assert code == 0 and "teacher:" in out
    code, out, _ = printed("1", ["config"])
    assert code == 0 and out == ""
    assert printed("1", ["config", "--config", "missing.yaml"])[2].startswith("monodistill config: error:")
    assert "teacher:" in printed("0", ["config"])[1]  # the next command's stdout is the terminal's again
