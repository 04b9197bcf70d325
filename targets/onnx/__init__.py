"""onnx: the integer model (intref's quantized graph) as an integer-only ONNX graph, run by
onnxruntime bit-exactly like intref (see :mod:`.export`)."""

from .export import OPSET, export_onnx

__all__ = ["OPSET", "export_onnx", "write_onnx"]


def write_onnx(model, path) -> None:
    """Serialize to a temporary file renamed into place (no half-written file on failure)."""
    from spikec.outputs import atomic_file

    atomic_file(path, lambda tmp: tmp.write_bytes(model.SerializeToString()))
