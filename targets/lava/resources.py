"""Resource report of a Lava network for Loihi 2: per stage neurons, synapses, fan-in / fan-out and an
estimate of neuromorphic cores, plus what needs microcode or the host on real hardware.

Per-core limits used (Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2",
technology brief, 2021: up to 1 million neurons and 120 million synapses on 128 neuromorphic cores
per chip), assuming an even split per core:

* neurons per core:  1,048,576 / 128 = 8,192
* synapses per core: 120,000,000 / 128 = 937,500

Real mappings also depend on fan-in, weight precision and axon routing; this is a lower bound.

Synapses are counted twice: ``synapses`` is the unrolled count (one per source-destination pair,
what a Dense / Sparse connection stores), ``weights`` what is stored when a convolution's shared
kernel is counted once (as lava-dl netx counts it); the cores use the unrolled count.

Region processes (:class:`~.netspec.Region`: integer kernels, products, added constants, time
mixing) are listed with what they run: they hold no neurons and use no neuromorphic cores; on a
Loihi 2 system their host arithmetic runs on the embedded (Lakemont) cores or the host, and a
buffering (time-mixing) region adds T − 1 steps of latency, which the report states.

:func:`estimate_memory` prices the Lava CPU simulation of the network before it is built (one
operating-system process per Lava process: stages, regions, connections, delay relays, sinks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikec import ir

from .netspec import Connection, ConvWeights, NetSpec, Region

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
    "region": "embedded / host cores: integer kernels in host arithmetic (custom process)",
}


@dataclass
class StageResources:
    name: str
    kind: str
    neurons: int
    synapses: int  # unrolled: one per source-destination pair
    fan_in: int
    fan_out: int
    cores: int
    mapping: str
    weights: int = 0  # stored: a convolution's shared kernel counted once


def _row_nnz(w) -> np.ndarray:
    return w.row_nnz() if isinstance(w, ConvWeights) else np.diff(w.indptr)


def _col_nnz(w) -> np.ndarray:
    return w.col_nnz() if isinstance(w, ConvWeights) else np.bincount(w.indices, minlength=w.shape[1])


def _stored(w) -> int:
    return w.stored if isinstance(w, ConvWeights) else int(w.nnz)


def resource_report(spec: NetSpec) -> list[StageResources]:
    incoming: dict[str, list[Connection]] = {}
    outgoing: dict[str, list[Connection]] = {}
    for c in spec.connections:
        incoming.setdefault(c.dst, []).append(c)
        outgoing.setdefault(c.src, []).append(c)
    rows = []
    for name, st in spec.stages.items():
        if st.kind == "region_out":  # a value a region process sends (its row: below)
            continue
        ins = incoming.get(name, [])
        syn = sum(c.weights.nnz for c in ins)
        fan_in = 0
        if ins:
            per_row = sum(_row_nnz(c.weights) for c in ins)
            fan_in = int(np.max(per_row)) if np.size(per_row) else 0
        outs = outgoing.get(name, [])
        fan_out = 0
        if outs:
            per_col = sum(_col_nnz(c.weights) for c in outs)
            fan_out = int(np.max(per_col))
        cores = 0 if st.kind == "source" else max(1, math.ceil(st.size / NEURONS_PER_CORE), math.ceil(syn / SYNAPSES_PER_CORE))
        rows.append(StageResources(name, st.kind, st.size, syn, fan_in, fan_out, cores, MAPPING.get(st.kind, st.kind),
                                   sum(_stored(c.weights) for c in ins)))
    for r in spec.regions.values():
        rows.append(_region_row(r, incoming.get(r.name, []), [c for v in r.outputs for c in outgoing.get(v, [])],
                                spec.graph))
    return rows


def _region_row(r: Region, ins: list[Connection], outs: list[Connection], graph) -> StageResources:
    """A region process: no neurons and no neuromorphic cores (host arithmetic); the synapses of
    the connections into it, its fan-out the largest of its output values'.  Its stored weights
    include those of the synapses it computes itself (:func:`region_weights`)."""
    fan_in = max((int(np.max(_row_nnz(c.weights))) for c in ins if c.weights.shape[0]), default=0)
    fan_out = max((int(np.max(_col_nnz(c.weights))) for c in outs if c.weights.shape[1]), default=0)
    return StageResources(r.name, "region", 0, sum(c.weights.nnz for c in ins), fan_in, fan_out, 0, MAPPING["region"],
                          sum(_stored(c.weights) for c in ins) + region_weights(graph, r))


def region_weights(graph, r: Region) -> int:
    """The weights of the synapses a region computes in host arithmetic (a kernel counted once)."""
    return sum(int(np.size(graph[v].weight)) for v in r.nodes if isinstance(graph[v], ir.SynapseNode))


def region_ops(spec: NetSpec, r: Region) -> str:
    """What a region runs, by operation with counts (integer kernels by name)."""
    ops: dict[str, int] = {}
    for v in r.nodes:
        n = spec.graph[v]
        op = n.kernel.replace("_", " ") if n.op == "integer_kernel" else n.op
        ops[op] = ops.get(op, 0) + 1
    return ", ".join(f"{op} x{k}" if k > 1 else op for op, k in ops.items())


def region_lines(spec: NetSpec) -> list[str]:
    """The region processes: what they run, with which modules, and the latency time mixing adds."""
    if not spec.regions:
        return []
    out = ["custom region processes (integer kernels in host arithmetic, intref's arithmetic; on Loihi 2 these "
           "run on embedded cores, not on neuromorphic cores):"]
    for r in spec.regions.values():
        mods = list(dict.fromkeys(spec.graph[v].source for v in r.nodes if spec.graph[v].source))
        timing = (f"buffers the T = {spec.T} steps of a sample (time mixing): +{r.added_latency} steps" if r.buffered
                  else "per step: +0 steps")
        held = sum(spec.graph.types[v].time == 1 < spec.T for v in r.outputs)
        sends = f" ({held} one-step, sent on each of the T output steps)" if held else ""
        inner = region_weights(spec.graph, r)
        weights = f"; {inner:,} synapse weights computed in the region" if inner else ""
        where = f"; modules {', '.join(mods[:6])}{' ...' if len(mods) > 6 else ''}" if mods else "; the top-level forward"
        out.append(f"  {r.name}: {region_ops(spec, r)}; {timing}; {len(r.inputs)} in / {len(r.outputs)} out values{sends}"
                   f"{weights}{where}")
    out.append(f"latency {spec.latency} steps, of which {spec.time_mixing_latency} added by time mixing")
    return out


# ------------------------------------------------------------------------------------------------
# memory of the Lava CPU simulation, before it is built
# ------------------------------------------------------------------------------------------------

# Measured with Lava 0.10.0 on Python 3.11 (2-core machine, torch imported before the runtime forks):
# zoo sj_spikformer, 46 Lava processes, peak PSS of the whole process tree 699 MB with a 329 MB host
# before the run, i.e. about 8 MB per process before its own data; rounded up for margin.
PROCESS_BYTES = 12 << 20
HOST_BYTES = 512 << 20
COPIES = 3  # a process's arrays live in the host's Process object, the worker's model and one temporary
# messages a Lava channel holds between two processes (the runner's compile_config; Lava's default is
# 64): a channel is that many message buffers of shared memory, 256 MB at Lava's default for a vector of
# a million values; the processes step in lockstep, so a few are enough
CHANNEL_SLOTS = 4
MESSAGE_BYTES = 8  # per value of a message (float64 / int64 payloads; int32 ones take half)


@dataclass
class MemoryEstimate:
    """Bytes of the Lava simulation by part (see :func:`estimate_memory`)."""

    processes: int  # number of Lava processes (one OS process each)
    process_bytes: int
    weight_bytes: int  # connection weights (Dense: the dense matrix; Sparse: CSR; Conv: the kernel)
    buffer_bytes: int  # delay relays, convolution working buffers, neuron state
    host_bytes: int  # the compiling / runtime host process and the network description

    @property
    def total(self) -> int:
        return self.process_bytes + self.weight_bytes + self.buffer_bytes + self.host_bytes

    def summary(self) -> str:
        return (f"{self.processes} Lava processes {format_bytes(self.process_bytes)}, weights {format_bytes(self.weight_bytes)}, "
                f"buffers {format_bytes(self.buffer_bytes)}, host {format_bytes(self.host_bytes)}")


def _connection_bytes(c: Connection) -> tuple[int, int]:
    """(weights, buffers) in bytes of one connection process."""
    w = c.weights
    n_out, n_in = w.shape
    if isinstance(w, ConvWeights):
        k = w.core
        kernel = int(np.asarray(k.weight).size) * 4
        idx = 8 * ((0 if w.pre is None else len(w.pre)) + (0 if w.post is None else len(w.post)))
        if k.layout == "conv":
            taps = int(np.prod(k.weight.shape[2:]))
            work = 8 * (k.in_feats[0] * taps * int(np.prod(k.out_feats[1:])) + k.n_out)  # im2col + result, float64
        else:
            work = 8 * (k.n_in + k.n_out)
        return COPIES * (kernel + idx), 2 * work + 8 * (n_in + n_out)
    if c.kind == "dense":
        return COPIES * 4 * n_out * n_in, 8 * (n_in + n_out)
    return COPIES * (8 * int(w.nnz) + 4 * (n_out + 1)), 8 * (n_in + n_out)


def estimate_memory(spec: NetSpec) -> MemoryEstimate:
    """The memory of running ``spec`` in Lava's CPU simulator, from its description alone:

    * one process per stage (source, neuron layers, custom stages), per region, per connection, per delay
      relay (one per producer and delay) and per sink (one per recorded stage), each
      :data:`PROCESS_BYTES`;
    * region working values (:func:`_region_bytes`);
    * connection weights, :data:`COPIES` times: Dense 4 bytes per matrix entry, Sparse 8 per
      stored synapse, a convolution its kernel and gather vectors;
    * buffers: delay relays (delay + 1 vectors), convolution im2col buffers, neuron state
      (u, v, bias: 8 bytes each per neuron), the channels between processes (:func:`channel_bytes`);
    * the host: :data:`HOST_BYTES` plus the network description's index maps."""
    region_outs = sum(st.kind == "region_out" for st in spec.stages.values())
    processes = len(spec.stages) - region_outs + len(spec.regions) + len(spec.connections) + len(spec.recorded)
    weights = buffers = 0
    relays = set()
    for c in spec.connections:
        wb, bb = _connection_bytes(c)
        weights += wb
        buffers += bb
        if c.delay:
            relays.add((c.src, c.delay))
    for r in spec.regions.values():
        buffers += _region_bytes(spec, r)
        for item in r.ports:
            if isinstance(item, tuple) and item[4]:
                relays.add((item[2], item[4]))
    for st in spec.stages.values():
        buffers += 3 * 8 * st.size
        for item in st.inputs:
            if isinstance(item, tuple) and item[4]:
                relays.add((item[2], item[4]))
            if isinstance(item, tuple):
                buffers += 8 * len(item[3])
    for src, d in relays:
        buffers += 2 * 4 * (d + 1) * spec.stages[src].size
    processes += len(relays)
    buffers += channel_bytes(spec, relays)
    host = HOST_BYTES + sum(8 * (len(c.weights.pre) if c.weights.pre is not None else 0)
                            for c in spec.connections if isinstance(c.weights, ConvWeights))
    return MemoryEstimate(processes, processes * PROCESS_BYTES, weights, buffers, host)


def channel_bytes(spec: NetSpec, relays) -> int:
    """The shared memory of the channels between Lava processes: :data:`CHANNEL_SLOTS` messages each,
    one channel per port-to-port link: into and out of every connection, into every region input (a
    gather receives its producer's whole vector) and out of every region output, every stage to its
    read-out sink, through every delay relay."""
    values = sum(c.weights.shape[0] + c.weights.shape[1] for c in spec.connections)
    values += sum(spec.stages[s].size for s in spec.recorded if s in spec.stages)
    values += sum(2 * spec.stages[src].size for src, _ in relays)
    for r in spec.regions.values():
        values += sum(spec.graph.types[v].numel for v in r.outputs)
        values += sum(spec.stages[item[2]].size for item in r.ports if isinstance(item, tuple) and item[2] in spec.stages)
    return CHANNEL_SLOTS * MESSAGE_BYTES * values


def _region_bytes(spec: NetSpec, r: Region) -> int:
    """A region's memory: its working values (:func:`region_working_bytes`), twice (the kernels'
    temporaries), plus its nodes' weights and constants in the host and the worker."""
    params = sum(np.asarray(a).nbytes for v in r.nodes for a in (getattr(spec.graph[v], "weight", None),
                                                                  getattr(spec.graph[v], "constant", None)) if a is not None)
    return 2 * region_working_bytes(spec, r) + COPIES * params


def region_working_bytes(spec: NetSpec, r: Region) -> int:
    """The widest cut of a region's evaluation (:func:`~.region.evaluate` drops a value after its last
    reader): its inputs (kept for the whole evaluation: a buffered region's T steps of a T-step input,
    one step of a one-step one) plus the node values alive together, int64, with the steps each holds
    (a buffered region's values hold their own time steps; a per-step region's one)."""
    types = spec.graph.types

    def size(v):
        return types[v].numel * 8 * (types[v].time if r.buffered else 1)

    live = sum(size(v) for v in r.inputs)
    peak = live
    kept = {*r.outputs, *r.inputs}
    dead_after = ir.last_reads([spec.graph[v] for v in r.nodes])
    for v in r.nodes:
        live += size(v)
        peak = max(peak, live)
        live -= sum(size(i) for i in dead_after[v] if i not in kept)
    return peak


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def parse_bytes(text) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GB"``, ``"123456"`` (bytes) → bytes (binary units)."""
    if isinstance(text, (int, float)):
        return int(text)
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if t[-1:] in "KMGT" else t) * scale)
    except ValueError:
        from spikec.errors import SpikecError

        raise SpikecError(f"not a memory size: {text!r} (e.g. 8G, 512M, 1.5G)") from None


def default_max_memory() -> int:
    """Half of the machine's RAM (MemTotal of /proc/meminfo, else os.sysconf)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 << 30


def report_lines(spec: NetSpec) -> list[str]:
    rows = resource_report(spec)
    out = [f"{'stage':36s} {'kind':14s} {'neurons':>8s} {'synapses':>9s} {'weights':>8s} {'fan-in':>7s} {'fan-out':>7s} "
           f"{'cores':>5s}  mapping"]
    for r in rows:
        out.append(f"{r.name[:36]:36s} {r.kind:14s} {r.neurons:8d} {r.synapses:9d} {r.weights:8d} {r.fan_in:7d} {r.fan_out:7d} "
                   f"{r.cores:5d}  {r.mapping}")
    total = sum(r.cores for r in rows)
    n_conv = sum(isinstance(c.weights, ConvWeights) for c in spec.connections)
    n_loihi = sum(c.loihi_connections for c in spec.connections)
    per_exp = f"; {n_loihi} Loihi connections, one per weight exponent" if n_loihi != len(spec.connections) else ""
    out.append(f"total: {sum(r.neurons for r in rows if r.kind != 'source')} neurons, "
               f"{sum(r.synapses for r in rows)} synapses unrolled ({sum(r.weights for r in rows)} weights stored, "
               f"{n_conv} of {len(spec.connections)} connections convolutional{per_exp}), >= {total} cores; "
               f"latency {spec.latency} steps, T = {spec.T}")
    out.append(f"limits: {NEURONS_PER_CORE} neurons / {SYNAPSES_PER_CORE} synapses per core ({LIMITS_SOURCE})")
    chips = -(-total // CORES_PER_CHIP)
    if chips > 1:
        out.append(f"needs at least {chips} Loihi 2 chips ({total} cores > {CORES_PER_CHIP} cores per chip): a multi-chip "
                   "system (e.g. Kapoho Point, 8 chips), or a smaller model")
    else:
        out.append(f"fits on one Loihi 2 chip ({total} of {CORES_PER_CHIP} cores, lower bound)")
    if spec.memory is not None:
        out.append(f"Lava CPU simulation: about {format_bytes(spec.memory.total)} ({spec.memory.summary()})")
    out.extend(region_lines(spec))
    host = [n for n in spec.host_nodes if spec.graph[n].op not in ("output", "dequantize")]
    if host:
        out.append(f"host tail (after the network, on the host): {', '.join(host)}")
    return out
