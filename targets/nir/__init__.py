"""nir: export to NIR 1.0.8 (HDF5) with faithful neuron semantics and spike products expressed by
coincidence detection with standard nodes; re-import check with nirtorch (see :mod:`.export`,
:mod:`.verify`)."""

from .export import DT, Exported, export_nir, quantization_metadata

__all__ = ["DT", "Exported", "export_nir", "quantization_metadata", "write_nir"]


def write_nir(exported: Exported, path) -> None:
    """``nir.write`` to a temporary file renamed into place (no half-written file on failure)."""
    import nir

    from spikec.outputs import atomic_file

    atomic_file(path, lambda tmp: nir.write(str(tmp), exported.graph))
