"""intref: the integer-only reference target.

An intref artifact is a directory that runs without the original model code:

* ``manifest.json``: format, versions, input spec (shape, layout, quantization scale and range),
  output scales, the semantics of every integer operation, and the compile report;
* ``graph.json`` + ``arrays.npz``: the quantized IR (integer weights, thresholds, decays, biases).

``spikec run OUT --input x.npy`` loads it and executes :func:`executor.run_int`.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

import spikec
from spikec import ir, loihi
from spikec.errors import SpikecError
from spikec.ir.serialize import write_graph_files
from spikec.outputs import atomic_directory

from .executor import IntRunResult, check_integer_graph, run_int

FORMAT = "spikec-intref"
FORMAT_VERSION = 1

SEMANTICS = {
    "values": "integer tensors [T, B, *features] (exact; any width); the float input is quantized once by quantize_input",
    "quantize_input": "q = clip(floor(x / scale + 1/2), 0, 255) (unsigned) or [-128, 127] (signed)",
    "synapse": "acc = sum(w * in) exactly; out = acc << exp (exp >= 0) or acc >> -exp (floor); + bias (host outputs only)",
    "loihi_lif": loihi.LIF_SEMANTICS,
    "addressed_acc": "matmul with one binary operand: sum of the rows / columns selected by spikes",
    "and": "logical AND of spike tensors",
    "shift": "x << k or x >> -k (floor)",
    "reduce": "integer sum",
    "avgpool": "integer sum pooling (divisor 1)",
    "maxpool": "integer max pooling",
    "dequantize": "real output = integer * scale (outside the integer datapath)",
}


def write_artifact(qgraph: ir.Graph, out: str | Path, report_lines: Sequence[str] = (),
                   source: Optional[dict] = None, fmt: str = FORMAT, extra: Optional[dict] = None) -> Path:
    """Write a compiled integer graph as an artifact directory (atomically): intref, or another
    integer target's format tag (``fmt``) with ``extra`` manifest entries."""
    check_integer_graph(qgraph)
    (inp,) = qgraph.inputs
    qin = next(n for n in qgraph.nodes if isinstance(n, ir.QuantizeInputNode))
    outputs = []
    for o in qgraph.outputs:
        src = qgraph.producer(o.inputs[0])
        outputs.append({"name": o.name, "layout": o.layout, "scale": src.scale if isinstance(src, ir.DequantizeNode) else 1.0,
                        "features": list(qgraph.types[o.name].features), "time": qgraph.types[o.name].time})
    manifest = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "spikec_version": spikec.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "input": {"features": list(inp.features), "time": inp.time, "layout": inp.layout,
                  "scale": qin.scale, "bits": qin.bits, "signed": qin.signed},
        "outputs": outputs,
        "semantics": SEMANTICS,
        "report": list(report_lines),
        "source": source or {},
        **(extra or {}),
    }

    def write(d: Path):
        write_graph_files(qgraph, d)
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))

    return atomic_directory(out, write)


def load_artifact(path: str | Path, formats: Sequence[str] = (FORMAT, "spikec-lava")) -> tuple[ir.Graph, dict]:
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        raise SpikecError(f"{path}: not a spikec artifact (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise SpikecError(f"{path}/manifest.json: corrupt ({e})") from None
    if manifest.get("format") not in formats:
        raise SpikecError(f"{path}: a {manifest.get('format')!r} artifact, expected one of {list(formats)}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SpikecError(f"{path}: intref format version {manifest.get('format_version')} is not supported")
    graph = ir.load(path).validate()
    check_integer_graph(graph)
    return graph, manifest


__all__ = ["IntRunResult", "load_artifact", "run_int", "write_artifact", "SEMANTICS"]
