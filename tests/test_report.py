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

from .report_fixtures import TASKS, TEACHER, make_experiment, read_summary, task_result, write_records, write_summary

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


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """An experiment folder as `monodistill run` leaves it, without the weights (``make_experiment``)."""
    return make_experiment(tmp_path / "experiment")


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
    assert label_models(named) == ["a/tiny", "b/tiny", "tiny"]  # the end of their folders
    same = [Named("a", runs, one, "distillation"), Named("a", runs, runs / "eval", "evaluation")]
    assert label_models(same) == ["a", "a"]  # a student's run and its scores carry one label


def test_task_distilled_rows_are_marked_in_tables_figures_rows_and_the_card(
    experiment: Path, tmp_path: Path, figure_texts: dict[str, set[str]]
) -> None:
    from monodistill.card.metadata import model_index_results
    from monodistill.card.results import evaluation_section

    path = experiment / "evaluate" / "summary.json"
    summary = json.loads(path.read_text())
    source = {"label": "teacher", "model": "shared/models/mmt-mini", "alpha": 0.5, "temperature": 2.0}
    for label, entry in summary["models"].items():
        for result in entry["tasks"].values():
            result["distilled_from"] = source if label == "student" else None
            result["test_samples"] = 100
    hub = {"train_split": "train", "test_split": "test", "test_rows": 100}  # scored on whole Hub splits
    summary["task_sources"] = {task: {"hub": f"someone/{task}", **hub} for task in TASKS}
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


def report_rows(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "results.json").read_text())  # type: ignore[no-any-return]


def model_names(folder: Path) -> list[str]:
    return list(dict.fromkeys(row["model"] for row in report_rows(folder)))


def test_an_evaluation_of_a_student_alone_names_no_teacher(experiment: Path, tmp_path: Path) -> None:
    """`evaluate --model RUN/student --output eval-nli`: the first model of an evaluation is no teacher."""
    models = read_summary(experiment / "evaluate")["models"]
    summary = read_summary(experiment / "evaluate") | {"baseline": "student", "models": {"student": models["student"]}}
    write_summary(tmp_path / "eval-nli", summary)
    write_report([tmp_path / "eval-nli"], tmp_path / "report")
    assert model_names(tmp_path / "report") == ["tiny"]  # its run's name
    assert {row["label"] for row in report_rows(tmp_path / "report")} == {"student"}
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| teacher" not in report and "teacher:" not in report

    # A model that is no run's student, nor an experiment's teacher, keeps the evaluation's own label.
    summary = summary | {"baseline": "mmt-mini", "models": {"mmt-mini": models["teacher"]}}
    write_summary(tmp_path / "eval-other", summary)
    write_report([tmp_path / "eval-other"], tmp_path / "other-report")
    assert model_names(tmp_path / "other-report") == ["mmt-mini"]


def test_the_teacher_is_the_experiments_own_wherever_it_stands(experiment: Path, tmp_path: Path) -> None:
    summary = read_summary(experiment / "evaluate")
    models = summary["models"]
    adapted = {**models["teacher"], "model": str(experiment / "teacher-adapted" / "student")}
    (experiment / "teacher-adapted").mkdir()  # a run folder: the student inside is named by it
    (experiment / "teacher-adapted" / "config.yaml").write_text("student:\n  name: teacher-adapted\n")
    # The teacher last: names come from what each model is, not from where it stands.
    summary["models"] = {"a": models["student"], "b": adapted, "c": models["vocab__teacher"], "d": models["teacher"]}
    summary["baseline"] = "a"
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    assert model_names(tmp_path / "report") == ["tiny", "teacher-adapted", "teacher-trimmed", "teacher"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.count(f"teacher: `{TEACHER}`") == 1  # said once, where the console says mmt-mini


def test_a_plain_evaluation_knows_the_teacher_from_its_students_runs(experiment: Path, tmp_path: Path) -> None:
    """No experiment config above `evaluate --output eval`: the student's run names its teacher."""
    (experiment / "students" / "tiny" / "config.yaml").write_text(
        f"teacher:\n  name_or_path: {TEACHER}\nstudent:\n  name: tiny\n"
    )
    summary = read_summary(experiment / "evaluate")
    models = summary["models"]
    summary = summary | {"baseline": "student", "models": {"student": models["student"], "mmt-mini": models["teacher"]}}
    write_summary(tmp_path / "eval", summary)
    write_report([tmp_path / "eval"], tmp_path / "report")
    assert model_names(tmp_path / "report") == ["tiny", "teacher"]


def table_row(report: str, label: str, header: str) -> str:
    """The row of ``label`` in the first table of ``report`` whose header starts with ``header``."""
    table = report.split(header, 1)[1].split("\n\n", 1)[0]
    return next(line for line in table.splitlines() if line.startswith(f"| {label} |"))


def test_sizes_compare_like_with_like(experiment: Path, tmp_path: Path) -> None:
    """A bf16 teacher file against float32 students: compared at 4 bytes per parameter, dtypes shown; one
    parameter count per model (the encoder with its embeddings), not the fine-tuned classifier's."""
    summary = read_summary(experiment / "evaluate")
    counts = {"teacher": 34_000_000, "vocab__teacher": 8_000_000, "student": 16_000_000}
    for label, entry in summary["models"].items():
        total = counts[label]
        entry["encoder_parameters"] = {"total": total, "embedding": total // 2, "non_embedding": total - total // 2}
        entry["parameters"] = {"total": total + 70_000, "embedding": total // 2, "non_embedding": 1}  # its head too
        entry["weights_dtype"] = "bfloat16" if label == "teacher" else "float32"
        entry["disk_mb"] = (2 if label == "teacher" else 4) * (total + 186_000) / 1e6
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    rows = {row["model"]: row for row in report_rows(tmp_path / "report")}
    assert rows["teacher"]["parameters"] == 34_000_000 and rows["teacher"]["float32_mb"] == pytest.approx(136.0)
    assert rows["teacher"]["weights_dtype"] == "bfloat16" and rows["tiny"]["float32_mb"] == pytest.approx(64.0)
    report = (tmp_path / "report" / "report.md").read_text()
    teacher = table_row(report, "teacher", "| model | parameters")
    assert "34.0M" in teacher and "136" in teacher and "68.4 bfloat16" in teacher
    assert "64.7 float32" in table_row(report, "tiny", "| model | parameters")
    assert "34.1M" not in report  # the classifier's count, head included, is not shown beside it
    assert "the encoder with its embeddings, heads aside" in report


def test_older_summaries_say_which_parameters_they_count(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")  # a summary from before encoder counts
    report = (tmp_path / "report" / "report.md").read_text()
    assert "the fine-tuned classifier" in report and "dtype not recorded" in report


def test_one_seed_shows_no_spread(experiment: Path, tmp_path: Path) -> None:
    summary = read_summary(experiment / "evaluate")
    for entry in summary["models"].values():
        entry["tasks"] = {task: task_result(0.6, 1.0, seeds=1) for task in TASKS}
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "60.00" in table_row(report, "tiny", "| model | hatespeech") and "±" not in report
    assert "n = 1" in report


def test_several_seeds_show_spread_and_n(experiment: Path, tmp_path: Path) -> None:
    write_report([experiment], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "60.00 ± 1.00" in table_row(report, "tiny", "| model | hatespeech") and "n = 2" in report


def test_the_constant_prediction_is_a_row_of_the_quality_table(experiment: Path, tmp_path: Path) -> None:
    summary = read_summary(experiment / "evaluate")
    summary["constant_prediction"] = {task: {"accuracy": 0.5, "label": "0"} for task in TASKS}
    write_summary(experiment / "evaluate", summary)
    write_report([experiment], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| constant prediction (most frequent test label) | 50.00 | 50.00 | 50.00 | 50.00 |" in report


def validation(step: int, share: float, token_id: int) -> dict[str, Any]:
    metrics = {"mlm_loss": 5.0, "kl_to_teacher": 0.5, "teacher_agreement": 0.3, "student_accuracy": 0.2}
    return {"split": "validation", "step": step, **metrics} | {
        "student_top_prediction_share": share,
        "student_top_prediction_id": float(token_id),
    }


def test_a_degenerate_student_is_explained(experiment: Path, tmp_path: Path, tiny_tokenizer: Any) -> None:
    run = experiment / "students" / "tiny"
    tiny_tokenizer.save_pretrained(run / "student")
    period = tiny_tokenizer.convert_tokens_to_ids(".")
    write_records(run, [validation(30, 0.9, period), validation(60, 0.9, period)])
    write_report([experiment], tmp_path / "report")
    distillation = (tmp_path / "report" / "report.md").read_text().split("## Distillation")[1]
    assert f"tiny predicts the token `.` (id {period}) at 90% of masked positions" in distillation
    assert "a degenerate student" in distillation and "smoke-test budget" in distillation
    assert "validation metrics did not change between steps 30 and 60" in distillation

    write_records(run, [validation(30, 0.9, period), validation(60, 0.3, period)])
    write_report([experiment], tmp_path / "healthy")
    assert "a degenerate student" not in (tmp_path / "healthy" / "report.md").read_text()


def test_a_student_whose_mlm_head_is_never_trained_is_not_called_degenerate(
    experiment: Path, tmp_path: Path, tiny_tokenizer: Any
) -> None:
    # TinyBERT's recipe (hidden and attention MSE alone) never trains the MLM head: its fill-mask
    # predictions mean nothing, so one token at most positions says nothing about the student.
    run = experiment / "students" / "tiny"
    tiny_tokenizer.save_pretrained(run / "student")
    period = tiny_tokenizer.convert_tokens_to_ids(".")
    write_records(run, [validation(30, 0.98, period), validation(60, 0.98, period)])
    loss = "loss:\n  alpha_kl: 0\n  alpha_mlm: 0\n  alpha_hidden: 1\n  alpha_attention: 1\n"
    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\n" + loss)
    write_report([experiment], tmp_path / "head-untrained")
    distillation = (tmp_path / "head-untrained" / "report.md").read_text().split("## Distillation")[1]
    assert "degenerate" not in distillation
    assert "masked-LM head is never trained" in distillation
    row = next(line for line in distillation.splitlines() if line.startswith("| tiny |"))
    assert [cell.strip() for cell in row.split("|")[3:-1]] == ["-"] * (row.count("|") - 3)  # all scores of the head

    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\nloss:\n  alpha_kl: 0\n")
    write_report([experiment], tmp_path / "mlm-only")  # the MLM term alone trains the head: the note stays
    assert "a degenerate student" in (tmp_path / "mlm-only" / "report.md").read_text()


def test_a_student_read_from_a_teacher_cache_has_its_validation_kl_said_to_be_the_summarys(
    experiment: Path, tmp_path: Path
) -> None:
    """A cached run's validation KL is read against the cache's validation summary (the top tokens, the rest spread
    evenly), a live run's against the whole distribution: beside each other in one table, they must say so
    (mmt-mini: 0.71-0.73 read so against 0.54-0.56 for the same students scored against the teacher)."""
    run = experiment / "students" / "tiny"
    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\n")
    write_report([experiment], tmp_path / "live")
    assert "teacher cache" not in (tmp_path / "live" / "report.md").read_text()
    (run / "config.yaml").write_text("student:\n  name: tiny\n  preset: tiny\nteacher_cache: runs/cache\n")
    write_report([experiment], tmp_path / "cached")
    distillation = (tmp_path / "cached" / "report.md").read_text().split("## Distillation")[1]
    note = next(line for line in distillation.splitlines() if "teacher cache" in line)
    assert note.startswith("tiny read the teacher from a teacher cache") and "benchmarks/cache_quality.py" in note


def test_html_paragraphs_and_lists_are_read_as_markdown(tmp_path: Path) -> None:
    """A paragraph wrapped over lines is one paragraph; a list is a list; inline code and images as before."""
    from monodistill.report.page import markdown_to_html

    (tmp_path / "figure.png").write_bytes(b"\x89PNG fake")
    text = "A first line\nwrapped on a second.\n\n- one `code`\n- two\n\n![a figure](figure.png)\n\n"
    text += "| a | b |\n|---|---|\n| 1 | 2 |"
    page = markdown_to_html(text, tmp_path)
    assert "<p>A first line\nwrapped on a second.</p>" in page
    assert "<ul>" in page and "<li>one <code>code</code></li>" in page
    assert 'src="data:image/png;base64,' in page and "<table>" in page and "<td>1</td>" in page
