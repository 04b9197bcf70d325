"""nir as a :class:`~spikec.targets.base.Target`: the optimised float IR as a NIR graph (a single
HDF5 file), read back with nirtorch and checked against the float IR spike for spike; with
``consumer=NAME`` (snntorch, norse, rockpool, sinabs) the graph is first checked against what that
simulator's own NIR import reads (refused, naming the nodes and modules, when it cannot; neurons it
reads exactly only in another NIR-conforming form are written in that form), and ``check`` also runs
the file in it (:mod:`.consumers`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from spikec.errors import SpikecError, UnsupportedError
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
        Option("consumer", None, "write neurons in the NIR form that the NIR import of NAME (snntorch, norse, rockpool, "
               "sinabs) computes exactly, and refuse a graph it cannot read as NIR means it; with verify, also run "
               "the file in NAME and compare its spikes",
               metavar="NAME", verify=True),
    )

    def emit(self, compiled, max_nir_neurons: int = 1_000_000, partial: bool = False, consumer=None,
             **options) -> Artifact:
        from spikec.compiler import compile_graph

        from . import consumers
        from .export import export_nir, quantization_metadata

        if consumer is not None:
            consumers.get(consumer)  # an unknown name fails before the export
        try:  # the Loihi 2 fixed-point scales of the same model, for the metadata
            quant = quantization_metadata(compile_graph(compiled.traced, "intref", calib=compiled.calib,
                                                        input_range=compiled.input_range,
                                                        skip=compiled.skip).quant_report)
        except SpikecError as e:
            quant = {"unavailable": str(e)}
        except Exception as e:  # a defect of the integer pipeline must not break the float export: noted instead
            quant = {"unavailable": f"internal error while quantizing ({type(e).__name__}: {e}); please report the model"}
        try:
            ex = export_nir(compiled.optimized, max_neurons=max_nir_neurons, partial=partial, quantization=quant,
                            consumer=consumer)
        except UnsupportedError as e:
            left = [why for r in compiled.pipeline.reports if r.name == "causal_time_conv_to_delays"
                    for _, why in r.not_applied]
            if left and "time mixing" in str(e):
                raise UnsupportedError(f"{e}; not a causal convolution over time: {left[0]}") from None
            raise
        lines = [f"NIR graph: {len(ex.graph.nodes)} nodes, {ex.coincidence_neurons} expansion neurons "
                 "(spike-product coincidences, max-pool selections)"] + ["  " + note for note in ex.notes]
        if consumer is not None:
            consumers.refuse_unreadable(ex.graph, consumer, ex.origins,
                                        {n.name: n.source for n in compiled.optimized.nodes if n.source})
            lines.append(f"readable by {consumers.get(consumer).requirement}'s NIR import (node types and parameters)")
        return Artifact(self, ex, compiled.optimized, lines=lines, meta={"consumer": consumer} if consumer else {})

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
        classifier as in the export): spikes per neuron layer identical, outputs within
        :func:`.verify.output_tolerance` (1e-5 relative to the largest output, absolute below 1).  With a
        consumer (``artifact.meta``), the file also runs in that simulator's own NIR import: the
        per-layer agreement and outputs reported are then the consumer's, and exact needs both."""
        from .verify import check_against_float

        consumer = artifact.meta.get("consumer")
        with tempfile.TemporaryDirectory(prefix="spikec-nir-") as d:
            path = self._file(artifact, d)
            rep = check_against_float(compiled.optimized, path, x)
            y = rep.pop("outputs").numpy()  # with the readout: comparable with the model's outputs
            if consumer:
                from .consumers import compare_with_float

                other = compare_with_float(compiled.optimized, path, x, consumer)
        outputs_ok = rep["output_max_abs_diff"] <= rep["output_tolerance"]
        exact = rep["spikes_identical"] and outputs_ok
        lines = [f"nir re-import with nirtorch; readout: {rep['readout']}; "
                 f"spikes identical in every layer: {'yes' if rep['spikes_identical'] else 'NO'}; "
                 f"outputs max |diff| {rep['output_max_abs_diff']:.3g} (tolerance {rep['output_tolerance']:.3g})"]
        details = {"readout": rep["readout"], "output_max_abs_diff": rep["output_max_abs_diff"],
                   "output_tolerance": rep["output_tolerance"]}
        layers = rep["layers"]
        if consumer:
            other_ok = other["output_max_abs_diff"] <= other["output_tolerance"]
            ok = other["spikes_identical"] and other_ok
            worst = min(other["layers"].items(), key=lambda kv: kv[1], default=None)
            lines.append(f"nir in {other['consumer']} (its own NIR import): spikes identical in every layer: "
                         f"{'yes' if other['spikes_identical'] else 'NO'}"
                         + (f" (lowest agreement {worst[1]:.4f} at {worst[0]})" if worst and worst[1] < 1 else "")
                         + f"; outputs max |diff| {other['output_max_abs_diff']:.3g}")
            details.update(consumer=other["consumer"], nirtorch_layers=rep["layers"],
                           consumer_output_max_abs_diff=other["output_max_abs_diff"])
            exact, layers, y = exact and ok, other["layers"], other["outputs"]
            outputs_ok = outputs_ok and other_ok
        return TargetCheck("float IR", exact, layers, outputs_ok, outputs=y, details=details, lines=lines)
