"""The ``monodistill`` console script: parse, load config, dispatch. No ML logic lives here.

Each subcommand is a plain typed function that tests call directly; ``main`` only maps argv onto it
and turns a ``MonodistillError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import monodistill
from monodistill import __version__, progress, ranks, runfolder
from monodistill.config import DistillConfig, EvaluateConfig, ExperimentConfig, lists_students, load_config
from monodistill.errors import Interrupted, MonodistillError, Stopped, command_to_resume, record_command

DESCRIPTION = """\
Distil small single-language BERT students out of multilingual masked-LM
teachers (mBERT, XLM-R, mDeBERTa), fine-tune students and teachers on
target-language tasks, and report their quality, size and speed."""

EPILOG = """\
examples:
  monodistill run --config configs/local-quickstart.yaml --output runs/quickstart
  monodistill adapt --teacher bert-base-multilingual-cased --corpus corpus.txt --output runs/adapted
  monodistill distill --teacher bert-base-multilingual-cased --corpus corpus.txt \\
      --student dbert-tiny --output runs/tiny
  monodistill evaluate --model bert-base-multilingual-cased --model runs/tiny/student \\
      --task newsph-nli --output runs/eval
  monodistill publish runs/tiny --repo-id USER/NAME --license apache-2.0 --dry-run
  monodistill export runs/tiny/student --output runs/tiny/onnx --quantize int8
  monodistill config --config configs/local-quickstart.yaml   every setting, its default and its doc
  monodistill inspect --teacher ../shared/models/mmt-mini --corpus ../shared/data/tl/corpus.txt
  monodistill COMMAND --help        the flags of one command

Settings: built-in defaults, then a YAML file (--config), then flags, then
section.field=value overrides (evaluate takes field=value or evaluate.field=value).
Bad input is refused before anything trains, in one line on stderr (exit status 2).
Progress shows as bars on a terminal and as a plain line every 30 s in a log; the libraries'
own bars stay off unless --verbose (or MONODISTILL_VERBOSE=1).
Ctrl-C saves a checkpoint and exits with 130 (SIGTERM: 143); the same command resumes the run
(distill: add --resume)."""


def distill(
    *,
    teacher: str | None = None,
    corpus: str | None = None,
    student: str | None = None,
    output: str | None = None,
    config: str | None = None,
    max_steps: int | None = None,
    save_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: list[str] | None = None,
) -> Path:
    """Distil a student from a teacher on a corpus; returns the folder holding the saved student.

    A config listing several ``students`` (as ``run`` takes) distils them all, compatible ones with
    one teacher pass, each into ``OUTPUT/students/NAME``; returns ``OUTPUT/students``.
    """
    updates: dict[str, Any] = {
        "teacher": {"name_or_path": teacher},
        "data": {"corpus": corpus},
        "train": {"max_steps": max_steps, "save_interval": save_steps},
        "output_dir": output,
    }
    if lists_students(config):
        if student is not None:
            raise MonodistillError(f"--student {student}: {config} lists its students; give one or the other")
        sweep = load_config(ExperimentConfig, config, overrides, updates)
        _check_output_folder(sweep.output_dir, runfolder.EXPERIMENT, resume)
        from monodistill.pipeline import distil_experiment

        distil_experiment(sweep, resume=resume, overwrite=overwrite)
        return Path(sweep.output_dir or ".") / "students"

    cfg = load_config(DistillConfig, config, overrides, {**updates, "student": {"preset": student}})
    cfg.vocab.check_given_path()
    _check_output_folder(cfg.output_dir, runfolder.DISTILLATION_RUN, resume)
    from monodistill.recipe import run_distillation

    return run_distillation(cfg, resume=resume, overwrite=overwrite)


def _check_output_folder(output: str | None, kind: str, resume: bool = False) -> None:
    """Refuse at once, before the stage's libraries are imported, an output folder the command cannot write:
    another process's, another command's (``runfolder.check_free``), or with ``--resume`` one that does not
    exist (a typo, not a fresh start)."""
    if not output:
        return
    if resume and not Path(output).exists():
        raise MonodistillError(
            f"nothing to resume in {output}: the folder does not exist; check the path, or leave out --resume "
            "to start a new run there"
        )
    runfolder.check_free(Path(output), kind)


def adapt(
    *,
    teacher: str | None = None,
    corpus: str | None = None,
    output: str | None = None,
    config: str | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: list[str] | None = None,
) -> Path:
    """Adapt the teacher to the corpus language by continued masked-LM training; returns the adapted teacher."""
    updates = {
        "teacher": {"name_or_path": teacher},
        "data": {"corpus": corpus},
        "adapt": {"max_steps": max_steps},
        "output_dir": output,
    }
    cfg = load_config(DistillConfig, config, overrides, updates)
    if not cfg.output_dir:
        raise MonodistillError("adapt needs --output DIR")
    _check_output_folder(cfg.output_dir, runfolder.DISTILLATION_RUN, resume)
    from monodistill.adapt import adapt_teacher

    return adapt_teacher(cfg, Path(cfg.output_dir), resume=resume, overwrite=overwrite)


def vocab(
    *,
    teacher: str | None = None,
    corpus: str | None = None,
    output: str | None = None,
    max_size: int | None = None,
    coverage: float | None = None,
    min_count: int | None = None,
    export_teacher: bool = False,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Trim the teacher's vocabulary to the corpus language; returns the trimmed-vocabulary folder."""
    from monodistill.vocab import run_vocab

    updates = {
        "teacher": {"name_or_path": teacher},
        "data": {"corpus": corpus},
        "vocab": {
            "enabled": True,
            "max_size": max_size,
            "coverage": coverage,
            "min_count": min_count,
            "export_teacher": export_teacher or None,
        },
        "output_dir": output,
    }
    cfg = load_config(DistillConfig, config, overrides, updates)
    if cfg.output_dir is None:
        raise MonodistillError("vocab needs --output DIR")
    return run_vocab(cfg, Path(cfg.output_dir))


def evaluate(
    *,
    models: list[str] | None = None,
    tasks: list[str] | None = None,
    output: str | None = None,
    seeds: int | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Fine-tune and evaluate models on tasks, measuring cost; returns the results folder."""
    updates = {"models": models or None, "tasks": tasks or None, "seeds": seeds, "output_dir": output}
    # `run` spells these settings evaluate.FIELD; the same spelling works here.
    overrides = [item.removeprefix("evaluate.") for item in overrides or []]
    cfg = load_config(EvaluateConfig, config, overrides, updates)
    _check_output_folder(cfg.output_dir, runfolder.EVALUATION)
    from monodistill.evaluate import run_evaluation

    return run_evaluation(cfg)


def run(
    *, config: str | None = None, output: str | None = None, overwrite: bool = False, overrides: list[str] | None = None
) -> Path:
    """The whole experiment: vocab (optional) -> distil students -> evaluate -> report; returns the report."""
    if config is None:
        raise MonodistillError("run needs --config FILE (see configs/ for the paper's experiments)")
    cfg = load_config(ExperimentConfig, config, overrides, {"output_dir": output})
    _check_output_folder(cfg.output_dir, runfolder.EXPERIMENT)
    from monodistill.pipeline import run_experiment

    return run_experiment(cfg, overwrite=overwrite, started=monodistill.STARTED)  # start-up counts: it is waited for


def report(*, runs: list[str], output: str) -> Path:
    """Tables, CSV/JSON and PNG plots from experiment, distillation or evaluation folders; returns report.md."""
    from monodistill.report import write_report

    return write_report([Path(run_dir) for run_dir in runs], Path(output))


def card(*, run: str, results: str | None = None) -> Path:
    """(Re)write the model card of a distilled student; returns its path."""
    from monodistill.card import write_card

    return write_card(Path(run), Path(results) if results else None)


def publish(
    *,
    run: str,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    license: str | None = None,
    language: str | None = None,
) -> Path:
    """Upload a distilled student, its card, results and figures to the Hugging Face Hub; returns the run folder.

    ``dry_run`` lists the files and sizes and validates the card's metadata, uploading nothing;
    ``language`` stands in for the run's ``data.language`` in the card.
    """
    from monodistill.publish import publish_run

    return publish_run(Path(run), repo_id, private=private, dry_run=dry_run, license=license, language=language)


def export(*, model: str, output: str, quantize: str | None = None, overwrite: bool = False) -> Path:
    """Export a student or a fine-tuned classifier to ONNX (optionally int8); returns the model file.

    ``overwrite`` replaces an earlier export in ``output`` as a whole.
    """
    from monodistill.export import export_model

    return export_model(Path(model), Path(output), quantize, overwrite=overwrite)


def inspect(*, teachers: list[str] | None = None, corpus: str | None = None, output: str, sample_blocks: int) -> Path:
    """Measure each teacher on the corpus (segmentation, trimming, held-out masked-token accuracy); inspect.json."""
    from monodistill.inspection import run_inspect

    if corpus is None:
        raise MonodistillError("inspect needs --corpus PATH_OR_HUB_ID")
    return run_inspect(teachers or [], corpus, Path(output), sample_blocks)


CONFIG_KINDS = {"distill": DistillConfig, "run": ExperimentConfig, "evaluate": EvaluateConfig}
"""What ``monodistill config --kind`` chooses from: the config each command reads."""


def show_config(*, config: str | None = None, kind: str | None = None, overrides: list[str] | None = None) -> str:
    """The resolved config as YAML, every field under its one-line doc and, where it differs, with its default.

    ``kind`` picks the command whose config it is (distill, run, evaluate); by default distill, or run
    for a file that lists ``students``.
    """
    from monodistill.config.docs import describe_config

    kind = kind or ("run" if lists_students(config) else "distill")
    if kind == "evaluate":  # as `evaluate` takes them: field=value or evaluate.field=value
        overrides = [item.removeprefix("evaluate.") for item in overrides or []]
    return describe_config(load_config(CONFIG_KINDS[kind], config, overrides), kind, config)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="monodistill",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbose = (
        "keep the libraries' own progress bars (transformers, datasets, huggingface_hub); or MONODISTILL_VERBOSE=1"
    )
    parser.add_argument("--verbose", action="store_true", help=verbose)
    # Also after the command (`monodistill run --verbose`); SUPPRESS keeps a command from resetting the flag.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
    subparsers = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=help, parents=[common])

    p = command("distill", help="distil a single-language student from a multilingual teacher")
    p.add_argument("--teacher", help="Hub id or local folder of the masked-LM teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--student", help="preset: dbert-base, dbert-tiny or custom")
    p.add_argument("--output", help="run folder")
    p.add_argument("--config", help="YAML config file; one listing several students distils them all")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--save-steps", type=int, help="checkpoint every N optimizer steps")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last good checkpoint")
    group.add_argument("--overwrite", action="store_true", help="clear a previous run out of --output first")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("adapt", help="adapt the teacher to the target language (continued masked-LM training)")
    p.add_argument("--teacher", help="Hub id or local folder of the masked-LM teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", help="run folder; the adapted teacher goes to OUTPUT/student")
    p.add_argument("--config", help="YAML config file (adapt.*, data.*, train.batch_size, ...)")
    p.add_argument("--max-steps", type=int, help="optimizer steps of adaptation (default adapt.epochs)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last good checkpoint")
    group.add_argument("--overwrite", action="store_true", help="clear a previous run out of --output first")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("vocab", help="trim the teacher's vocabulary to the target language")
    p.add_argument("--teacher", help="Hub id or local folder of the teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", help="folder for the trimmed tokenizer and id map")
    p.add_argument("--max-size", type=int, help="keep at most N tokens")
    p.add_argument("--coverage", type=float, help="keep tokens until they cover this fraction of the corpus")
    p.add_argument("--min-count", type=int, help="drop tokens seen fewer than N times")
    p.add_argument("--export-teacher", action="store_true", help="also write the teacher with only kept rows")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("evaluate", help="fine-tune and evaluate models on target-language tasks")
    p.add_argument("--model", dest="models", action="append", help="Hub id or folder; repeat; first is baseline")
    p.add_argument("--task", dest="tasks", action="append", help="task name or task YAML; repeat")
    p.add_argument("--output", help="results folder")
    p.add_argument("--seeds", type=int, help="fine-tuning runs per model and task")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="[evaluate.]field=value")

    p = command("run", help="the whole experiment: vocab, distil, evaluate, report (resumable)")
    p.add_argument("--config", help="experiment YAML (configs/paper-*.yaml, configs/local-*.yaml)")
    p.add_argument("--output", help="experiment folder")
    p.add_argument("--overwrite", action="store_true", help="clear a previous experiment out of --output first")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("report", help="tables and plots from run folders")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--output", required=True, help="folder for report.md, results.csv/json and PNGs")

    p = command("card", help="write the model card of a distilled student")
    p.add_argument("run", metavar="RUN_DIR", help="a distillation run folder (holding student/)")
    p.add_argument("--results", help="an evaluation summary.json to take downstream results from")

    p = command("publish", help="upload a student, its card and results to the Hugging Face Hub")
    p.add_argument("run", metavar="RUN_DIR", help="a distillation run folder (holding student/)")
    p.add_argument("--repo-id", required=True, help="USER/NAME of the Hub model repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="list the files and validate the card; upload nothing")
    p.add_argument("--license", help="Hub licence id for the card (e.g. apache-2.0); the upload needs one")
    p.add_argument("--language", help="ISO 639 code for the card (e.g. tl, fil) when the run has no data.language")

    p = command("export", help="export a student or fine-tuned classifier to ONNX for CPU inference")
    p.add_argument("model", metavar="MODEL_DIR", help="student/ folder, or a model kept by evaluate.save_models")
    p.add_argument("--output", required=True, help="folder for model.onnx, the tokenizer and export.json")
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8, ONNX Runtime)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output, all of it")

    p = command(
        "inspect", help="compare teachers on the target language: segmentation, trimming, masked-token accuracy"
    )
    p.add_argument("--teacher", dest="teachers", action="append", help="Hub id or local folder; repeat to compare")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", default="runs/inspect", help="folder for inspect.json (default: runs/inspect)")
    p.add_argument("--sample-blocks", type=int, default=1000, help="held-out 128-token blocks to score (default 1000)")

    p = command("config", help="print the resolved config: every field with its value, default and doc")
    p.add_argument("--config", help="YAML config file to resolve")
    p.add_argument("--kind", choices=list(CONFIG_KINDS), help="whose config: distill (default), run or evaluate")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script.

    Exit status: 0 on success, 2 for bad input, 128 + the signal number after SIGINT (130) or SIGTERM
    (143), as a shell reports them, once what was finished is saved.
    """
    argv = sys.argv[1:] if argv is None else argv
    record_command(argv)
    args = vars(parse_arguments(build_parser(), argv))
    command = args.pop("command")
    verbose = progress.is_verbose(args.pop("verbose", False))
    handlers: dict[str, Callable[..., Path | str]] = {
        "distill": distill,
        "adapt": adapt,
        "vocab": vocab,
        "evaluate": evaluate,
        "run": run,
        "report": report,
        "card": card,
        "publish": publish,
        "export": export,
        "config": show_config,
        "inspect": inspect,
    }
    # Every command stops on SIGTERM as on Ctrl-C, also when started in the background (where a shell
    # leaves SIGINT ignored); the distillation loop puts its own handlers in place while it trains.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # A busy folder, or another command's, is refused before the libraries load (seconds): at once.
        kind = _output_kind(command, args)
        if kind is not None and args.get("output"):
            runfolder.check_free(Path(args["output"]), kind)
        with progress.library_output(verbose), ranks.main_rank_output():
            result = handlers[command](**args)
    except MonodistillError as error:
        print(f"monodistill {command}: error: {error}", file=sys.stderr)
        if isinstance(error, Interrupted):
            return 128 + (error.signal or signal.SIGTERM)
        return 2
    except Stopped as stop:
        print(
            f"monodistill {command}: stopped by signal {stop.signal} ({signal.Signals(stop.signal).name}); "
            f"what was finished is saved: run `{command_to_resume()}` to continue",
            file=sys.stderr,
        )
        return 128 + stop.signal
    except KeyboardInterrupt:
        print(f"monodistill {command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close_process_group()
    with ranks.main_rank_output():
        print(result)
    return 0


def _output_kind(command: str, args: dict[str, Any]) -> str | None:
    """The kind of folder (``runfolder.FOLDER_KINDS``) a command writes into its ``--output``; None for the others."""
    if command == "distill":
        return runfolder.EXPERIMENT if lists_students(args.get("config")) else runfolder.DISTILLATION_RUN
    kinds = {"adapt": runfolder.DISTILLATION_RUN, "run": runfolder.EXPERIMENT, "evaluate": runfolder.EVALUATION}
    return kinds.get(command)


OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
"""A ``section.field=value`` override (or ``field=value`` for evaluate)."""


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argv parsed with ``section.field=value`` overrides anywhere among the options, as users write them.

    argparse takes one run of positionals only; overrides it leaves over are collected here, and
    anything else left over is refused as argparse refuses it.
    """
    args, extras = parser.parse_known_args(argv)
    unknown = [item for item in extras if not OVERRIDE.match(item)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extras:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extras)} ({args.command} takes no field=value settings)")
        args.overrides = [*(args.overrides or []), *extras]
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _close_process_group() -> None:
    """Under torchrun/accelerate launch, leave the process group cleanly (whatever the outcome)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
