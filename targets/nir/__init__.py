"""nir: export to NIR 1.0.8 (HDF5) with faithful neuron semantics and spike products expressed by
coincidence detection with standard nodes; re-import check with nirtorch (see :mod:`.export`,
:mod:`.verify`)."""

from .export import DT, Exported, export_nir, quantization_metadata

__all__ = ["DT", "Exported", "export_nir", "quantization_metadata", "write_nir"]


def write_nir(exported: Exported, path) -> None:
    """``nir.write`` to a temporary file renamed into place (no half-written file on failure)."""
    import os
    import tempfile
    from pathlib import Path

    import nir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, exported.graph)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
