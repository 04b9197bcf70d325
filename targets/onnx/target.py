"""onnx as a :class:`~spikec.targets.base.Target`: the quantized graph as an integer-only ONNX model
(a single ``.onnx`` file), run by onnxruntime and checked against intref's outputs bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikec.errors import SpikecError
from spikec.targets.base import Artifact, RunOutput, Target


class OnnxTarget(Target):
    name = "onnx"
    description = "the integer model as an integer-only ONNX graph (time unrolled) for onnxruntime"
    integer = True
    pipeline = "intref"
    artifact = "file"

    def emit(self, compiled, **options) -> Artifact:
        from .export import OPSET, export_onnx

        model = export_onnx(compiled.quantized)  # passes onnx.checker
        return Artifact(self, model, compiled.quantized,
                        lines=[f"ONNX: integer-only, opset {OPSET}, time unrolled, {model.ByteSize() // 1024} KiB, "
                               f"{len(model.graph.node)} nodes; real output = output x output_scales (model metadata)"])

    def save(self, artifact: Artifact, path) -> Path:
        from . import write_onnx

        write_onnx(artifact.payload, path)
        return Path(path)

    def recognizes(self, path: Path) -> bool:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as f:
            return Path(path).suffix == ".onnx" or f.read(1) == b"\x08"

    def load(self, path) -> Artifact:
        import onnx

        try:
            model = onnx.load(str(path))
        except Exception as e:  # protobuf raises several types for a corrupt file
            raise SpikecError(f"{path}: not a readable ONNX model ({e})") from None
        return Artifact(self, model, None, meta={p.key: p.value for p in model.metadata_props}, path=Path(path))

    def run(self, artifact: Artifact, x, *, progress: bool = False) -> RunOutput:
        from .runner import run_onnx_model

        what = str(artifact.path) if artifact.path else "the ONNX model"
        outs, scales, meta = run_onnx_model(artifact.payload, np.asarray(x), what)
        return RunOutput(outputs=[o.astype(np.float64) * s for o, s in zip(outs, scales)],
                         lines=[f"onnx: onnxruntime, integer outputs x scale {scales[0]:.6g} ({meta.get('semantics', '')})"],
                         details={"nodes": len(artifact.payload.graph.node)})
