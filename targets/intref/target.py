"""intref as a :class:`~spikec.targets.base.Target`: the quantized graph, run by the integer executor.

The artifact is a directory (``manifest.json`` + ``graph.json`` + ``arrays.npz``, see the package
docstring); intref is the reference of the other integer targets, so it has no check of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikec import ir
from spikec.targets.base import Artifact, RunOutput, Target

FORMAT = "spikec-intref"


def manifest_format(path: Path):
    """The ``format`` of an artifact directory's manifest (None when it is not one)."""
    mf = path / "manifest.json"
    if not (path.is_dir() and mf.is_file()):
        return None
    try:
        return json.loads(mf.read_text()).get("format")
    except (json.JSONDecodeError, OSError, AttributeError):
        return "unreadable"


def neuron_sources(graph: ir.Graph) -> dict[str, str]:
    return {n.name: n.source for n in graph.nodes if isinstance(n, ir.LoihiNeuronNode)}


def run_integer_graph(graph: ir.Graph, x, teacher=None, record: bool = True) -> RunOutput:
    """Run a quantized graph with the integer executor, every node value recorded (``record``, as
    the reference of the other integer targets needs; not with ``teacher``), else only the neuron
    layers' spikes kept; no membranes.  The neuron layers whose currents pass Lava's int32 datapath
    in ``details["overflows"]``."""
    from .executor import clipped_input_lines, run_int

    warnings = clipped_input_lines(graph, np.asarray(x))
    sources = neuron_sources(graph)
    r = run_int(graph, x, record=record and teacher is None, teacher=teacher, membranes=False,
                keep=() if record or teacher is not None else sources)
    values = {k: v.numpy() for k, v in r.values.items()}
    return RunOutput(outputs=[o.numpy() for o in r.real_outputs()],
                     layers={k: values[k] for k in sources if k in values},
                     sources=sources,
                     lines=[f"intref: integer executor; output = integer x scale {r.scales[0]:.6g}"],
                     warnings=warnings + r.overflow_lines(),
                     details={"overflows": dict(r.overflows)},
                     values=values, taught={k: v.numpy() for k, v in r.taught.items()})


class IntrefTarget(Target):
    name = "intref"
    description = "integer-only reference model (bit-exact with Lava's fixed_pt models)"
    integer = True
    pipeline = "intref"
    artifact = "directory"
    format = FORMAT

    def emit(self, compiled, source=None, **options) -> Artifact:
        from .executor import check_integer_graph

        check_integer_graph(compiled.quantized)
        return Artifact(self, compiled.quantized, compiled.quantized,
                        meta={"source": source or {}, "report": list(compiled.lines)})

    def save(self, artifact: Artifact, path) -> Path:
        from . import write_artifact

        return write_artifact(artifact.graph, path, artifact.meta.get("report", []),
                              source=artifact.meta.get("source"), fmt=self.format,
                              extra=artifact.meta.get("extra"))

    def recognizes(self, path: Path) -> bool:
        return manifest_format(Path(path)) == self.format

    def load(self, path) -> Artifact:
        from . import load_artifact

        graph, manifest = load_artifact(path, formats=(self.format,))
        return Artifact(self, graph, graph, meta=manifest, path=Path(path))

    def run(self, artifact: Artifact, x, *, progress: bool = False) -> RunOutput:
        # the outputs and per-layer spikes only: recording every node value held the whole graph's
        # values (and every neuron layer's membranes) until the run ended, e.g. 10.7 GB for one sample
        # of the 7-block Spikeformer DVS-Gesture model that runs in ~1 GB freeing them
        return run_integer_graph(artifact.graph, x, record=False)

    def check(self, compiled, artifact, x, reference):
        return None  # intref is the integer reference itself
