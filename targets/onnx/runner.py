"""Run an exported ONNX integer model with onnxruntime (what ``spikec run model.onnx`` does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikec.errors import SpikecError


def run_onnx(path: str | Path, x: np.ndarray) -> tuple[list[np.ndarray], list[float], dict]:
    """Integer outputs, their real scales (real = integer · scale) and the model metadata."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises several types for a corrupt file
        raise SpikecError(f"{path}: not a readable ONNX model ({e})") from None
    return run_onnx_model(model, x, str(path))


def run_onnx_model(model, x: np.ndarray, what: str = "the ONNX model") -> tuple[list[np.ndarray], list[float], dict]:
    """:func:`run_onnx` on an ``onnx.ModelProto``."""
    import onnxruntime as ort

    meta = {p.key: p.value for p in model.metadata_props}
    if "output_scales" not in meta:
        raise SpikecError(f"{what}: not a spikec ONNX model (no output_scales metadata)")
    (inp,) = model.graph.input
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp.type.tensor_type.shape.dim]
    if x.ndim != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, x.shape)):
        raise SpikecError(f"--input has shape {list(x.shape)}, the ONNX model takes {dims} "
                          f"({'[T, B, ...] sequences' if len(dims) > 0 and dims[0] != 'B' else '[B, ...] frames'})")
    if np.isnan(np.asarray(x, np.float32)).any():
        raise SpikecError(f"--input contains {int(np.isnan(x).sum())} NaN values: the 8-bit input quantization has "
                          "no level for them (clean the data)")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    from . import serialize

    sess = ort.InferenceSession(serialize(model), so, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {inp.name: np.asarray(x, np.float32)})
    return outs, json.loads(meta["output_scales"]), meta
