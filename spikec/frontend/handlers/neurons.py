"""Spiking neurons: spikec's neuron op (:mod:`spikec.frontend.neurons`) and the ops of a
spikingjelly exported program, whose initial membrane is a constant fill (``full_like`` & co)."""

from __future__ import annotations

import torch

from ... import ir
from .. import layouts
from .base import Poison, handles, op_name


@handles("aten.full_like", "aten.zeros_like", "aten.full", "aten.zeros", "aten.new_zeros", "aten.new_full")
def _full_like(c, x, value=0.0, *rest, **kwargs):
    """Only as a neuron's initial state (spikingjelly exported programs); a constant fill."""
    op = op_name(c.cur)
    if op in ("aten.zeros_like", "aten.zeros", "aten.new_zeros"):
        value = 0.0
    elif op == "aten.new_full":
        value = rest[0] if rest else kwargs.get("fill_value")
    return ("full_like", float(value))


def _neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init):
    """A multi-step neuron over the time axis.  On a tensor whose time axis is merged into the batch
    ([T*B, ...], as QKFormer's code runs some of its LIF layers) the upstream neuron steps through
    time and batch together, so in a batch a sample's spikes depend on the samples before it; for one
    sample (B = 1, what a chip runs) the merged axis is exactly time.  spikec compiles that
    per-sample meaning, notes it, and ``verify`` runs such a torch model one sample at a time."""
    x = layouts.time_major(c, c.act(x))
    if x.layout != "split" or x.batch_at:  # [T, B·N, ...]: a neuron per position, whatever the batch holds
        layouts.need_plain(c, x, "a spiking neuron layer")
    if x.layout != "split":
        path, typ = c.module_of_current()
        c.batch_dependent.append(path)
        c.notes.append(f"module '{path}' ({typ}) runs a multi-step neuron over a [T*B, ...] tensor: upstream, a "
                       "sample's spikes then depend on the samples batched before it; spikec compiles the per-sample "
                       "meaning (B = 1: the merged axis is time), and verify runs the torch model one sample at a time")
    name = c.emit(ir.NeuronNode, [x.value], primary=True, model=model, v_threshold=float(v_threshold),
                  v_reset=None if v_reset is None else float(v_reset), tau=None if tau is None else float(tau),
                  decay_input=bool(decay_input), leak_rate=None if leak_rate is None else float(leak_rate),
                  v_init=float(v_init))
    return x.like(name)


@handles("spikec.neuron")
def _spikec_neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init):
    return _neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init)


def _sj_v_init(c, v, expected: float):
    if not (isinstance(v, tuple) and v[0] == "full_like" and v[1] == expected):
        raise c.unsupported(f"a spikingjelly neuron whose initial membrane is not the constant {expected}")


def _with_membranes(c, spikes):
    """spikingjelly's neuron ops return (spikes, v, v_seq): the membranes are Poison (refused if used)."""
    return spikes, Poison(c.unsupported("reading a neuron's membrane")), Poison(c.unsupported("reading a neuron's membrane"))


@handles("sj_lif.forward")
def _sj_lif(c, x, v, tau, decay_input, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    return _with_membranes(c, _neuron(c, x, "LIF", threshold, reset, tau, decay_input, None, v_init))


@handles("sj_if.forward")
def _sj_if(c, x, v, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    return _with_membranes(c, _neuron(c, x, "IF", threshold, reset, None, True, None, v_init))


@handles("sj_plif.forward")
def _sj_plif(c, x, v, w, decay_input, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    wt = c.const(w)
    if wt is None:
        raise c.unsupported("a parametric LIF whose w is not a constant")
    rate = float(torch.tensor(wt).float().sigmoid().item())
    return _with_membranes(c, _neuron(c, x, "LIF", threshold, reset, 1.0 / rate, decay_input, rate, v_init))
