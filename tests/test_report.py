"""`monodistill report`: short model names, the per-task figure grid, and the HTML page in a real browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.figure
import matplotlib.image
import matplotlib.text
import pytest

from monodistill.errors import MonodistillError
from monodistill.report import Named, label_models, write_report

TASKS = ("hatespeech", "nli", "ner", "pos")
CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)
PROBE = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: [...document.images].map((image) => (image.complete ? image.naturalWidth : 0)),
    tables: [...document.querySelectorAll("table")].map((table) => table.querySelectorAll("tbody tr").length),
  });
  document.body.appendChild(probe);
});
</script>
"""
"""Written into a copy of the page: after load, each image's decoded width and each table's row count."""


def task_result(score: float, speedup: float) -> dict[str, Any]:
    seconds, rate = 10.0 / speedup, 100.0 * speedup
    return {
        "main_metric": "accuracy",
        "seeds": [42, 43],
        "mixed_precision": ["no"],
        "metric.accuracy": {"mean": score, "std": 0.01, "values": [score - 0.01, score + 0.01]},
        "finetune_seconds": {"mean": seconds, "std": 0.1, "values": [seconds, seconds]},
        "train_samples_per_second": {"mean": rate, "std": 1.0, "values": [rate, rate]},
        "inference_samples_per_second": {"mean": rate, "std": 1.0, "values": [rate, rate]},
        "finetune_speedup": speedup,
        "inference_speedup": speedup,
        "rank": 1,
    }


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """An experiment folder as `monodistill run` leaves it, without the weights: config, one distilled
    student (metrics, config, model card) and an evaluation of the teacher, trimmed teacher and student."""
    root = tmp_path / "experiment"
    run = root / "students" / "tiny"
    (run / "student").mkdir(parents=True)
    (run / "vocab" / "teacher").mkdir(parents=True)
    (root / "config.yaml").write_text("name: tiny\nteacher:\n  name_or_path: shared/models/mmt-mini\n")
    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\n")
    records = [{"split": "train", "step": step, "loss": 3.0 / step, "kl": 2.0 / step, "mlm": 1.0} for step in (1, 2)]
    records.append(
        {"split": "validation", "step": 2, "mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3}
        | {"student_accuracy": 0.2}
    )
    (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (run / "student" / "README.md").write_text(
        "---\ntags: [monodistill]\n---\n\n# tiny: distilled from mmt-mini\n\n## Model\n\n| | student | teacher |\n"
        "|---|---|---|\n| parameters | 1,000 | 9,000 |\n\n## Distillation\n\n- Loss: KL\n\n"
        "## Downstream results\n\n| task | metric | this model |\n|---|---|---|\n| nli | accuracy | 50.00 |\n"
    )
    models = {
        "teacher": "shared/models/mmt-mini",
        "vocab__teacher": run / "vocab" / "teacher",
        "student": run / "student",
    }
    summary = {
        "baseline": "teacher",
        "tasks": list(TASKS),
        "mixed_precision": ["no"],
        "models": {
            label: {
                "model": str(path),
                "disk_mb": 10.0,
                "parameters": {"total": 9000 // (index + 1), "embedding": 8000 // (index + 1), "non_embedding": 1000},
                "tasks": {task: task_result(0.8 - 0.1 * index, 1.0 + index) for task in TASKS},
            }
            for index, (label, path) in enumerate(models.items())
        },
    }
    (root / "evaluate").mkdir()
    (root / "evaluate" / "summary.json").write_text(json.dumps(summary))
    (root / "evaluate" / "config.yaml").write_text("epochs: 3\n")
    return root


def test_models_are_named_as_readers_know_them(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")
    rows = json.loads((tmp_path / "report" / "results.json").read_text())
    assert list(dict.fromkeys(row["model"] for row in rows)) == ["teacher", "teacher-trimmed", "tiny"]
    assert list(dict.fromkeys(row["label"] for row in rows)) == ["teacher", "vocab__teacher", "student"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| teacher-trimmed |" in report and "vocab__teacher" not in report and "against teacher" in report


def test_quality_is_a_grid_of_one_panel_per_task(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")
    height, width, _ = matplotlib.image.imread(tmp_path / "report" / "quality.png").shape
    assert width <= 1300 and height >= 600  # four tasks: two rows of two panels, not one wide strip


def test_html_report_is_self_contained(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<h2>Model card: tiny: distilled from mmt-mini</h2>" in page and "<h3>Downstream results</h3>" in page
    assert "<h3>Distillation</h3>" not in page  # the card summary only
    assert "Run settings" in page and "name_or_path: shared/models/mmt-mini" in page and "epochs: 3" in page


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `make setup` installs Debian's chromium where apt-get works")
def test_html_report_renders_in_chromium(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    probed = tmp_path / "probed.html"  # a copy beside nothing: the page must need no other file
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [*command, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, f"the page did not finish loading in Chromium: {dom[-500:]}"
    probe = json.loads(found.group(1))
    assert len(probe["images"]) == 3 and all(width > 100 for width in probe["images"]), probe
    assert len(probe["tables"]) >= 4 and all(rows > 0 for rows in probe["tables"]), probe


def test_models_of_several_evaluations_stay_apart(experiment: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(experiment, other)
    write_report([experiment, other], tmp_path / "report")
    rows = json.loads((tmp_path / "report" / "results.json").read_text())
    names = list(dict.fromkeys(row["model"] for row in rows))
    assert names[:2] == ["experiment/teacher", "experiment/teacher-trimmed"] and "other/tiny" in names
    assert len(names) == 6


@pytest.fixture
def figure_texts(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Every text each saved figure draws (titles, tick labels, legends), by file name."""
    texts: dict[str, set[str]] = {}
    save = matplotlib.figure.Figure.savefig

    def savefig(figure: Any, path: Any, **kwargs: Any) -> None:
        save(figure, path, **kwargs)  # drawing fills in the tick labels
        texts[Path(path).name] = {text.get_text() for text in figure.findobj(matplotlib.text.Text)}

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return texts


def test_students_that_share_a_name_go_by_one_label_per_run(
    experiment: Path, tmp_path: Path, figure_texts: dict[str, set[str]]
) -> None:
    runs = tmp_path / "runs"
    for name in ("c8ref", "c13b"):  # each experiment's student is called `student`
        root = shutil.copytree(experiment, runs / name)
        (root / "students" / "tiny").rename(root / "students" / "student")
        (root / "students" / "student" / "config.yaml").write_text("student:\n  preset: tiny\n")
        summary = json.loads((root / "evaluate" / "summary.json").read_text())
        for entry in summary["models"].values():
            entry["model"] = entry["model"].replace(str(experiment), str(root)).replace("/tiny/", "/student/")
        (root / "evaluate" / "summary.json").write_text(json.dumps(summary))
    write_report([runs / "c8ref", runs / "c13b"], tmp_path / "report")
    expected = {"c8ref/student", "c13b/student"}

    report = (tmp_path / "report" / "report.md").read_text()
    distillation = report.split("## Distillation")[1]
    assert {line.split("|")[1].strip() for line in distillation.splitlines() if line.startswith("| c")} == expected
    rows = json.loads((tmp_path / "report" / "results.json").read_text())
    assert expected <= {row["model"] for row in rows}
    with open(tmp_path / "report" / "results.csv") as handle:
        assert expected <= {row["model"] for row in csv.DictReader(handle)}
    for figure in ("distillation.png", "quality.png", "cost.png"):
        assert expected <= figure_texts[figure], figure
        assert not {"student", "students/student"} & figure_texts[figure], figure
    page = (tmp_path / "report" / "report.html").read_text()
    assert all(f"<td>{label}</td>" in page for label in expected)
    assert page.count("<h2>Model card: ") == 2  # one card summary per student, none lost to a shared name


def test_a_folder_without_runs_is_named_plainly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonodistillError, match="no distillation runs") as error:
        write_report([tmp_path / "empty"], tmp_path / "report")
    assert str(tmp_path / "empty") in str(error.value) and "PosixPath" not in str(error.value)


def test_labels_tell_apart_runs_that_share_a_name_in_one_experiment(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    one, two = runs / "a", runs / "b"  # two `distill --output runs/X` runs, both of a student named tiny
    named = [Named("tiny", runs, one, "distillation"), Named("tiny", runs, two, "distillation")]
    named.append(Named("tiny", runs, runs / "eval", "evaluation"))  # another table: no clash with the runs
    assert label_models(named) == [f"{one}/tiny", f"{two}/tiny", "tiny"]
    same = [Named("a", runs, one, "distillation"), Named("a", runs, runs / "eval", "evaluation")]
    assert label_models(same) == ["a", "a"]  # a student's run and its scores carry one label


def test_task_distilled_rows_are_marked_in_tables_figures_rows_and_the_card(
    experiment: Path, tmp_path: Path, figure_texts: dict[str, set[str]]
) -> None:
    from monodistill.card import evaluation_section, model_index_results

    path = experiment / "evaluate" / "summary.json"
    summary = json.loads(path.read_text())
    source = {"label": "teacher", "model": "shared/models/mmt-mini", "alpha": 0.5, "temperature": 2.0}
    for label, entry in summary["models"].items():
        for result in entry["tasks"].values():
            result["distilled_from"] = source if label == "student" else None
    path.write_text(json.dumps(summary))
    write_report([experiment], tmp_path / "report")

    report = (tmp_path / "report" / "report.md").read_text()
    assert "| tiny (task KD from teacher) |" in report and "| teacher-trimmed |" in report
    assert "Ranks and p-values compare both kinds in one ranking." in report
    assert "leaves out its teacher's logit pass" in report
    with open(tmp_path / "report" / "results.csv") as handle:
        marks = {row["model"]: row["distilled_from"] for row in csv.DictReader(handle)}
    assert marks == {"teacher": "", "teacher-trimmed": "", "tiny": "teacher"}
    assert "tiny (task KD)" in figure_texts["quality.png"] and "teacher (task KD)" not in figure_texts["quality.png"]

    student = experiment / "students" / "tiny" / "student"
    section = evaluation_section(summary, student)
    assert "fine-tuned with task-stage distillation from `shared/models/mmt-mini`" in section
    assert section.count("(task KD)") == len(TASKS) + 1  # every row, and the sentence naming the mark
    names = {metric["name"] for result in model_index_results(summary, student, {}) for metric in result["metrics"]}
    assert names == {"accuracy (mean, fine-tuned with task KD from teacher)"}
    plain = evaluation_section(summary, experiment / "students" / "tiny" / "vocab" / "teacher")
    assert "task KD" not in plain
