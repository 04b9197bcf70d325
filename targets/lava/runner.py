"""Build the Lava process network of a :class:`~.netspec.NetSpec` and run it in Lava's CPU simulator
(``Loihi2SimCfg(select_tag="fixed_pt")``), samples streamed back to back.

Sample i's time step τ enters the source at global step ``i·T + τ + 1``; a stage of depth d sees it
at ``i·T + τ + 1 + d``.  Neuron layers reset u, v at the first step of every sample
(``LIFReset`` / ``ResetLIF`` with ``reset_interval = T``, ``reset_offset = (1 + d) mod T``), so no
flushing is needed between samples; the run takes ``N·T + latency`` steps.  Every stage output is
written each step to a numpy memmap by a :class:`~.procs.process.MemmapSink`, and the host tail
(classifier) is computed from those values with intref's kernels.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from spikec.compat.lava311 import ensure_lava
from spikec.errors import SpikecError
from spikec.runtime.execute import input_to_values

from ..intref.executor import quantize_input, run_int
from .netspec import Connection, ConvWeights, NetSpec
from .resources import CHANNEL_SLOTS


@dataclass
class LavaRunResult:
    values: dict[str, torch.Tensor]  # stage outputs as [T, B, *features] int64
    outputs: list[torch.Tensor]  # integer outputs (host tail on Lava's values)
    scales: list[float]
    steps: int
    build_seconds: float
    run_seconds: float
    timings: dict = field(default_factory=dict)

    def real_outputs(self) -> list[torch.Tensor]:
        return [o.to(torch.float64) * s for o, s in zip(self.outputs, self.scales)]


def _source_data(spec: NetSpec, x) -> tuple[np.ndarray, int]:
    """Quantized input as RingBuffer data [n_in, N·T + latency + 1] and the batch size N."""
    graph = spec.graph
    (inp,) = graph.inputs
    qnode = graph[spec.source]
    _, xs = input_to_values(graph, x)  # [T_in, B, *f] float
    q = quantize_input(qnode, xs)  # int64
    T_in, B = q.shape[:2]
    frames = q.reshape(T_in, B, -1)
    if T_in == 1:
        frames = frames.expand(spec.T, B, frames.shape[-1])
    steps = B * spec.T + spec.latency + 1
    data = np.zeros((frames.shape[-1], steps), np.int32)
    seq = frames.permute(1, 0, 2).reshape(B * spec.T, -1).numpy()  # sample-major
    data[:, : B * spec.T] = seq.T
    return data, B


def _region_process(cls, spec: NetSpec, r):
    """The IntRegion process of region ``r``: its nodes, the types they read, its ports."""
    graph = spec.graph
    gathers = {item[1]: item for item in r.ports if isinstance(item, tuple)}
    in_sizes = [spec.stages[gathers[k][2]].size if k in gathers else graph.types[v].numel for k, v in enumerate(r.inputs)]
    types = {v: graph.types[v] for v in [*r.inputs, *r.nodes]}
    return cls(nodes=[graph[v] for v in r.nodes], types=types, T=spec.T, in_depth=r.in_depth, buffered=r.buffered,
               last_step=r.added_latency,
               inputs=r.inputs, gathers=[gathers[k][3] if k in gathers else None for k in range(len(r.inputs))],
               in_sizes=in_sizes, outputs=r.outputs, name=r.name)


def _region_overflows(spec: NetSpec, procs: dict) -> dict[str, int]:
    """Per region output value, the steps in which it left int32 (each region counts them in its
    ``overflow`` Var: an exception inside a Lava process model would stall the run)."""
    found = {}
    for r in spec.regions.values():
        counts = procs[r.name].overflow.get()
        found.update({v: int(counts[j]) for j, v in enumerate(r.outputs) if counts[j]})
    return found


def connection_process(c: Connection, name: Optional[str] = None):
    """The Lava process of a connection: a :class:`~.procs.process.ConvConnection` on the kernel's
    8-bit mantissas (an exponent per kernel output when the channels have their own) for a factored
    one, else a stock fixed_pt ``Dense`` / ``Sparse`` on the unrolled matrix."""
    ensure_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    from .procs.process import ConvConnection

    w = c.weights
    if isinstance(w, ConvWeights):  # the kernel, not the unrolled matrix
        k = w.core
        n = k.node
        shift = k.out_shift()
        return ConvConnection(size_in=w.n_src, size_out=w.shape[0], layout=k.layout,
                              weight=np.asarray(k.mantissas, np.int32), weight_exp=c.exp if shift is None else c.exp + shift,
                              in_feats=k.in_feats, out_feats=k.out_feats, stride=n.stride, padding=n.padding,
                              dilation=n.dilation, groups=n.groups, pre=w.pre, post=w.post, graded=c.graded, name=name)
    sign = {"mixed": SignMode.MIXED, "exc": SignMode.EXCITATORY, "inh": SignMode.INHIBITORY}[c.sign_mode]
    kw = dict(weight_exp=c.exp, num_weight_bits=8, sign_mode=sign, num_message_bits=24 if c.graded else 0, name=name)
    if c.kind == "dense":
        return Dense(weights=w.toarray().astype(np.int32), **kw)
    return Sparse(weights=w.astype(np.int32), **kw)


def build_network(spec: NetSpec, data: np.ndarray, steps: int, workdir: Path):
    """Instantiate the Lava processes; returns (processes by stage, sinks {stage: (path, size)})."""
    ensure_lava()
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset

    from .procs.process import (
        AddressedAccumulation,
        DelayRelay,
        IntMaxPool,
        IntRegion,
        MemmapSink,
        ResetLIF,
        SpikeAnd,
    )

    graph = spec.graph
    T = spec.T
    procs: dict[str, object] = {}
    out_port: dict[str, object] = {}
    in_ports: dict[str, list] = {}

    for name, st in spec.stages.items():
        n = st.node
        if st.kind == "region_out":  # sent by its region's process (below)
            continue
        if st.kind == "source":
            p = RingBuffer(data=data)
            procs[name], out_port[name] = p, p.s_out
            continue
        offset = (1 + st.depth) % T
        if st.kind in ("lif", "reset_lif"):
            feats = graph.types[name].features
            bm = np.broadcast_to(np.asarray(n.bias_mant), feats).reshape(-1)
            be = np.broadcast_to(np.asarray(n.bias_exp), feats).reshape(-1)
            if st.kind == "lif":
                p = LIFReset(shape=(st.size,), du=n.du, dv=n.dv, vth=n.vth, bias_mant=bm.copy(), bias_exp=be.copy(),
                             reset_interval=T, reset_offset=offset, name=name)
            else:
                p = ResetLIF(shape=(st.size,), du=n.du, dv=n.dv, vth=n.vth, bias_mant=bm, bias_exp=be, reset=n.reset,
                             reset_value=n.reset_value, v_init=n.v_init, reset_interval=T, reset_offset=offset, name=name)
            procs[name], out_port[name], in_ports[name] = p, p.s_out, [p.a_in]
            continue
        gathers = {g[1]: g for g in st.inputs if isinstance(g, tuple)}
        size_of = {}
        for port in range(len(n.inputs)):
            g = gathers.get(port)
            size_of[port] = spec.stages[g[2]].size if g else graph.types[n.inputs[port]].numel

        def gather_idx(port, gathers=gathers, size_of=size_of):
            g = gathers.get(port)
            return g[3] if g else np.arange(size_of[port])

        if st.kind == "and":
            p = SpikeAnd(shape=(st.size,), size_a=size_of[0], size_b=size_of[1], gather_a=gather_idx(0),
                         gather_b=gather_idx(1), name=name)
            procs[name], out_port[name], in_ports[name] = p, p.s_out, [p.in_a, p.in_b]
        elif st.kind == "addressed_acc":
            p = AddressedAccumulation(shape=(st.size,), size_a=size_of[0], size_b=size_of[1],
                                      shape_a=graph.types[n.inputs[0]].features, shape_b=graph.types[n.inputs[1]].features,
                                      shape_out=graph.types[name].features, spike_operand=n.spike_operand,
                                      gather_a=gather_idx(0), gather_b=gather_idx(1), name=name)
            procs[name], out_port[name], in_ports[name] = p, p.a_out, [p.in_a, p.in_b]
        elif st.kind == "maxpool":
            p = IntMaxPool(shape=(st.size,), size_in=size_of[0], in_shape=graph.types[n.inputs[0]].features,
                           kernel=list(n.kernel), stride=list(n.stride), padding=list(n.padding),
                           dilation=list(n.dilation), ceil_mode=n.ceil_mode, gather=gather_idx(0), name=name)
            procs[name], out_port[name], in_ports[name] = p, p.a_out, [p.a_in]
        else:  # pragma: no cover
            raise SpikecError(f"lava: unknown stage kind {st.kind}")

    for r in spec.regions.values():
        p = _region_process(IntRegion, spec, r)
        procs[r.name], in_ports[r.name] = p, [getattr(p, f"in_{k}") for k in range(len(r.inputs))]
        for j, v in enumerate(r.outputs):
            out_port[v] = getattr(p, f"out_{j}")

    # connections and gathers; latency differences are balanced by delay relays on the producer side
    # (one per producer and delay: Lava's DelaySparse rebuilds its per-delay matrices every step)
    relays: dict[tuple[str, int], object] = {}

    def delayed(src: str, delay: int):
        if delay == 0:
            return out_port[src]
        key = (src, delay)
        if key not in relays:
            relay = DelayRelay(shape=(spec.stages[src].size,), delay=delay, name=f"{src}#delay{delay}")
            out_port[src].connect(relay.a_in)
            relays[key] = relay
        return relays[key].a_out

    units = [(name, st.inputs) for name, st in spec.stages.items()] + [(r.name, r.ports) for r in spec.regions.values()]
    for name, items in units:
        for item in items:
            if isinstance(item, Connection):
                c = item
                conn = connection_process(c, name=c.name)
                delayed(c.src, c.delay).connect(conn.s_in)
                conn.a_out.connect(in_ports[c.dst][c.port])
            else:
                _, port, src, _, delay = item
                delayed(src, delay).connect(in_ports[name][port])

    sinks = {}
    for name in spec.recorded:
        path = workdir / f"{len(sinks):04d}.i32"
        size = spec.stages[name].size
        np.memmap(path, dtype=np.int32, mode="w+", shape=(steps, size)).flush()
        sink = MemmapSink(shape=(size,), path=str(path), steps=steps, name=f"sink:{name}")
        out_port[name].connect(sink.a_in)
        sinks[name] = (path, size)
    return procs, sinks


def run_lava(spec: NetSpec, x, progress: bool = False, chunk: Optional[int] = None,
             workdir: Optional[str] = None) -> LavaRunResult:
    """Run the network on inputs ``x`` (model input layout) and return every stage's values."""
    ensure_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    data, B = _source_data(spec, x)
    steps = data.shape[1] - 1
    tmp = tempfile.TemporaryDirectory(prefix="spikec-lava-", dir=workdir)
    try:
        t0 = time.perf_counter()
        procs, sinks = build_network(spec, data, steps, Path(tmp.name))
        t_build = time.perf_counter() - t0
        runner = procs[spec.source]
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
        chunk = chunk or max(spec.T, min(steps, 200))
        t1 = time.perf_counter()
        done = 0
        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task("lava (Loihi2SimCfg fixed_pt)", total=steps)
        try:
            while done < steps:
                n = min(chunk, steps - done)
                runner.run(condition=RunSteps(num_steps=n), run_cfg=cfg,
                           compile_config={"pypy_channel_size": CHANNEL_SLOTS})
                done += n
                if bar:
                    bar.update(task, completed=done)
            overflows = _region_overflows(spec, procs)  # read before stop()
        finally:
            if bar:
                bar.stop()
            runner.stop()
        if overflows:
            raise SpikecError("lava: region values leave the int32 of Lava's ports (Lava differs from intref there): "
                              + ", ".join(f"{v} ({n} steps)" for v, n in overflows.items()))
        t_run = time.perf_counter() - t1
        values = {}
        graph = spec.graph
        for name, (path, size) in sinks.items():
            mm = np.array(np.memmap(path, dtype=np.int32, mode="r", shape=(steps, size)))
            d, t = spec.stages[name].depth, graph.types[name].time  # a one-step region output: its first output step
            rows = (np.arange(B)[:, None] * spec.T + np.arange(t)[None, :] + d)  # [B, t]
            v = mm[rows.T.reshape(-1)].reshape(t, B, *graph.types[name].features)
            binary = not spec.stages[name].graded  # spike trains: uint8, as intref holds them
            values[name] = torch.from_numpy(v.astype(np.uint8 if binary else np.int64))
    finally:
        tmp.cleanup()
    host = run_int(graph, x, overrides=values)
    return LavaRunResult(values, host.outputs, host.scales, steps, t_build, t_run,
                         {"steps_per_second": steps / t_run if t_run else float("inf")})
