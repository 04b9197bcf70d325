"""lava as a :class:`~spikec.targets.base.Target`: the quantized graph as a lava-nc process network.

The artifact is an intref artifact directory tagged ``spikec-lava`` with the network's resource
report; running it rebuilds the network (:mod:`.netspec`) and runs it in Lava's CPU simulator
(:mod:`.runner`).  Checked against intref bit for bit in every stage and at the output.
"""

from __future__ import annotations

from spikec.targets.base import Artifact, Option, RunOutput, compare_with_reference
from spikec.targets.intref.target import IntrefTarget, neuron_sources

FORMAT = "spikec-lava"
RUN_CONFIG = "Loihi2SimCfg(select_tag='fixed_pt')"


class LavaTarget(IntrefTarget):
    name = "lava"
    description = "lava-nc process network run in Loihi2SimCfg(select_tag='fixed_pt')"
    pipeline = "lava"
    format = FORMAT
    options = (
        Option("max_memory", None, "refuse networks whose Lava simulation needs more than SIZE of memory "
               "(estimated before building; e.g. 8G, 512M; default: half of the machine's RAM)", type=str,
               metavar="SIZE", verify=True),
    )

    def emit(self, compiled, source=None, max_memory=None, **options) -> Artifact:
        from . import build_netspec, report_lines
        from .resources import default_max_memory, parse_bytes

        limit = default_max_memory() if max_memory is None else parse_bytes(max_memory)
        spec = build_netspec(compiled.quantized, max_memory=limit)  # checks that the network can be built and fits
        resources = report_lines(spec)
        lines = ["Loihi 2 resources:"] + ["  " + ln for ln in resources]
        regions = {r.name: {"nodes": r.nodes, "buffered": r.buffered, "added_latency": r.added_latency}
                   for r in spec.regions.values()}
        meta = {"source": source or {}, "report": list(compiled.lines) + resources,
                "extra": {"lava": {"latency": spec.latency, "time_mixing_latency": spec.time_mixing_latency, "T": spec.T,
                                   "regions": regions, "resources": resources, "run_config": RUN_CONFIG}}}
        return Artifact(self, compiled.quantized, compiled.quantized, meta=meta, lines=lines, cache={"netspec": spec})

    def run(self, artifact: Artifact, x, *, progress: bool = False) -> RunOutput:
        import numpy as np

        from spikec.targets.intref.executor import clipped_input_lines

        from . import build_netspec
        from .runner import run_lava

        spec = artifact.cache.get("netspec") or artifact.cache.setdefault("netspec", build_netspec(artifact.graph))
        r = run_lava(spec, x, progress=progress)
        return RunOutput(outputs=[o.numpy() for o in r.real_outputs()],
                         layers={k: v.numpy() for k, v in r.values.items()},
                         sources=neuron_sources(artifact.graph),
                         lines=[f"lava: {r.steps} steps (Loihi2SimCfg fixed_pt), build {r.build_seconds:.2f} s, "
                                f"run {r.run_seconds:.2f} s, {r.timings['steps_per_second']:.1f} steps/s"],
                         warnings=clipped_input_lines(artifact.graph, np.asarray(x)),
                         details={"steps": r.steps, "steps_per_second": r.timings["steps_per_second"]})

    def check(self, compiled, artifact, x, reference):
        """Every Lava stage (neuron layers and the other stages) and the outputs equal intref's."""
        return compare_with_reference(self.run(artifact, x), reference, self.reference_name, exact=True)

    def load(self, path) -> Artifact:
        a = super().load(path)
        a.lines = ["Loihi 2 resources:"] + ["  " + ln for ln in a.meta.get("lava", {}).get("resources", [])]
        return a
