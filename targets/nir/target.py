"""nir as a :class:`~spikec.targets.base.Target`: the optimised float IR as a NIR graph (a single
HDF5 file), read back with nirtorch and checked against the float IR spike for spike."""

from __future__ import annotations

import tempfile
from pathlib import Path

from spikec.errors import SpikecError
from spikec.targets.base import Artifact, Option, RunOutput, Target, TargetCheck

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class NirTarget(Target):
    name = "nir"
    description = "NIR graph (HDF5) with faithful neuron semantics"
    integer = False
    pipeline = "nir"
    artifact = "file"
    options = (
        Option("max_nir_neurons", 1_000_000, "refuse expansions (spike-product coincidences, max-pool selections) "
               "above N threshold neurons in all (default 1000000)", type=int, verify=True),
        Option("partial", False, "export the expressible prefix instead of failing", action="store_true"),
    )

    def emit(self, compiled, max_nir_neurons: int = 1_000_000, partial: bool = False, **options) -> Artifact:
        from spikec.compiler import compile_graph

        from .export import export_nir, quantization_metadata

        try:  # the Loihi 2 fixed-point scales of the same model, for the metadata
            quant = quantization_metadata(compile_graph(compiled.traced, "intref", calib=compiled.calib,
                                                        input_range=compiled.input_range,
                                                        skip=compiled.skip).quant_report)
        except SpikecError as e:
            quant = {"unavailable": str(e)}
        ex = export_nir(compiled.optimized, max_neurons=max_nir_neurons, partial=partial, quantization=quant)
        lines = [f"NIR graph: {len(ex.graph.nodes)} nodes, {ex.coincidence_neurons} expansion neurons "
                 "(spike-product coincidences, max-pool selections)"] + ["  " + note for note in ex.notes]
        return Artifact(self, ex, compiled.optimized, lines=lines)

    def save(self, artifact: Artifact, path) -> Path:
        from . import write_nir

        write_nir(artifact.payload, path)
        return Path(path)

    def recognizes(self, path: Path) -> bool:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC

    def load(self, path) -> Artifact:
        return Artifact(self, None, None, path=Path(path))

    def _file(self, artifact: Artifact, d: str) -> Path:
        if artifact.path is not None:
            return artifact.path
        path = Path(d) / "model.nir"
        self.save(artifact, path)
        artifact.path = None  # a temporary copy only
        return path

    def run(self, artifact: Artifact, x, *, progress: bool = False) -> RunOutput:
        from .verify import run_file

        with tempfile.TemporaryDirectory(prefix="spikec-nir-") as d:
            y, rec, meta = run_file(self._file(artifact, d), x)
        neurons, sources = meta.get("neurons", {}), meta.get("sources", {})
        return RunOutput(outputs=[y.numpy()],
                         layers={layer: rec[key].numpy() for layer, key in neurons.items()},
                         sources={layer: sources.get(layer, "") for layer in neurons},
                         lines=[f"nir: {meta['T']} steps per sample in nirtorch with spikec's node map (forward Euler, "
                                f"dt from the metadata); readout: {meta['readout']}"])

    def check(self, compiled, artifact, x, reference) -> TargetCheck:
        """The nirtorch re-import against the float IR (per-step semantics, readout moved behind the
        classifier as in the export): spikes per neuron layer identical, outputs within 1e-5."""
        from .verify import check_against_float, run_file

        with tempfile.TemporaryDirectory(prefix="spikec-nir-") as d:
            path = self._file(artifact, d)
            rep = check_against_float(compiled.optimized, path, x)
            y = run_file(path, x)[0].numpy()  # with the readout: comparable with the model's outputs
        exact = rep["spikes_identical"] and rep["output_max_abs_diff"] <= 1e-5
        return TargetCheck("float IR", exact, rep["layers"], rep["output_max_abs_diff"] <= 1e-5,
                           outputs=y,
                           details={"readout": rep["readout"], "output_max_abs_diff": rep["output_max_abs_diff"]},
                           lines=[f"nir re-import with nirtorch; readout: {rep['readout']}; "
                                  f"spikes identical in every layer: {'yes' if rep['spikes_identical'] else 'NO'}; "
                                  f"outputs max |diff| {rep['output_max_abs_diff']:.3g}"])
