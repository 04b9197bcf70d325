"""targets/intref/fusion.py: the per-spike-train copies of a synapse fused again where nothing floors."""

from __future__ import annotations

import numpy as np
import torch

from spikec import ir
from spikec.compiler import compile_graph
from spikec.targets.intref.executor import run_int
from spikec.targets.intref.fusion import fuse_exact_synapse_copies


def _copies(weight_exp: int, same_weights: bool = True) -> ir.Graph:
    """Two spike trains, each through its own copy of one integer synapse, summed into a neuron."""
    rng = np.random.default_rng(0)
    w = (rng.integers(-60, 60, (6, 5)) * 2).astype(np.int32)
    w2 = w if same_weights else w + 2
    nodes = [ir.InputNode("x", (), features=(5,), time=3, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1.0),
             ir.LoihiNeuronNode("s1", ("q",), vth=0, du=4095, dv=0),
             ir.LoihiNeuronNode("s2", ("q",), vth=1, du=4095, dv=0),
             ir.SynapseNode("w1", ("s1",), weight=w, weight_exp=weight_exp, bias=np.arange(6)),
             ir.SynapseNode("w2", ("s2",), weight=w2, weight_exp=weight_exp),
             ir.AddNode("sum", ("w1", "w2")),
             ir.LoihiNeuronNode("n", ("sum",), vth=2, du=4095, dv=1000),
             ir.OutputNode("o", ("n",))]
    return ir.Graph(nodes).validate()


def _synapses(g: ir.Graph) -> list[str]:
    return [n.name for n in g.nodes if isinstance(n, ir.SynapseNode)]


def test_fuses_exact_copies_bit_for_bit():
    g = _copies(weight_exp=1)
    f = fuse_exact_synapse_copies(g)
    assert _synapses(f) == ["sum"] and isinstance(f.producer(f["sum"].inputs[0]), ir.AddNode)
    assert np.array_equal(f["sum"].bias, np.arange(6))  # the one copy's bias, once
    x = torch.rand(3, 4, 5) * 8
    rec = run_int(g, x, record=True)
    assert torch.equal(rec.values["n"], run_int(f, x, record=True).values["n"])
    assert torch.equal(rec.outputs[0], run_int(g, x).outputs[0])  # a plain run executes the fused graph


def test_leaves_floored_different_or_kept_copies_apart():
    assert _synapses(fuse_exact_synapse_copies(_copies(weight_exp=-2))) == ["w1", "w2"]  # each floors its part
    assert _synapses(fuse_exact_synapse_copies(_copies(weight_exp=0, same_weights=False))) == ["w1", "w2"]
    assert _synapses(fuse_exact_synapse_copies(_copies(weight_exp=0), keep={"w2"})) == ["w1", "w2"]


def test_trained_digits_copies_fuse_and_run_the_same(tmp_path):
    from conftest import ROOT

    from examples.models.spikformer import spikformer_digits
    from spikec.frontend import trace

    net = spikformer_digits()
    net.load_state_dict(torch.load(ROOT / "examples" / "checkpoints" / "spikformer_digits.pth", weights_only=True)["model"])
    g = compile_graph(trace(net, (1, 8, 8)), "intref").quantized
    f = fuse_exact_synapse_copies(g)
    assert len(_synapses(f)) < len(_synapses(g))
    x = torch.rand(6, 1, 8, 8)
    assert torch.equal(run_int(g, x, record=True).outputs[0], run_int(g, x).outputs[0])


def test_leaves_a_broadcast_sum_apart():
    """conv(x) + conv(y) with y [2, 1, 1] broadcast over x's [2, 4, 4] is not conv(x + broadcast(y)): the
    1x1 map sees only the kernel's centre tap."""
    w = (np.random.default_rng(0).integers(-60, 60, (2, 2, 3, 3)) * 2).astype(np.int32)
    conv = dict(layout="conv", weight=w, weight_exp=0, stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    nodes = [ir.InputNode("x", (), features=(2, 4, 4), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1.0),
             ir.LoihiNeuronNode("s1", ("q",), vth=0, du=4095, dv=0),
             ir.MaxPoolNode("mp", ("s1",), kernel=(4, 4), stride=(4, 4), padding=(0, 0), dilation=(1, 1)),
             ir.SynapseNode("w1", ("s1",), **conv), ir.SynapseNode("w2", ("mp",), **conv),
             ir.AddNode("sum", ("w1", "w2")), ir.OutputNode("o", ("sum",))]
    g = ir.Graph(nodes).validate()
    assert _synapses(fuse_exact_synapse_copies(g)) == ["w1", "w2"]
    x = torch.rand(2, 3, 2, 4, 4) * 4
    assert torch.equal(run_int(g, x, record=True).outputs[0], run_int(g, x).outputs[0])
