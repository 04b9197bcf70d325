"""onnx: the integer model (intref's quantized graph) as an integer-only ONNX graph, run by
onnxruntime bit-exactly like intref (see :mod:`.export`)."""

from .export import OPSET, export_onnx

__all__ = ["OPSET", "export_onnx", "write_onnx"]


def write_onnx(model, path) -> None:
    """Serialize to a temporary file renamed into place (no half-written file on failure)."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
