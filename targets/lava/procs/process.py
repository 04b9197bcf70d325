"""Custom Lava processes for what Lava 0.10.0 lacks.  Each docstring says how it maps to Loihi 2."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from spikec import loihi  # numpy only
from spikec.targets.lava.region import MAX_PORTS  # input / output ports of an IntRegion


class ResetLIF(AbstractProcess):
    """Loihi LIF (same u / v recurrences as lava.proc.lif: :func:`spikec.loihi.lif_step`) with a
    *soft* reset (v -= vth·64 + 1) or a reset to a value, an initial membrane, and a periodic state
    reset for streamed samples (u, v restored at steps where time_step % reset_interval ==
    reset_offset).

    Loihi 2: a microcode neuron program (the LIF program with a different reset instruction)."""

    def __init__(self, *, shape, du, dv, vth, bias_mant, bias_exp, reset, reset_value, v_init,
                 reset_interval, reset_offset, name=None):
        super().__init__(shape=shape, name=name, reset=reset, reset_value=reset_value, v_init=v_init,
                         reset_interval=reset_interval, reset_offset=reset_offset, du=du, dv=dv, vth=vth)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=v_init)
        self.bias = Var(shape=shape, init=np.broadcast_to(loihi.bias_value(bias_mant, bias_exp), shape).astype(np.int64))


class SpikeAnd(AbstractProcess):
    """AND of two spike vectors, each gathered from its source by an index map (no delay).

    Loihi 2: two-input coincidence; realisable as a LIF with two unit synapses, threshold 1.5 and
    full decay (one extra step), or a microcode neuron."""

    def __init__(self, *, shape, size_a, size_b, gather_a, gather_b, name=None):
        super().__init__(shape=shape, name=name, gather_a=gather_a, gather_b=gather_b)
        self.in_a = InPort(shape=(size_a,))
        self.in_b = InPort(shape=(size_b,))
        self.s_out = OutPort(shape=shape)


class AddressedAccumulation(AbstractProcess):
    """Matrix product with one binary operand, by addressed accumulation: for every active spike,
    add the selected row / column of the other operand; graded integer output (no delay).

    Loihi 2: the spike operand addresses a synaptic table that holds the other operand
    (plastic / re-written each step), i.e. a dendritic accumulation; in practice host or embedded
    cores for the dynamic operand."""

    def __init__(self, *, shape, size_a, size_b, shape_a, shape_b, shape_out, spike_operand, gather_a, gather_b, name=None):
        super().__init__(shape=shape, name=name, shape_a=shape_a, shape_b=shape_b, shape_out=shape_out,
                         spike_operand=spike_operand, gather_a=gather_a, gather_b=gather_b)
        self.in_a = InPort(shape=(size_a,))
        self.in_b = InPort(shape=(size_b,))
        self.a_out = OutPort(shape=shape)


class IntMaxPool(AbstractProcess):
    """Max pooling of a gathered integer (graded or spike) vector per step (no delay).  Of spikes it
    is an OR.

    Loihi 2: OR of spikes = a LIF with unit synapses, threshold 0 and full decay; max of graded
    values needs a microcode neuron program (compare-and-keep) or the host."""

    def __init__(self, *, shape, size_in, in_shape, kernel, stride, padding, dilation, ceil_mode, gather, name=None):
        super().__init__(shape=shape, name=name, in_shape=in_shape, kernel=kernel, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=ceil_mode, gather=gather)
        self.a_in = InPort(shape=(size_in,))
        self.a_out = OutPort(shape=shape)


class DelayRelay(AbstractProcess):
    """Delays an integer vector by ``delay`` steps (a ring buffer), to balance path latencies.

    Loihi 2: synaptic delays on the consuming connection (up to 62 steps), or axon delays."""

    def __init__(self, *, shape, delay, name=None):
        super().__init__(shape=shape, name=name, delay=delay)
        self.a_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


class MemmapSink(AbstractProcess):
    """Host read-out: writes the input of every step into row (time_step − 1) of a numpy memmap
    file created by the host (milliseconds, where Var.get() costs ~10 µs per element).

    Loihi 2: spike / graded output via the host interface (not part of the chip network)."""

    def __init__(self, *, shape, path, steps, name=None):
        super().__init__(shape=shape, name=name, path=path, steps=steps)
        self.a_in = InPort(shape=shape)


class ConvConnection(AbstractProcess):
    """A weight-shared connection, held as its kernel: ``a = post · ((K · pre · s) << weight_exp)``
    (``>> −weight_exp``, floor), sent one step later, exactly Lava's fixed_pt ``Dense`` on the
    unrolled matrix ``post · K · pre`` (binary input: ``s != 0`` counts as 1; graded: the payload).
    ``weight_exp`` is one exponent, or one per output of ``K`` when its output channels have
    exponents of their own: then the process stands for one Loihi connection per exponent (each
    the channels of that exponent), as many stock ``Dense`` would compute.

    ``K`` is a convolution (``layout "conv"``: ``weight`` ``[C_out, C_in / groups, *kernel]``, PyTorch
    indexing, 1-D or 2-D, any stride / padding / dilation / groups) or a ``[out, in]`` matrix
    applied at every leading position (``"linear"``); ``pre`` / ``post`` are gathers (index
    vectors, −1 for a zero; None for the identity) of the data movement around it.  The weights are
    the IR's effective 8-bit weights (no clipping or LSB truncation is applied here: the netspec
    checked that Lava's Dense would leave them unchanged).

    Loihi 2: a convolutional synapse group (shared weights, as lava-dl netx's Conv blocks)."""

    def __init__(self, *, size_in, size_out, layout, weight, weight_exp, in_feats, out_feats, stride=(), padding=(),
                 dilation=(), groups=1, pre=None, post=None, graded=False, name=None):
        super().__init__(shape=(size_out,), name=name, layout=layout, weight=weight, weight_exp=weight_exp,
                         in_feats=tuple(in_feats), out_feats=tuple(out_feats), stride=tuple(stride), padding=tuple(padding),
                         dilation=tuple(dilation), groups=groups, pre=pre, post=post, graded=graded)
        self.s_in = InPort(shape=(size_in,))
        self.a_out = OutPort(shape=(size_out,))




class IntRegion(AbstractProcess):
    """A region of quantized IR nodes that no stock process runs (integer layer norm, softmax,
    sigmoid, GELU, ReLU, products of two values, added constants, concatenations, time mixing, and
    the linear nodes between them), evaluated with intref's integer semantics
    (:mod:`spikec.targets.lava.region`).  Input port k (``in_k``, int32) carries the value
    ``inputs[k]`` (or the producer vector ``gathers[k]`` selects it from); output port j
    (``out_j``, int32) the value ``outputs[j]``; ``overflow[j]`` counts the steps in which it
    left int32 (the runner refuses the run then, naming the value).

    Timing: inputs of a sample's step τ arrive at step ``i·T + τ + 1 + in_depth``.  Per step
    (``buffered`` False) the outputs of step τ leave in the same step.  ``buffered`` (time
    mixing): the T input steps are kept, the nodes run once when step T − 1 arrives, and output
    step k leaves at input step T − 1 + k (T − 1 steps of latency).  A one-step output (time mixed
    into the features) is sent on each of the T output steps, as a one-step input is streamed (the
    sender holds it): a buffered receiver uses the step its sample's step 0 brings, a per-step one
    every step's copy, so both evaluate it as intref broadcasts a one-step value.

    Loihi 2: host-arithmetic (embedded x86 / Lakemont cores or the host), not neuromorphic cores."""

    def __init__(self, *, nodes, types, T, in_depth, buffered, last_step, inputs, gathers, in_sizes, outputs, name=None):
        super().__init__(shape=(1,), name=name, nodes=nodes, types=types, T=T, in_depth=in_depth, buffered=buffered,
                         last_step=last_step, inputs=list(inputs), gathers=list(gathers), outputs=list(outputs))
        if len(inputs) > MAX_PORTS or len(outputs) > MAX_PORTS:
            raise ValueError(f"IntRegion {name}: at most {MAX_PORTS} inputs and outputs")
        for k in range(MAX_PORTS):
            setattr(self, f"in_{k}", InPort(shape=(in_sizes[k] if k < len(inputs) else 1,)))
            size = int(np.prod(types[outputs[k]].features)) if k < len(outputs) else 1
            setattr(self, f"out_{k}", OutPort(shape=(size,)))
        self.overflow = Var(shape=(MAX_PORTS,), init=0)
