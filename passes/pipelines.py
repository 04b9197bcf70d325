"""Named pass pipelines per target and the runner that checks the graph after every pass.

The runner validates the graph after each pass (shapes, kinds, references, acyclicity: every node's
``infer`` re-checks its own invariants, e.g. an addressed accumulation's spike operand must be
binary), records node counts before / after and each pass's report, and can dump the IR after a
named pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from spikec.errors import SpikecError
from spikec.ir import Graph

from .base import PassReport, PassResult
from .causal_time_conv_to_delays import causal_time_conv_to_delays
from .cleanup import cleanup
from .copy_linear_inputs_per_consumer import copy_linear_inputs_per_consumer
from .distribute_over_spike_sums import distribute_over_spike_sums
from .fold_batchnorm import fold_batchnorm
from .fold_sums_into_synapses import fold_sums_into_synapses
from .merge_repconv import merge_repconv
from .merge_scale_into_threshold import merge_scale_into_threshold
from .spike_matmul_to_addressed_accumulation import spike_matmul_to_addressed_accumulation

PASSES: dict[str, Callable[[Graph], PassResult]] = {
    "cleanup": cleanup,
    "causal_time_conv_to_delays": causal_time_conv_to_delays,
    "fold_batchnorm": fold_batchnorm,
    "merge_repconv": merge_repconv,
    "merge_scale_into_threshold": merge_scale_into_threshold,
    "spike_matmul_to_addressed_accumulation": spike_matmul_to_addressed_accumulation,
    "distribute_over_spike_sums": distribute_over_spike_sums,
    "fold_sums_into_synapses": fold_sums_into_synapses,
    "copy_linear_inputs_per_consumer": copy_linear_inputs_per_consumer,
}

_FLOAT = ["cleanup", "fold_batchnorm", "merge_repconv", "merge_scale_into_threshold",
          "spike_matmul_to_addressed_accumulation", "cleanup"]

# integer targets: sums over positions get synapses (and fixed-point scales) of their own; every reader
# of a real-valued linear value (a neuron's input current, a max pool of reals) its own copy of the
# synapses and sums behind it (its own scale and weight exponents); a synapse over a sum of spike trains
# one copy per train (Lava reads each through a connection of its own, which floors its part for a
# negative weight exponent: the integer model floors each part too, and the exponent is free)
_INTEGER = _FLOAT[:-1] + ["fold_sums_into_synapses", "copy_linear_inputs_per_consumer", "cleanup",
                          "distribute_over_spike_sums"]

PIPELINES: dict[str, list[str]] = {
    # the reference float pipeline: every exact rewrite
    "float": _FLOAT + ["distribute_over_spike_sums"],
    "intref": _INTEGER,
    "lava": _INTEGER,
    # NIR has no node for time mixing, but Delay: causal convolutions over time become delayed taps
    "nir": _FLOAT[:2] + ["causal_time_conv_to_delays"] + _FLOAT[2:] + ["distribute_over_spike_sums"],
}

# per-target options of a pass: Loihi's LIF has one threshold per layer, so the integer targets move
# per-channel scales into the producing weights rather than into per-channel thresholds
PASS_OPTIONS: dict[str, dict[str, dict]] = {
    "intref": {"merge_scale_into_threshold": {"per_layer_threshold": True}},
    "lava": {"merge_scale_into_threshold": {"per_layer_threshold": True}},
}


@dataclass
class PipelineResult:
    graph: Graph
    reports: list[PassReport] = field(default_factory=list)
    counts: list[tuple[str, int]] = field(default_factory=list)  # ("input" | pass, node count after)

    def summary_lines(self) -> list[str]:
        out = [f"nodes: {self.counts[0][1]} -> {self.counts[-1][1]}"]
        for (_, n), rep in zip(self.counts[1:], self.reports):
            out.append(f"  {rep.summary()}  ({n} nodes)")
        return out


def resolve(pipeline: str | Sequence[str], skip: Iterable[str] = ()) -> list[str]:
    names = PIPELINES[pipeline] if isinstance(pipeline, str) else list(pipeline)
    skip = set(skip)
    unknown = [s for s in set(names) | skip if s not in PASSES]
    if unknown:
        raise SpikecError(f"unknown pass(es) {', '.join(sorted(unknown))}; known: {', '.join(PASSES)}")
    return [n for n in names if n not in skip]


def run_pipeline(graph: Graph, pipeline: str | Sequence[str] = "float", skip: Iterable[str] = (),
                 dump_after: Optional[str] = None, on_dump: Optional[Callable[[str, Graph], None]] = None,
                 options: Optional[dict[str, dict]] = None,
                 on_pass: Optional[Callable[[PassReport, int], None]] = None) -> PipelineResult:
    """Run the named pipeline (or a list of pass names); ``options`` (pass name -> keyword
    arguments) replaces a named pipeline's :data:`PASS_OPTIONS`.  ``on_pass(report, nodes)`` sees
    every pass's report as soon as the pass has run (so a later failure does not hide them)."""
    names = resolve(pipeline, skip)
    if dump_after is not None and dump_after not in names:
        raise SpikecError(f"--dump-ir-after {dump_after}: not in the pipeline ({', '.join(names)})")
    graph.validate()
    result = PipelineResult(graph, [], [("input", len(graph))])
    if options is None:
        options = PASS_OPTIONS.get(pipeline, {}) if isinstance(pipeline, str) else {}
    for name in names:
        r = PASSES[name](result.graph, **options.get(name, {}))
        try:
            r.graph.validate()
        except SpikecError as e:
            raise SpikecError(f"internal error: pass {name} produced an invalid graph: {e}") from e
        result.graph = r.graph
        result.reports.append(r.report)
        result.counts.append((name, len(r.graph)))
        if on_pass is not None:
            on_pass(r.report, len(r.graph))
        if dump_after == name and on_dump is not None:
            on_dump(name, r.graph)
    return result
