"""onnx: the integer model (intref's quantized graph) as an integer-only ONNX graph, run by
onnxruntime bit-exactly like intref (see :mod:`.export`)."""

from .export import OPSET, PROTOBUF_LIMIT, export_onnx

__all__ = ["OPSET", "PROTOBUF_LIMIT", "export_onnx", "serialize", "write_onnx"]


def serialize(model) -> bytes:
    """``model.SerializeToString()``; a failure (over 2 GiB, out of memory) is a one-line SpikecError."""
    from google.protobuf.message import EncodeError

    from spikec.errors import UnsupportedError

    try:
        return model.SerializeToString()
    except (EncodeError, ValueError, MemoryError) as e:
        raise UnsupportedError(f"onnx: the model cannot be serialised ({type(e).__name__}: {e}); "
                               "use a smaller model or --target intref") from None


def write_onnx(model, path) -> None:
    """Serialize to a temporary file renamed into place (no file at all on failure)."""
    from spikec.outputs import atomic_file

    data = serialize(model)  # before the temporary file exists
    atomic_file(path, lambda tmp: tmp.write_bytes(data))
