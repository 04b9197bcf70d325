"""fixed_pt process models of spikec's custom Lava processes (integer semantics identical to
targets.intref.kernels; see each process's docstring).

The LIF arithmetic is :func:`spikec.loihi.lif_step` itself (spikec.loihi imports numpy only, so
these models stay torch-free); no copy of it lives here."""

from __future__ import annotations

import math

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikec import loihi  # numpy only (no torch in Lava's process-model workers)
from spikec.ir.index_maps import conv_apply, linear_apply  # numpy only
from spikec.targets.lava import region  # numpy at run time (intref's integer kernels on numpy arrays)
from spikec.targets.lava.procs.process import (  # absolute: Lava loads this file by path
    MAX_PORTS,
    AddressedAccumulation,
    ConvConnection,
    DelayRelay,
    IntMaxPool,
    IntRegion,
    MemmapSink,
    ResetLIF,
    SpikeAnd,
)


def max_pool(x: np.ndarray, kernel, stride, padding, dilation, ceil_mode) -> np.ndarray:
    """Integer max pooling of x [C, *spatial] with PyTorch's output size rule (padding = -inf).
    numpy only: torch's thread pools must not be used in Lava's forked process-model workers."""
    nd = x.ndim - 1
    outs = []
    for a in range(nd):
        L, k, s, p, d = x.shape[1 + a], kernel[a], stride[a], padding[a], dilation[a]
        span = L + 2 * p - d * (k - 1) - 1
        o = (math.ceil(span / s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= L + p:
            o -= 1
        outs.append(o)
    lo = np.iinfo(np.int64).min
    pads = [(0, 0)] + [(padding[a], max(0, (outs[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1 - x.shape[1 + a] - padding[a]))
                       for a in range(nd)]
    xp = np.pad(x, pads, constant_values=lo)
    out = np.full((x.shape[0], *outs), lo, dtype=np.int64)
    for offs in np.ndindex(*kernel):
        sl = (slice(None),) + tuple(slice(offs[a] * dilation[a], offs[a] * dilation[a] + stride[a] * (outs[a] - 1) + 1, stride[a])
                                    for a in range(nd))
        np.maximum(out, xp[sl], out=out)
    return out


@implements(proc=ResetLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyResetLIFModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def run_spk(self):
        p = self.proc_params
        a = self.a_in.recv().astype(np.int64)
        if (self.time_step % p["reset_interval"]) == (p["reset_offset"] % p["reset_interval"]):
            self.u[:] = 0
            self.v[:] = p["v_init"]
        u, v, s = loihi.lif_step(self.u, self.v, a, du=p["du"], dv=p["dv"], vth=p["vth"], bias=self.bias,
                                 reset=p["reset"], reset_value=p["reset_value"])
        self.u[:] = u
        self.v[:] = v
        self.s_out.send(s.astype(np.int32))


@implements(proc=SpikeAnd, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeAndModel(PyLoihiProcessModel):
    in_a: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    in_b: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        a = self.in_a.recv()[self.proc_params["gather_a"]]
        b = self.in_b.recv()[self.proc_params["gather_b"]]
        self.s_out.send(((a != 0) & (b != 0)).astype(np.int32))


@implements(proc=AddressedAccumulation, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAddressedAccumulationModel(PyLoihiProcessModel):
    in_a: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    in_b: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        p = self.proc_params
        a = self.in_a.recv()[p["gather_a"]].astype(np.int64).reshape(p["shape_a"])
        b = self.in_b.recv()[p["gather_b"]].astype(np.int64).reshape(p["shape_b"])
        if p["spike_operand"] == 0:  # rows of b selected by the spikes of a
            out = np.einsum("...nk,...kj->...nj", (a != 0).astype(np.int64), b)
        else:
            out = np.einsum("...nk,...kj->...nj", a, (b != 0).astype(np.int64))
        self.a_out.send(np.broadcast_to(out, p["shape_out"]).reshape(-1).astype(np.int32))


@implements(proc=IntMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntMaxPoolModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        p = self.proc_params
        x = self.a_in.recv()[p["gather"]].astype(np.int64).reshape(p["in_shape"])
        self.a_out.send(max_pool(x, p["kernel"], p["stride"], p["padding"], p["dilation"], p["ceil_mode"]).reshape(-1).astype(np.int32))


@implements(proc=DelayRelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayRelayModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.buffer = None

    def run_spk(self):
        x = self.a_in.recv()
        d = self.proc_params["delay"]
        if self.buffer is None:
            self.buffer = np.zeros((d + 1, x.shape[0]), np.int32)
        self.buffer = np.roll(self.buffer, 1, axis=0)
        self.buffer[0] = x
        self.a_out.send(self.buffer[d])


@implements(proc=MemmapSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMemmapSinkModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.mm = None

    def run_spk(self):
        x = self.a_in.recv()
        if self.mm is None:
            p = self.proc_params
            self.mm = np.memmap(p["path"], dtype=np.int32, mode="r+", shape=(p["steps"], x.shape[0]))
        self.mm[self.time_step - 1] = x
        if self.time_step == self.proc_params["steps"]:
            self.mm.flush()


def _gather(idx, x: np.ndarray) -> np.ndarray:
    return x if idx is None else np.where(idx >= 0, x[np.maximum(idx, 0)], 0)


@implements(proc=ConvConnection, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvConnectionModel(PyLoihiProcessModel):
    """Lava Dense's step on the factored matrix: send the buffer, receive, accumulate exactly
    (int64, or float64 GEMM where a bound proves it exact), shift by the weight exponent (floor)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.a_buf = None

    def run_spk(self):
        p = self.proc_params
        if self.a_buf is None:
            self.a_buf = np.zeros(self.a_out.shape, np.int64)
        self.a_out.send(self.a_buf.astype(np.int32))
        s = self.s_in.recv()
        x = s.astype(np.int64) if p["graded"] else (s != 0).astype(np.int8)
        x = _gather(p["pre"], x).reshape(p["in_feats"])
        if p["layout"] == "conv":
            acc = conv_apply(x, p["weight"], p["stride"], p["padding"], p["dilation"], p["groups"], p["out_feats"][1:])
        else:
            acc = linear_apply(x, p["weight"])
        self.a_buf = _gather(p["post"], loihi.floor_shift(acc.reshape(-1), p["weight_exp"]))


_INT32 = np.iinfo(np.int32)


@implements(proc=IntRegion, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntRegionModel(PyLoihiProcessModel):
    """:func:`spikec.targets.lava.region.evaluate` per step, or once per sample on the buffered T
    steps (see :class:`IntRegion` for the timing).  Its ports ``in_k`` / ``out_k`` (int32) are set
    below the class (Lava looks them up by name)."""

    overflow: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.buffers = None
        self.pending = None

    def _received(self) -> dict[str, np.ndarray]:
        """This step's input values [1, 1, *features] (a gather picks a value from its producer's vector)."""
        p = self.proc_params
        values = {}
        for k, (value, gather) in enumerate(zip(p["inputs"], p["gathers"])):
            x = getattr(self, f"in_{k}").recv()
            if gather is not None:
                x = x[gather]
            values[value] = x.astype(np.int64).reshape(1, 1, *p["types"][value].features)
        return values

    def _buffered_outputs(self, values: dict, step: int) -> list[np.ndarray]:
        """Keep step ``step``; at L = ``last_step`` run the region on the kept steps; send output step
        (step − L) mod T (a one-step output: its one step, on each of the T output steps)."""
        p = self.proc_params
        T, types = p["T"], p["types"]
        if self.buffers is None:
            self.buffers = {v: np.zeros((T, *x.shape[1:]), np.int64) for v, x in values.items()}
            self.pending = [np.zeros((T, 1, *types[v].features), np.int64) for v in p["outputs"]]
        for v, x in values.items():
            self.buffers[v][step] = x[0]
        last = p["last_step"]
        if step == last:
            env = region.evaluate(p["nodes"], {v: b[:types[v].time] for v, b in self.buffers.items()},
                                  region.Context(types, T, None), keep=set(p["outputs"]))
            self.pending = [env[v] for v in p["outputs"]]
        return [out[(step - last) % T % out.shape[0]] for out in self.pending]

    def run_spk(self):
        p = self.proc_params
        T = p["T"]
        step = (self.time_step - 1 - p["in_depth"]) % T  # the sample step of the inputs arriving now
        values = self._received()
        if p["buffered"]:
            outs = self._buffered_outputs(values, step)
        else:
            env = region.evaluate(p["nodes"], values, region.Context(p["types"], T, step), keep=set(p["outputs"]))
            outs = [env[v][0] for v in p["outputs"]]
        for j, out in enumerate(outs):
            if out.size and (out.max() > _INT32.max or out.min() < _INT32.min):
                self.overflow[j] += 1  # the host refuses the run (an exception here would stall Lava)
            getattr(self, f"out_{j}").send(out.reshape(-1).astype(np.int32))


for _k in range(MAX_PORTS):  # the ports in_0 .. / out_0 .. of IntRegion
    setattr(PyIntRegionModel, f"in_{_k}", LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32))
    setattr(PyIntRegionModel, f"out_{_k}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32))
