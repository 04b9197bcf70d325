"""Lava connections deliver intref's input currents exactly, not only the same spikes: for every
neuron stage, the sum of its connections' outputs (:meth:`Connection.output`, the arithmetic of the
Lava processes, which tests/targets/lava/test_conv_connection.py and test_lava_semantics.py hold to
Lava's own), given intref's values of the stages they read, equals intref's current, every step and
sample (a spike comparison can hide a current that differs below the threshold).  What the stages
and regions themselves compute, and the delays, are checked by the Lava runs (spikes and outputs).
Every Lava family; synapses whose output channels have weight
exponents of their own (one stock Sparse per exponent for a map that is not weight-shared, one
ConvConnection for a convolution); a left shift after a floored synapse output (no folded form)."""

import numpy as np
import pytest
import torch
from conftest import LAVA_FAMILIES, first_samples

from spikec import ir
from spikec.compiler import compile_graph
from spikec.targets.intref.executor import run_int
from spikec.targets.lava import build_netspec
from spikec.targets.lava.netspec import ConvWeights
from spikec.targets.lava.runner import run_lava

T = 3


def _synapse(name, inp, shape, exps, layout="linear", seed=0, **kw):
    exps = np.asarray(exps, np.int64)
    e = int(exps.min())
    mantissas = np.random.default_rng(seed).integers(-127, 128, shape) * 2  # MIXED: even
    w = mantissas << (exps - e).reshape(-1, *([1] * (len(shape) - 1)))
    return ir.SynapseNode(name, (inp,), "m." + name, layout=layout, weight=w.astype(np.int32), weight_exp=e,
                          channel_exp=exps, **kw)


def _graph(features, middle, last):
    return ir.Graph([ir.InputNode("x", (), features=features, time=T, layout="sequence"),
                     ir.QuantizeInputNode("q", ("x",), scale=1 / 255), *middle,
                     ir.LoihiNeuronNode("n", (last,), "lif", dv=2048, vth=40), ir.DequantizeNode("dq", ("n",)),
                     ir.OutputNode("o", ("dq",))]).validate()


def assert_currents_equal(g: ir.Graph, spec, ri) -> int:
    """Every neuron stage's input current, from its connections, == intref's; returns the values compared."""
    compared = 0
    for name, st in spec.stages.items():
        if st.kind not in ("lif", "reset_lif"):
            continue
        want = sum(ri.values[i].long() for i in g[name].inputs).numpy()  # [T, B, *features]
        conns = [c for c in spec.connections if c.dst == name]
        sources = {c.src: ri.values[c.src].long().numpy() for c in conns}
        for t in range(want.shape[0]):
            for b in range(want.shape[1]):
                got = sum(c.output(sources[c.src][min(t, len(sources[c.src]) - 1), b].reshape(-1)) for c in conns)
                assert np.array_equal(got, want[t, b].reshape(-1)), f"{name}: current differs at step {t}, sample {b}"
                compared += want[t, b].size
    return compared


@pytest.mark.parametrize("family", LAVA_FAMILIES)
def test_connections_deliver_intrefs_currents(zoo_models, family):
    _, x, g = zoo_models[family]
    q = compile_graph(g, "lava", input_range=(0, 2)).quantized
    spec = build_netspec(q)
    assert assert_currents_equal(q, spec, run_int(q, first_samples(x, g, 3), record=True)) > 0


def _lava_equals_intref(g, features):
    x = np.random.default_rng(1).random((T, 4, *features), dtype=np.float32)
    spec = build_netspec(g)
    ri, lr = run_int(g, x, record=True), run_lava(spec, x)
    assert torch.equal(lr.values["n"], ri.values["n"].to(lr.values["n"].dtype))
    assert 0 < float(ri.values["n"].float().mean()) < 1, "the neurons fire, not always"
    assert assert_currents_equal(g, spec, ri) > 0
    return spec


CASES = {
    "linear_one_position": ((6,), dict(shape=(5, 6), exps=[-3, -1, 0, -3, 2])),
    "conv": ((2, 5, 5), dict(shape=(3, 2, 3, 3), exps=[-2, 0, -1], layout="conv", stride=(1, 1), padding=(1, 1),
                             dilation=(1, 1), groups=1)),
    "depthwise": ((4, 5, 5), dict(shape=(4, 1, 3, 3), exps=[-3, -1, -3, 0], layout="conv", stride=(1, 1),
                                  padding=(1, 1), dilation=(1, 1), groups=4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_channel_exponents_on_lava_equal_intref(case):
    features, kw = CASES[case]
    g = _graph(features, [_synapse("s", "q", **kw)], "s")
    spec = _lava_equals_intref(g, features)
    conns = [c for c in spec.connections if c.synapse == "s"]
    groups = len(g["s"].channel_groups())
    if case == "linear_one_position":  # a dense map: one stock connection per exponent, stored sparse
        assert sorted(c.exp for c in conns) == sorted({e for e in kw["exps"]}) and len(conns) == groups
        assert all(c.kind == "sparse" and c.channel_part for c in conns)
    else:  # one ConvConnection standing for the exponents' connections
        assert len(conns) == 1 and isinstance(conns[0].weights, ConvWeights) and conns[0].loihi_connections == groups


def test_a_left_shift_after_a_floored_synapse_output_runs_in_a_region():
    """⌊a·2^e⌋·2 is not ⌊a·2^(e+1)⌋: Lava cannot fold the shift into the exponent."""
    g = _graph((6,), [_synapse("s", "q", (5, 6), [-3, -1, -2, -3, -2]), ir.ShiftNode("sh", ("s",), "m.sh", shift=1)],
               "sh")
    spec = _lava_equals_intref(g, (6,))
    assert any("sh" in r.nodes for r in spec.regions.values())
