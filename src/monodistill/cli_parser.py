"""The ``monodistill`` command line: every subcommand's flags, grouped as the pipeline runs, and argv
parsed with ``section.field=value`` overrides anywhere among them (``cli.py`` dispatches what it parses).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from monodistill import __version__
from monodistill.config import DistillConfig, EvaluateConfig, ExperimentConfig

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
  monodistill cache-teacher --config configs/local-quickstart.yaml --output runs/teacher-cache cache.method=sample
  monodistill inspect --teacher ../shared/models/mmt-mini --corpus ../shared/data/tl/corpus.txt
  monodistill COMMAND --help        the flags of one command

Settings: built-in defaults, then a YAML file (--config), then flags, then
section.field=value overrides (evaluate takes field=value or evaluate.field=value).
Bad input is refused before anything trains, in one line on stderr (exit status 2).
Progress shows as bars on a terminal and as a plain line every 30 s in a log; the libraries'
own bars stay off unless --verbose (or MONODISTILL_VERBOSE=1).
Ctrl-C saves a checkpoint and exits with 130 (SIGTERM: 143); the same command resumes the run
(distill: add --resume)."""


CONFIG_KINDS = {"distill": DistillConfig, "run": ExperimentConfig, "evaluate": EvaluateConfig}
"""What ``monodistill config --kind`` chooses from: the config each command reads."""


AddCommand = Callable[[str, str], argparse.ArgumentParser]
"""Adds a subcommand (name, help) with the flags every command takes; returns its parser."""


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

    # In the order `monodistill --help` lists them: the pipeline's stages, then what serves them.
    add_training_commands(command)
    add_evaluation_commands(command)
    add_model_commands(command)
    add_inspection_commands(command)
    return parser


def add_training_commands(command: AddCommand) -> None:
    """The commands that make students: distil, adapt the teacher, trim the vocabulary."""
    p = command("distill", "distil a single-language student from a multilingual teacher")
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

    p = command("adapt", "adapt the teacher to the target language (continued masked-LM training)")
    p.add_argument("--teacher", help="Hub id or local folder of the masked-LM teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", help="run folder; the adapted teacher goes to OUTPUT/student")
    p.add_argument("--config", help="YAML config file (adapt.*, data.*, train.batch_size, ...)")
    p.add_argument("--max-steps", type=int, help="optimizer steps of adaptation (default adapt.epochs)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last good checkpoint")
    group.add_argument("--overwrite", action="store_true", help="clear a previous run out of --output first")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("vocab", "trim the teacher's vocabulary to the target language")
    p.add_argument("--teacher", help="Hub id or local folder of the teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", help="folder for the trimmed tokenizer and id map")
    p.add_argument("--max-size", type=int, help="keep at most N tokens")
    p.add_argument("--coverage", type=float, help="keep tokens until they cover this fraction of the corpus")
    p.add_argument("--min-count", type=int, help="drop tokens seen fewer than N times")
    p.add_argument("--export-teacher", action="store_true", help="also write the teacher with only kept rows")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("cache-teacher", "run the teacher once and cache a sparse summary of its outputs for runs to read")
    p.add_argument("--teacher", help="Hub id or local folder of the teacher")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--vocab", help="a trimmed vocabulary folder (`monodistill vocab`) the students will use")
    p.add_argument("--output", help="the cache folder (a run reads it with teacher_cache=DIR)")
    p.add_argument("--method", choices=["sample", "topk"], help="sample (unbiased, the default) or topk")
    p.add_argument("--config", help="YAML config file: the run's data.*, loss.temperature, train.* and cache.*")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")


def add_evaluation_commands(command: AddCommand) -> None:
    """The commands that measure them: evaluate, the whole experiment, and its report."""
    p = command("evaluate", "fine-tune and evaluate models on target-language tasks")
    p.add_argument("--model", dest="models", action="append", help="Hub id or folder; repeat; first is baseline")
    p.add_argument("--task", dest="tasks", action="append", help="task name or task YAML; repeat")
    p.add_argument("--output", help="results folder")
    p.add_argument("--seeds", type=int, help="fine-tuning runs per model and task")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="[evaluate.]field=value")

    p = command("run", "the whole experiment: vocab, distil, evaluate, report (resumable)")
    p.add_argument("--config", help="experiment YAML (configs/paper-*.yaml, configs/local-*.yaml)")
    p.add_argument("--output", help="experiment folder")
    p.add_argument("--overwrite", action="store_true", help="clear a previous experiment out of --output first")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")

    p = command("report", "tables and plots from run folders")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--output", required=True, help="folder for report.md, results.csv/json and PNGs")


def add_model_commands(command: AddCommand) -> None:
    """The commands that ship a student: its model card, the Hub upload, ONNX export."""
    p = command("card", "write the model card of a distilled student")
    p.add_argument("run", metavar="RUN_DIR", help="a distillation run folder (holding student/)")
    p.add_argument("--results", help="an evaluation summary.json to take downstream results from")

    p = command("publish", "upload a student, its card and results to the Hugging Face Hub")
    p.add_argument("run", metavar="RUN_DIR", help="a distillation run folder (holding student/)")
    p.add_argument("--repo-id", required=True, help="USER/NAME of the Hub model repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="list the files and validate the card; upload nothing")
    p.add_argument("--license", help="Hub licence id for the card (e.g. apache-2.0); the upload needs one")
    p.add_argument("--language", help="ISO 639 code for the card (e.g. tl, fil) when the run has no data.language")

    p = command("export", "export a student or fine-tuned classifier to ONNX for CPU inference")
    p.add_argument("model", metavar="MODEL_DIR", help="student/ folder, or a model kept by evaluate.save_models")
    p.add_argument("--output", required=True, help="folder for model.onnx, the tokenizer and export.json")
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8, ONNX Runtime)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output, all of it")


def add_inspection_commands(command: AddCommand) -> None:
    """The commands that look before training: teachers on the corpus, and the resolved config."""
    p = command("inspect", "compare teachers on the target language: segmentation, trimming, masked-token accuracy")
    p.add_argument("--teacher", dest="teachers", action="append", help="Hub id or local folder; repeat to compare")
    p.add_argument("--corpus", help="target-language corpus: local file/folder or Hub dataset id")
    p.add_argument("--output", default="runs/inspect", help="folder for inspect.json (default: runs/inspect)")
    p.add_argument("--sample-blocks", type=int, default=1000, help="held-out 128-token blocks to score (default 1000)")

    p = command("config", "print the resolved config: every field with its value, default and doc")
    p.add_argument("--config", help="YAML config file to resolve")
    p.add_argument("--kind", choices=list(CONFIG_KINDS), help="whose config: distill (default), run or evaluate")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")


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
