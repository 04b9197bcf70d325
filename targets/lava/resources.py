"""Resource report of a Lava network for Loihi 2: per stage neurons, synapses, fan-in / fan-out and an
estimate of neuromorphic cores, plus what needs microcode or the host on real hardware.

Per-core limits used (Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2",
technology brief, 2021: up to 1 million neurons and 120 million synapses on 128 neuromorphic cores
per chip), assuming an even split per core:

* neurons per core:  1,048,576 / 128 = 8,192
* synapses per core: 120,000,000 / 128 = 937,500

Real mappings also depend on fan-in, weight precision and axon routing; this is a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .netspec import Connection, NetSpec

CORES_PER_CHIP = 128
NEURONS_PER_CORE = 8192
SYNAPSES_PER_CORE = 120_000_000 // 128
LIMITS_SOURCE = "Intel Labs, Loihi 2 technology brief (2021): 1M neurons, 120M synapses, 128 cores per chip"

MAPPING = {
    "source": "host input (graded 8-bit spikes)",
    "lif": "stock LIF (LIFReset for streaming)",
    "reset_lif": "microcode neuron (soft / value reset)",
    "and": "microcode neuron or LIF coincidence (custom process)",
    "addressed_acc": "embedded / host core: dynamic synaptic table (custom process)",
    "maxpool": "microcode neuron (graded max) / LIF OR for spikes (custom process)",
}


@dataclass
class StageResources:
    name: str
    kind: str
    neurons: int
    synapses: int
    fan_in: int
    fan_out: int
    cores: int
    mapping: str


def resource_report(spec: NetSpec) -> list[StageResources]:
    incoming: dict[str, list[Connection]] = {}
    outgoing: dict[str, list[Connection]] = {}
    for c in spec.connections:
        incoming.setdefault(c.dst, []).append(c)
        outgoing.setdefault(c.src, []).append(c)
    rows = []
    for name, st in spec.stages.items():
        ins = incoming.get(name, [])
        syn = sum(c.weights.nnz for c in ins)
        fan_in = 0
        if ins:
            per_row = sum(np.diff(c.weights.indptr) for c in ins)
            fan_in = int(np.max(per_row)) if np.size(per_row) else 0
        outs = outgoing.get(name, [])
        fan_out = 0
        if outs:
            per_col = sum(np.bincount(c.weights.indices, minlength=c.weights.shape[1]) for c in outs)
            fan_out = int(np.max(per_col))
        cores = 0 if st.kind == "source" else max(1, math.ceil(st.size / NEURONS_PER_CORE), math.ceil(syn / SYNAPSES_PER_CORE))
        rows.append(StageResources(name, st.kind, st.size, syn, fan_in, fan_out, cores, MAPPING.get(st.kind, st.kind)))
    return rows


def report_lines(spec: NetSpec) -> list[str]:
    rows = resource_report(spec)
    out = [f"{'stage':36s} {'kind':14s} {'neurons':>8s} {'synapses':>9s} {'fan-in':>7s} {'fan-out':>7s} {'cores':>5s}  mapping"]
    for r in rows:
        out.append(f"{r.name[:36]:36s} {r.kind:14s} {r.neurons:8d} {r.synapses:9d} {r.fan_in:7d} {r.fan_out:7d} {r.cores:5d}  {r.mapping}")
    total = sum(r.cores for r in rows)
    out.append(f"total: {sum(r.neurons for r in rows if r.kind != 'source')} neurons, "
               f"{sum(r.synapses for r in rows)} synapses, >= {total} cores; latency {spec.latency} steps, T = {spec.T}")
    out.append(f"limits: {NEURONS_PER_CORE} neurons / {SYNAPSES_PER_CORE} synapses per core ({LIMITS_SOURCE})")
    chips = -(-total // CORES_PER_CHIP)
    if chips > 1:
        out.append(f"needs at least {chips} Loihi 2 chips ({total} cores > {CORES_PER_CHIP} cores per chip): a multi-chip "
                   "system (e.g. Kapoho Point, 8 chips), or a smaller model")
    else:
        out.append(f"fits on one Loihi 2 chip ({total} of {CORES_PER_CHIP} cores, lower bound)")
    host = [n for n in spec.host_nodes if spec.graph[n].op not in ("output", "dequantize")]
    if host:
        out.append(f"host tail (after the network, on the host): {', '.join(host)}")
    return out
