"""Loihi 2 cores per layer, from the Lava target's resource model (``targets/lava/resources.py``).

The model is compiled with the Lava target's pipeline and quantization (the report's own integer
model when it came from the same passes: intref's does), and its network
description (``NetSpec``) is built only when the target's memory estimate of the Lava simulation
stays under ``max_memory`` (default: half of the machine's RAM, as ``spikec compile`` uses): the
estimate is made before anything is unrolled.  When the target refuses (memory, or a layer it cannot
map), the cores are "n/a" and the reason is kept.  This module is the only place in the report that
names a target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from spikec import ir
from spikec.errors import SpikecError

LAVA = "lava"  # the target whose resource model the report uses


@dataclass
class LoihiResources:
    """Cores per Lava stage (a neuron layer, or a custom stage: addressed accumulation, AND, max pool)."""

    cores: dict[str, int] = field(default_factory=dict)  # stage name -> cores (lower bound)
    synapses: dict[str, int] = field(default_factory=dict)  # stage name -> unrolled incoming synapses
    host: list[str] = field(default_factory=list)  # nodes the Lava network leaves to the host (the tail)
    reason: Optional[str] = None  # why there are no figures (the target refused), else None
    lines: list[str] = field(default_factory=list)  # the target's resource report

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def total(self) -> Optional[int]:
        return sum(self.cores.values()) if self.available else None

    def to_dict(self) -> dict:
        return {"available": self.available, "total_cores": self.total, "reason": self.reason, "cores": self.cores,
                "synapses": self.synapses, "host": self.host, "lines": self.lines}


def _same_integer_model(compiled, lava, calib, input_range, skip) -> bool:
    """Whether ``compiled`` (another target's result) is what the Lava target would compile with these
    arguments: an integer model from the same passes and pass options (intref and lava share them),
    the same calibration data, input range and skipped passes."""
    from spikec.passes.pipelines import resolve

    t = compiled.target
    return (compiled.quantized is not None and t is not None and resolve(t.pipeline) == resolve(lava.pipeline)
            and (t.pass_options or {}) == (lava.pass_options or {}) and compiled.calib is calib
            and tuple(compiled.input_range) == tuple(input_range) and tuple(compiled.skip) == tuple(skip))


def loihi_resources(graph: ir.Graph, *, calib=None, input_range=(0.0, 1.0), skip=(),
                    max_memory=None, compiled=None) -> LoihiResources:
    """The Loihi 2 resource model of the traced ``graph`` (see the module docstring).  ``compiled``:
    the result of compiling ``graph`` with the same calib / input range / skip for another target,
    used instead of compiling again when its integer model is the Lava target's."""
    from spikec.compiler import compile_graph
    from spikec.targets import get_target
    from spikec.targets.lava import build_netspec, report_lines, resource_report
    from spikec.targets.lava.resources import default_max_memory, parse_bytes

    limit = default_max_memory() if max_memory is None else parse_bytes(max_memory)
    lava = get_target(LAVA)
    try:
        if compiled is None or not _same_integer_model(compiled, lava, calib, input_range, skip):
            compiled = compile_graph(graph, lava, calib=calib, input_range=input_range, skip=skip)
        spec = build_netspec(compiled.quantized, max_memory=limit)
    except SpikecError as e:
        return LoihiResources(reason=str(e))
    rows = [r for r in resource_report(spec) if r.kind != "source"]
    host = [n for n in spec.host_nodes if spec.graph[n].op not in ("output", "dequantize")]
    return LoihiResources({r.name: r.cores for r in rows}, {r.name: r.synapses for r in rows}, host,
                          lines=report_lines(spec))
