"""CPU inference: sentences/s and accuracy of the teacher, a student in PyTorch, ONNX fp32 and ONNX int8.

Teacher and student are fine-tuned on Hatespeech Filipino from ../shared with identical, short settings
(``monodistill evaluate`` with ``save_models=true``); the student's classifier is exported with
``monodistill export --quantize int8``. All four are then timed on the same real test texts, tokenised
beforehand (tokenisation is the same for all four and is left out of the timing): batch 1 runs texts one
by one, unpadded; batch 32 pads each batch to its longest text; each figure is the best of 3 passes.
Accuracy is measured by the same code on the same test rows for all four, so the int8 model's accuracy
is measured, not assumed. The last line is ``ratio: X.XX``: the student int8's sentences/s over the
teacher's in PyTorch, at batch 1.

    python benchmarks/inference.py --student runs/local-mmt-mini/student
    monodistill distill --config configs/local-mmt-mini.yaml --output runs/local-mmt-mini  # a student
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from monodistill.config import EvaluateConfig
from monodistill.evaluate import run_evaluation
from monodistill.evaluate.harness import SAVED_MODEL_DIR
from monodistill.evaluate.results import result_folder
from monodistill.evaluate.splits import subset
from monodistill.evaluate.tasks import load_task
from monodistill.export import export_model, run_session
from monodistill.labels import evaluation_labels

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MONODISTILL_SHARED", ROOT.parent / "shared"))
TASK = ROOT / "configs" / "tasks" / "hatespeech-filipino-local.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(SHARED / "models" / "mmt-mini"))
    parser.add_argument("--student", required=True, help="a student/ folder of a distillation run")
    parser.add_argument("--output", default="runs/bench-inference", help="evaluation and export folder")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch1-texts", type=int, default=200, help="texts timed one by one")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per model; the best is kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def batches(encoded: list[dict[str, list[int]]], size: int, pad_id: int) -> list[dict[str, np.ndarray]]:
    """Pre-tokenised texts padded per batch to the longest, as int64 arrays."""
    out = []
    for start in range(0, len(encoded), size):
        chunk = encoded[start : start + size]
        length = max(len(row["input_ids"]) for row in chunk)
        arrays = {}
        for name in chunk[0]:
            fill = pad_id if name == "input_ids" else 0
            arrays[name] = np.array([row[name] + [fill] * (length - len(row[name])) for row in chunk], dtype=np.int64)
        out.append(arrays)
    return out


def measure(
    predict: Callable[[dict[str, np.ndarray]], np.ndarray], one: list[Any], many: list[Any], repeats: int
) -> dict[str, Any]:
    """Sentences/s at batch 1 and at batch 32 (best of ``repeats`` passes), and the batch-32 predictions.

    Best of several passes, as ``timeit`` advises: on a shared machine the slow passes measure the
    other work, not the model.
    """
    predict(one[0])  # warm-up: first-call allocations and graph optimisation
    batch1, batch32 = 0.0, 0.0
    rows = sum(len(batch["input_ids"]) for batch in many)
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in one:
            predict(batch)
        batch1 = max(batch1, len(one) / (time.perf_counter() - start))
        start = time.perf_counter()
        logits = [predict(batch) for batch in many]
        batch32 = max(batch32, rows / (time.perf_counter() - start))
    return {"batch1": batch1, "batch32": batch32, "predictions": np.concatenate(logits).argmax(-1)}


def torch_predictor(model_dir: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()

    def predict(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{name: torch.from_numpy(value) for name, value in batch.items()}).logits.numpy()

    return predict


def onnx_predictor(path: Path, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: run_session(session, batch)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    config = EvaluateConfig(
        models=[args.teacher, args.student],
        tasks=[str(TASK)],
        epochs=args.epochs,
        batch_size=32,
        gradient_accumulation_steps=1,
        learning_rate=5e-5,
        max_length=args.max_length,
        max_train_samples=args.train_rows,
        max_eval_samples=args.test_rows,
        save_models=True,
        output_dir=str(output / "evaluate"),
    )
    run_evaluation(config)
    task = load_task(str(TASK))
    labels = evaluation_labels(config.models, output / "evaluate")
    kept = {
        name: result_folder(output / "evaluate", label, model) / task.name / SAVED_MODEL_DIR
        for name, label, model in zip(("teacher", "student"), labels, config.models, strict=True)
    }
    onnx_dir = output / "onnx"
    int8_path = export_model(kept["student"], onnx_dir, quantize="int8")

    test = task.test.select(subset(len(task.test), args.test_rows, config.seed))  # evaluate's test rows
    gold = np.asarray(test["label"])

    def inputs(model_dir: Path) -> tuple[list[Any], list[Any]]:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        columns = tokenizer(list(test["text"]), truncation=True, max_length=args.max_length)
        encoded = [{name: columns[name][row] for name in columns} for row in range(len(test))]
        pad_id = int(tokenizer.pad_token_id or 0)
        return batches(encoded[: args.batch1_texts], 1, pad_id), batches(encoded, 32, pad_id)

    teacher_inputs, student_inputs = inputs(kept["teacher"]), inputs(kept["student"])
    variants = {
        "teacher PyTorch fp32": (torch_predictor(kept["teacher"]), *teacher_inputs),
        "student PyTorch fp32": (torch_predictor(kept["student"]), *student_inputs),
        "student ONNX fp32": (onnx_predictor(onnx_dir / "model.onnx", args.threads), *student_inputs),
        "student ONNX int8": (onnx_predictor(int8_path, args.threads), *student_inputs),
    }
    sizes = {
        "teacher PyTorch fp32": _size_mb(kept["teacher"] / "model.safetensors"),
        "student PyTorch fp32": _size_mb(kept["student"] / "model.safetensors"),
        "student ONNX fp32": _size_mb(onnx_dir / "model.onnx"),
        "student ONNX int8": _size_mb(int8_path),
    }
    timed = len(student_inputs[0])
    print(f"{len(gold)} test texts, {timed} timed at batch 1; {args.threads} threads; torch {torch.__version__}")
    print("| model | size MB | batch 1 sentences/s | batch 32 sentences/s | accuracy |")
    print("|---|---|---|---|---|")
    results = {}
    for name, (predict, single, batched) in variants.items():
        result = measure(predict, single, batched, args.repeats)
        results[name] = result
        accuracy = float((result["predictions"] == gold).mean())
        print(
            f"| {name} | {sizes[name]:.1f} | {result['batch1']:.1f} | {result['batch32']:.1f} | {100 * accuracy:.2f} |"
        )
    ratio = results["student ONNX int8"]["batch1"] / results["teacher PyTorch fp32"]["batch1"]
    print(f"ratio: {ratio:.2f}")


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


if __name__ == "__main__":
    main()
