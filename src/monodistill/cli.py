"""The ``monodistill`` console script: parse, load config, dispatch. No ML logic lives here.

Each subcommand is a plain typed function that tests call directly; ``main`` only maps argv onto it
and turns a ``MonodistillError`` into one line on stderr and exit status 2. The flags of every subcommand
are built in ``cli_parser.py``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import monodistill
from monodistill import progress, ranks, runfolder
from monodistill.cli_parser import CONFIG_KINDS, build_parser, parse_arguments
from monodistill.config import DistillConfig, EvaluateConfig, ExperimentConfig, lists_students, load_config
from monodistill.errors import Interrupted, MonodistillError, Stopped, command_to_resume, record_command


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


def cache_teacher(
    *,
    teacher: str | None = None,
    corpus: str | None = None,
    vocab: str | None = None,
    output: str | None = None,
    method: str | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Run the teacher once over the corpus and cache a sparse summary of its outputs; returns the cache folder.

    A ``run`` config (one listing ``students``) gives its shared settings: the cache its students read with
    ``teacher_cache`` (those of a trimmed vocabulary with ``--vocab``).
    """
    updates: dict[str, Any] = {
        "teacher": {"name_or_path": teacher},
        "data": {"corpus": corpus},
        "cache": {"method": method},
    }
    from monodistill.teacher_cache.stage import cache_teacher as build

    if lists_students(config):
        from monodistill.config import StudentConfig
        from monodistill.pipeline import student_config

        experiment = load_config(ExperimentConfig, config, overrides, updates)
        cfg = student_config(experiment, StudentConfig(name="teacher-cache"), Path(vocab) if vocab else None)
        return build(replace(cfg, output_dir=output, vocab=replace(cfg.vocab, path=vocab) if vocab else cfg.vocab))
    updates |= {"vocab": {"path": vocab}, "output_dir": output}
    cfg = load_config(DistillConfig, config, overrides, updates)

    return build(cfg)


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
        "cache-teacher": cache_teacher,
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


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _close_process_group() -> None:
    """Under torchrun/accelerate launch, leave the process group cleanly (whatever the outcome)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
