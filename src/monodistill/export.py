"""``monodistill export``: a student or a fine-tuned classifier to ONNX, optionally int8, for CPU serving.

Exporter: ``torch.onnx``'s TorchScript exporter (``dynamo=False``). With transformers 5.24 and torch
2.13 both of torch's exporters produce graphs whose logits match PyTorch to about 1e-8 on padded
batches of any batch size and length, but the torch.export-based one (``dynamo=True``) needs
``onnxscript`` and takes about 20x longer on a tiny BERT (30 s against 1.5 s on a 2-core CPU), which
would make every export test slow. Optimum (``optimum-onnx``) requires transformers < 4.58, so it
cannot be installed beside transformers 5. BERT has no data-dependent control flow, so tracing loses
nothing here; switch ``DYNAMO`` when torch drops the TorchScript exporter.

Every export is checked: ONNX Runtime's logits on a padded sample batch must match PyTorch's within
``TOLERANCE``, or the export is refused. A causal LM (a model that generates) is exported with its
key-value cache as graph inputs and outputs, and checked on a step after a past as well
(``export_decoder``, which says what happens for a family whose cache does not export). Quantization is
ONNX Runtime's dynamic int8 (weights int8, activations quantized on the fly); its logits drift from fp32,
so its task accuracy is measured (``benchmarks/inference.py``), not assumed. The output folder is self-contained::

    DIR/model.onnx          fp32 graph, inputs from the tokenizer, output ``logits`` (a decoder's: and its cache)
    DIR/model.int8.onnx     with --quantize int8
    DIR/config.json, tokenizer files (a decoder's: and generation_config.json)
    DIR/export.json         source, exporter, opset, the measured differences

The folder is written whole or not at all (staged beside it, then swapped in): a failed export leaves
what was there, and ``--overwrite`` replaces an earlier export entirely, so no file of it survives
beside the new one. Any other content in ``DIR`` is refused, with or without ``--overwrite``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from monodistill import checkpoint as ckpt
from monodistill import export_decoder, runfolder
from monodistill.errors import MonodistillError
from monodistill.families import family_of

DYNAMO = False
"""Which torch.onnx exporter runs: False for TorchScript (see the module docstring)."""
OPSET = 17
"""ONNX opset: supported by ONNX Runtime >= 1.14 and by both torch exporters."""
TOLERANCE = 1e-4
"""Largest absolute logit difference between ONNX Runtime fp32 and PyTorch that an export may show."""
QUANTIZATIONS = ("int8",)
EXPORT_FILES = ("export.json", "model.onnx")
"""Files that mark a folder as an earlier export, which ``overwrite`` may replace."""
FORWARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SAMPLE_TEXTS = ["Magandang umaga sa inyong lahat!", "Isang maikling pangungusap."]
"""Texts of different lengths, so the check batch has padding."""
HEADS = {
    "ForSequenceClassification": AutoModelForSequenceClassification,
    "ForTokenClassification": AutoModelForTokenClassification,
    "ForMaskedLM": AutoModelForMaskedLM,
}


def export_model(model_dir: Path, output: Path, quantize: str | None = None, overwrite: bool = False) -> Path:
    """Export ``model_dir`` (a saved student or fine-tuned classifier) to ONNX; returns the final model file.

    ``output`` must be new, empty, or with ``overwrite`` an earlier export, which is replaced as a whole.

    Raises:
        MonodistillError: when the folder holds no model or a damaged one, ``output`` is taken, the export
            extra is missing, the quantization is unknown, or the exported logits differ from PyTorch's
            by more than ``TOLERANCE``.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise MonodistillError(f"--quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    runfolder.check_output_path(output)
    if not (model_dir / "config.json").is_file():
        raise MonodistillError(f"{model_dir} holds no config.json: pass a student/ folder or a saved fine-tuned model")
    ckpt.check_model_folder(model_dir)
    check_output(output, overwrite)
    ort = _require_onnxruntime()
    model = load_for_export(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.atomic_dir(output) as staging:
        record = {"source": str(model_dir.resolve()), **write_export(model, tokenizer, staging, quantize, ort)}
        (staging / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    print(describe_export(output, record))
    return output / ("model.int8.onnx" if quantize == "int8" else "model.onnx")


def describe_export(output: Path, record: dict[str, Any]) -> str:
    """What an export wrote, and the parity checks it passed, in a few lines."""
    lines = [
        f"wrote {output / 'model.onnx'} ({_megabytes(output / 'model.onnx')}, {record['exporter']}, "
        f"opset {record['opset']})",
        f"parity check passed: ONNX Runtime's logits differ from PyTorch's by at most "
        f"{record['max_abs_logit_difference']:.1e} (tolerance {record['tolerance']:.0e})",
    ]
    if record.get("kv_cache"):
        layers = sum(name.startswith("past_key_values.") for name in record["inputs"]) // 2
        lines.append(
            f"key-value cache in the graph: past_key_values.N.key/value in, present.N.key/value out ({layers} "
            f"layers); a step after a past matches PyTorch within {record['max_abs_logit_difference_with_past']:.1e}"
        )
    elif record.get("kv_cache") is False:
        lines.append(f"no key-value cache: {record['kv_cache_refused']}; each new token reruns the whole prefix")
    if "int8_max_abs_logit_difference" in record:
        drift = record["int8_max_abs_logit_difference"]
        int8 = output / "model.int8.onnx"
        lines.append(f"wrote {int8} ({_megabytes(int8)}, dynamic int8; logits within {drift:.2g} of PyTorch's)")
    return "\n".join(lines)


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an ``output`` folder that holds anything, unless it is an earlier export and ``overwrite`` is set."""
    held = sorted(path.name for path in output.iterdir()) if output.is_dir() else []
    if not held:
        return
    if not any((output / name).is_file() for name in EXPORT_FILES):
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise MonodistillError(f"--output {output} holds files that are not an export ({shown}); choose a new folder")
    if not overwrite:
        raise MonodistillError(f"--output {output} holds an earlier export; pass --overwrite to replace all of it")


def write_export(
    model: PreTrainedModel, tokenizer: Any, folder: Path, quantize: str | None, ort: Any
) -> dict[str, Any]:
    """Write the ONNX graph(s), config and tokenizer into ``folder``; returns the export's record.

    Raises:
        MonodistillError: the fp32 graph's logits differ from PyTorch's by more than ``TOLERANCE``.
    """
    if model.can_generate():  # a causal LM (not a classifier built on a decoder): its cache goes in the graph
        return write_decoder_export(model, tokenizer, folder, quantize, ort)
    sample = dict(tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt"))
    path = folder / "model.onnx"
    # Positional, in the order of BERT's forward(input_ids, attention_mask, token_type_ids), which is not
    # the tokenizer's order: the TorchScript exporter traces positional arguments.
    # Only those forward names: ModernBERT takes no token_type_ids (its third argument is position_ids), though a
    # BERT tokenizer it was distilled with makes them.
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in FORWARD_INPUTS if name in sample and name in accepted]
    with warnings.catch_warnings():
        # Tracing reads Python booleans off tensor shapes in transformers' masking and attention code (constant
        # for this graph: the parity check below runs other batch sizes and lengths), and opset 17 spells
        # BERT's advanced indexing with several ONNX operators. Both are harmless here.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            model,
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=DYNAMO,
        )
    with torch.inference_mode():
        inputs = {name: sample[name] for name in names}
        expected = model(**inputs).logits.numpy()  # (B, num_labels) or (B, T, vocab/labels)
    numpy_sample = {name: sample[name].numpy() for name in names}
    record: dict[str, Any] = {
        "architecture": type(model).__name__,
        "exporter": "torch.onnx (dynamo)" if DYNAMO else "torch.onnx (TorchScript)",
        "opset": OPSET,
        "inputs": names,
        "tolerance": TOLERANCE,
    }
    if quantize == "int8":
        # From the graph as exported: the quantizer only quantizes a MatMul whose weight is an initializer.
        quantized = quantize_int8(path, folder / "model.int8.onnx")
        drift = np.abs(run_session(ort.InferenceSession(str(quantized)), numpy_sample) - expected).max()
        record["int8_max_abs_logit_difference"] = float(drift)
    record["tied_weights_shared"] = share_transposed_weights(path)
    difference = float(np.abs(run_session(ort.InferenceSession(str(path)), numpy_sample) - expected).max())
    if difference > TOLERANCE:
        raise MonodistillError(f"the ONNX export's logits differ from PyTorch's by {difference:.2e} (> {TOLERANCE})")
    record["max_abs_logit_difference"] = difference
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return record


def write_decoder_export(
    model: PreTrainedModel, tokenizer: Any, folder: Path, quantize: str | None, ort: Any
) -> dict[str, Any]:
    """``write_export`` for a causal LM: one graph with its key-value cache, or without where that graph fails
    its parity check (``export_decoder``); the check covers a step with a past too.

    Raises:
        MonodistillError: the fp32 graph's logits differ from PyTorch's by more than ``TOLERANCE``.
    """
    sample = decoder_sample(tokenizer)
    path = folder / "model.onnx"
    record: dict[str, Any] = {"architecture": type(model).__name__, "exporter": "torch.onnx (TorchScript)"}
    record |= {"opset": OPSET, "tolerance": TOLERANCE, "kv_cache": True}
    failure = _export_with_past(model, sample, path, ort)
    if failure is not None:
        export_decoder.export_plain(model, sample, path, OPSET)
        record |= {"kv_cache": False, "kv_cache_refused": f"the graph with a key-value cache failed ({failure})"}
    record["inputs"] = [item.name for item in export_decoder.session(ort, path).get_inputs()]
    differences = _decoder_parity(model, path, sample, record, ort)
    if quantize == "int8":
        quantized = quantize_int8(path, folder / "model.int8.onnx")
        record["int8_max_abs_logit_difference"] = _decoder_parity(model, quantized, sample, record, ort)["whole"]
    record["tied_weights_shared"] = share_transposed_weights(path)
    if record["tied_weights_shared"]:  # the graph as written is the one checked
        differences = _decoder_parity(model, path, sample, record, ort)
    difference = max(differences.values())
    if difference > TOLERANCE:
        raise MonodistillError(f"the ONNX export's logits differ from PyTorch's by {difference:.2e} (> {TOLERANCE})")
    record["max_abs_logit_difference"] = difference
    if record["kv_cache"]:
        record["max_abs_logit_difference_with_past"] = differences["with_past"]
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return record


def _decoder_parity(
    model: PreTrainedModel, path: Path, sample: dict[str, torch.Tensor], record: dict[str, Any], ort: Any
) -> dict[str, float]:
    """``export_decoder.parity`` of the graph at ``path``; a graph ONNX Runtime cannot run is refused in one line."""
    try:
        return export_decoder.parity(model, export_decoder.session(ort, path), sample, record["kv_cache"])
    except Exception as error:  # e.g. Cohere's interleaved rotary positions, traced into fixed shapes
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MonodistillError(
            f"the ONNX graph of {record['architecture']} does not run in ONNX Runtime: {first}"
        ) from None


def _export_with_past(model: PreTrainedModel, sample: dict[str, torch.Tensor], path: Path, ort: Any) -> str | None:
    """Export the graph with a key-value cache into ``path``; returns why it cannot be kept, or None."""
    try:
        export_decoder.export_with_past(model, sample, path, OPSET)
        worst = max(export_decoder.parity(model, export_decoder.session(ort, path), sample, with_past=True).values())
    except Exception as error:  # the tracer or ONNX Runtime refusing this family's cache code
        return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    return None if worst <= TOLERANCE else f"its logits differ from PyTorch's by {worst:.1e}"


def decoder_sample(tokenizer: Any) -> dict[str, torch.Tensor]:
    """The sample texts as one padded batch; a tokenizer without a padding token (Llama's) pads with EOS, on a copy."""
    if tokenizer.pad_token_id is None:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    return {name: encoded[name] for name in export_decoder.PLAIN_INPUTS}


def load_for_export(model_dir: Path) -> PreTrainedModel:
    """The model with the head it was saved with (masked or causal LM, sequence or token classifier), fp32, in
    eval mode."""
    config = AutoConfig.from_pretrained(model_dir)
    architectures = config.architectures or []
    head = next((cls for suffix, cls in HEADS.items() if any(a.endswith(suffix) for a in architectures)), None)
    family = family_of(config, required=False)
    if head is None and family.objective == "causal":  # *ForCausalLM, GPT-2's *LMHeadModel
        head = family.model_class
    if head is None:
        raise MonodistillError(
            f"{model_dir}: cannot export architecture {architectures}; expected {[*HEADS, 'ForCausalLM']}"
        )
    model = head.from_pretrained(model_dir, dtype=torch.float32, use_kernels=False)  # the graph traced is torch's own
    model.config.return_dict = True
    return model.eval()


def share_transposed_weights(path: Path) -> int:
    """Store a tied weight once in the ONNX graph at ``path``; returns how many copies it dropped.

    A masked-LM head tied to the word embeddings is one tensor in PyTorch, but the exporter folds the
    transpose that the decoder's MatMul needs into a second initializer: the graph then holds the
    embedding twice (125 MB for a 63.6 MB student). Each initializer equal to another's transpose is
    replaced by a Transpose node reading the other; ONNX Runtime folds it again when a session loads,
    so inference is unchanged and only the file shrinks.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    matrices = {t.name: numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) == 2 and min(t.dims) > 1}
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, array in matrices.items():
        by_shape.setdefault(array.shape, []).append(name)
    dropped: list[tuple[str, str]] = []  # (copy, original)
    used: set[str] = set()
    for name, array in matrices.items():
        candidates = [other for other in by_shape.get(array.shape[::-1], []) if {name, other}.isdisjoint(used)]
        copy = next((other for other in candidates if np.array_equal(matrices[other], array.T)), None)
        if copy is not None and copy != name:
            dropped.append((copy, name))
            used |= {copy, name}
    if not dropped:
        return 0
    copies = {copy for copy, _ in dropped}
    kept = [t for t in graph.initializer if t.name not in copies]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [helper.make_node("Transpose", [original], [copy], perm=[1, 0]) for copy, original in dropped]
    for position, node in enumerate(nodes):
        graph.node.insert(position, node)
    onnx.save(model, str(path))
    return len(dropped)


def quantize_int8(source: Path, target: Path) -> Path:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX Runtime logs its warnings on the root logger (which sets up a handler on it as a side effect): a
    # handler of ours for the call keeps that from happening, drops the harmless ones and shows the others.
    root = logging.getLogger()
    shown = logging.StreamHandler(sys.stderr)
    shown.addFilter(_drop_harmless_quantization_warnings)
    root.addHandler(shown)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.removeHandler(shown)
    return target


HARMLESS_QUANTIZATION_WARNINGS = (
    "Please consider to run pre-processing before quantization",  # shape inference, for static quantization
    "Inference failed or unsupported type to quantize for tensor",  # an integer tensor (ids, masks): kept as is
)


def _drop_harmless_quantization_warnings(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(HARMLESS_QUANTIZATION_WARNINGS)


def run_session(session: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The ``logits`` of an ONNX Runtime session, fed the inputs the graph declares (int64)."""
    wanted = {item.name for item in session.get_inputs()}
    feed = {name: np.asarray(value, dtype=np.int64) for name, value in inputs.items() if name in wanted}
    return np.asarray(session.run(["logits"], feed)[0])


def _require_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the graph)
        import onnxruntime
    except ImportError:
        raise MonodistillError("export needs ONNX and ONNX Runtime: pip install 'monodistill[export]'") from None
    return onnxruntime
