"""Each pass alone: a positive case, a negative case (with its reason), numerical equivalence."""

import numpy as np
import pytest
import torch

from spikec import ir
from spikec.passes.cleanup import cleanup
from spikec.passes.distribute_over_spike_sums import distribute_over_spike_sums
from spikec.passes.fold_batchnorm import fold_batchnorm
from spikec.passes.merge_scale_into_threshold import merge_scale_into_threshold
from spikec.passes.spike_matmul_to_addressed_accumulation import spike_matmul_to_addressed_accumulation
from spikec.runtime.float_interpreter import run_float
from spikec.verification import compare_graphs

RNG = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def bn(name, src, c, axis=0):
    return ir.BatchNormNode(name, (src,), name, mean=f32(c, scale=0.3), var=np.abs(f32(c)) + 0.5,
                            weight=f32(c) + 1.0, bias=f32(c, scale=0.3), eps=1e-5, axis=axis)


def x_static(shape, batch=8, seed=0):
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed)) * 2


def graph(*nodes):
    return ir.Graph(nodes).validate()


def assert_equivalent(g0, g1, x, min_agreement=1.0, rtol=1e-5):
    c = compare_graphs(g0, g1, x)
    assert c.agreement >= min_agreement, "\n".join(c.lines())
    assert c.output_max_rel <= rtol, "\n".join(c.lines())
    return c


# ----------------------------------------------------------------------------------------------- BN
def conv_bn_graph(second_user=False):
    nodes = [
        ir.InputNode("x", (), features=(3, 6, 6)),
        ir.RepeatTimeNode("rep", ("x",), time=2),
        ir.ConvNode("conv", ("rep",), "conv", weight=f32(4, 3, 3, 3, scale=0.5), bias=f32(4), stride=(1, 1),
                    padding=(1, 1), dilation=(1, 1)),
        bn("bn", "conv", 4),
        ir.NeuronNode("lif", ("bn",), "lif"),
        ir.ReshapeNode("flat", ("lif",), features=(144,)),
        ir.LinearNode("fc", ("flat",), "fc", weight=f32(5, 144, scale=0.1), bias=None),
        bn("bn1d", "fc", 5),
        ir.OutputNode("out", ("bn1d",)),
    ]
    if second_user:
        nodes.insert(-1, ir.AddNode("also", ("conv", "conv")))
        nodes[-1] = ir.OutputNode("out", ("bn1d",))
        nodes.append(ir.OutputNode("out2", ("also",)))
    return graph(*nodes)


def test_fold_batchnorm_positive():
    g = conv_bn_graph()
    r = fold_batchnorm(g)
    assert r.report.fired == 2
    assert "batchnorm" not in r.graph.count_ops()
    assert r.graph["lif"].inputs == ("conv",)
    x = x_static((3, 6, 6))
    a, b = run_float(g, x, record=True), run_float(r.graph, x, record=True)
    torch.testing.assert_close(b.values["conv"], a.values["bn"], rtol=1e-5, atol=1e-5)
    assert_equivalent(g, r.graph, x)


def test_fold_batchnorm_negative_reasons():
    g = conv_bn_graph(second_user=True)
    r = fold_batchnorm(g)
    assert r.report.fired == 1  # only the linear one
    assert any("has other users" in why for _, why in r.report.not_applied)
    g2 = graph(ir.InputNode("x", (), features=(4,), time=2, layout="sequence"),
               ir.AddNode("a", ("x", "x")), bn("bn", "a", 4), ir.OutputNode("o", ("bn",)))
    r2 = fold_batchnorm(g2)
    assert r2.report.fired == 0 and "from a add" in r2.report.not_applied[0][1]


# ----------------------------------------------------------------------------------------- scales
def attention_graph(tokens=16, d=8, scale_between=True, reset=0.0, factor=0.125):
    """Spikformer SSA core: q, k, v spikes; attn = (q @ kT) * s @ v; LIF(th 0.5)."""
    nodes = [ir.InputNode("x", (), features=(3, tokens, d), time=3, layout="sequence")]
    for i, nm in enumerate("qkv"):
        nodes += [ir.SliceNode(f"{nm}_in", ("x",), axis=0, start=i, stop=i + 1),
                  ir.ReshapeNode(f"{nm}_r", (f"{nm}_in",), features=(tokens, d)),
                  ir.NeuronNode(nm, (f"{nm}_r",), nm, v_threshold=0.5)]
    nodes += [ir.PermuteNode("kt", ("k",), perm=(1, 0)), ir.MatMulNode("qk", ("q", "kt"), "attn")]
    if scale_between:
        nodes += [ir.ScaleNode("s", ("qk",), "attn", factor=factor), ir.MatMulNode("qkv", ("s", "v"), "attn")]
        last = "qkv"
    else:
        nodes += [ir.MatMulNode("qkv", ("qk", "v"), "attn"), ir.ScaleNode("s", ("qkv",), "attn", factor=factor)]
        last = "s"
    nodes += [ir.NeuronNode("attn_lif", (last,), "attn_lif", v_threshold=0.5, v_reset=reset),
              ir.OutputNode("o", ("attn_lif",))]
    return graph(*nodes)


def seq_input(g, batch=6, seed=1, scale=2.0):
    t = g.types["x"]
    return torch.rand((t.time, batch, *t.features), generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("between", [True, False])
def test_merge_scale_through_matmul(between):
    g = attention_graph(scale_between=between)
    r = merge_scale_into_threshold(g, unscale_decay_input=False)
    assert r.report.fired == 1 and "scale" not in r.graph.count_ops()
    assert r.graph["attn_lif"].v_threshold == 4.0
    assert r.graph.types[r.graph["attn_lif"].inputs[0]].kind is ir.Kind.COUNT
    x = seq_input(g)
    c = assert_equivalent(g, r.graph, x)
    assert c.positions > 0 and 0 < run_float(g, x, record=True).values["attn_lif"].mean() < 1


def test_merge_scale_negative_cases():
    r = merge_scale_into_threshold(attention_graph(factor=-0.5), unscale_decay_input=False)
    assert r.report.fired == 0 and "not positive" in r.report.not_applied[0][1]
    g = attention_graph()
    nodes = list(g.nodes[:-1]) + [ir.OutputNode("o", ("attn_lif",)), ir.OutputNode("o2", ("s",))]
    r = merge_scale_into_threshold(ir.Graph(nodes).validate(), unscale_decay_input=False)
    assert r.report.fired == 0 and "2 users" in r.report.not_applied[0][1]


def test_decay_input_unscaled_and_mean_to_sum():
    nodes = [ir.InputNode("x", (), features=(4, 10), time=4, layout="sequence"),
             ir.ReduceNode("m", ("x",), reduce="mean", axes=(1,)),
             ir.NeuronNode("lif", ("m",), v_threshold=0.3, tau=3.0),
             ir.NeuronNode("plif", ("x",), v_threshold=0.7, tau=1 / 0.4, leak_rate=0.4, v_reset=None),
             ir.OutputNode("o", ("lif",)), ir.OutputNode("o2", ("plif",))]
    g = graph(*nodes)
    r = merge_scale_into_threshold(g)
    lif, plif = r.graph["lif"], r.graph["plif"]
    assert r.graph["m"].reduce == "sum"
    assert lif.decay_input is False and lif.v_threshold == pytest.approx(0.3 * 10 * 3.0)
    assert plif.decay_input is False and plif.v_threshold == pytest.approx(0.7 / 0.4)
    c = compare_graphs(g, r.graph, seq_input(g, batch=64, scale=1.0))
    assert c.agreement >= 0.9999, "\n".join(c.lines())


def test_per_channel_scale_to_threshold_or_weights():
    factor = (np.abs(f32(4)) + 0.5).reshape(4, 1)
    nodes = [ir.InputNode("x", (), features=(6, 5), time=3, layout="sequence"),
             ir.ConvNode("conv", ("x",), weight=f32(4, 6, 1), bias=f32(4), stride=(1,), padding=(0,), dilation=(1,)),
             ir.ScaleNode("s", ("conv",), factor=factor),
             ir.NeuronNode("lif", ("s",)), ir.OutputNode("o", ("lif",))]
    g = graph(*nodes)
    x = seq_input(g, batch=32)
    r1 = merge_scale_into_threshold(g, unscale_decay_input=False)
    assert isinstance(r1.graph["lif"].v_threshold, np.ndarray)
    r2 = merge_scale_into_threshold(g, per_layer_threshold=True, unscale_decay_input=False)
    assert r2.graph["lif"].v_threshold == 1.0 and "weights" in r2.report.applied[0]
    for r in (r1, r2):
        assert "scale" not in r.graph.count_ops()
        assert compare_graphs(g, r.graph, x).agreement >= 0.999


# ------------------------------------------------------------------------------- spike products
def test_matmul_to_addressed_accumulation_and_reassociation():
    g = merge_scale_into_threshold(attention_graph(tokens=16, d=4, scale_between=False),
                                   unscale_decay_input=False).graph
    r = spike_matmul_to_addressed_accumulation(g)
    ops = r.graph.count_ops()
    assert "matmul" not in ops and ops["addressed_acc"] == 2
    assert any("re-associated: 2048 -> 512" in a for a in r.report.applied)
    x = seq_input(g)
    assert_equivalent(g, r.graph, x)
    assert torch.equal(run_float(g, x).outputs[0], run_float(r.graph, x).outputs[0])


def test_real_matmul_stays_and_is_reported():
    nodes = [ir.InputNode("x", (), features=(4, 4), time=2, layout="sequence"),
             ir.MatMulNode("mm", ("x", "x")), ir.MulNode("mul", ("x", "x")),
             ir.OutputNode("o", ("mm",)), ir.OutputNode("o2", ("mul",))]
    r = spike_matmul_to_addressed_accumulation(graph(*nodes))
    assert r.report.fired == 0
    reasons = [why for _, why in r.report.not_applied]
    assert any("not spike-driven: matmul of real x real" in w for w in reasons)
    assert any("elementwise product of real x real" in w for w in reasons)


def test_hadamard_of_spikes_becomes_and():
    nodes = [ir.InputNode("x", (), features=(2, 8), time=2, layout="sequence"),
             ir.SliceNode("a_in", ("x",), axis=0, start=0, stop=1), ir.SliceNode("b_in", ("x",), axis=0, start=1, stop=2),
             ir.NeuronNode("a", ("a_in",), v_threshold=0.5), ir.NeuronNode("b", ("b_in",), v_threshold=0.5),
             ir.MulNode("m", ("a", "b")), ir.OutputNode("o", ("m",))]
    g = graph(*nodes)
    r = spike_matmul_to_addressed_accumulation(g)
    assert r.graph["m"].op == "and"
    x = seq_input(g)
    assert torch.equal(run_float(g, x).outputs[0], run_float(r.graph, x).outputs[0])


# ----------------------------------------------------------------------------------- distribute
def residual_graph(graded=False):
    nodes = [ir.InputNode("x", (), features=(4, 9), time=3, layout="sequence"),
             ir.NeuronNode("s1", ("x",), v_threshold=0.6), ir.NeuronNode("s2", ("x",), v_threshold=1.2)]
    if graded:
        nodes.append(ir.AddNode("sum", ("s1", "x")))
    else:
        nodes.append(ir.AddNode("sum", ("s1", "s2")))
    nodes += [ir.ReshapeNode("r", ("sum",), features=(36,)),
              ir.LinearNode("fc", ("r",), "fc", weight=f32(5, 36, scale=0.3), bias=f32(5)),
              ir.NeuronNode("out_lif", ("fc",)), ir.OutputNode("o", ("fc",)), ir.OutputNode("o2", ("out_lif",))]
    return graph(*nodes)


def test_distribute_over_spike_sums():
    g = residual_graph()
    r = distribute_over_spike_sums(g)
    assert r.report.fired == 1
    lin = [n for n in r.graph.nodes if n.op == "linear"]
    assert len(lin) == 2 and sum(n.bias is not None for n in lin) == 1
    assert all(r.graph.types[n.inputs[0]].kind is ir.Kind.SPIKE for n in lin)
    assert_equivalent(g, r.graph, seq_input(g))


def test_distribute_reports_graded_inputs():
    r = distribute_over_spike_sums(residual_graph(graded=True))
    assert r.report.fired == 0 and "graded input remains" in r.report.not_applied[0][1]


# -------------------------------------------------------------------------------------- cleanup
def test_cleanup():
    nodes = [ir.InputNode("x", (), features=(4, 6), time=2, layout="sequence"),
             ir.NeuronNode("s", ("x",)),
             ir.ReshapeNode("r0", ("s",), features=(4, 6)),
             ir.ReshapeNode("r1", ("r0",), features=(24,)), ir.ReshapeNode("r2", ("r1",), features=(6, 4)),
             ir.PermuteNode("p1", ("r2",), perm=(1, 0)), ir.PermuteNode("p2", ("p1",), perm=(1, 0)),
             ir.ScaleNode("one", ("p2",), factor=1.0),
             ir.ReduceNode("m", ("one",), reduce="mean", axes=(0,)),
             ir.ReduceNode("mt", ("m",), reduce="mean", over_time=True),
             ir.LinearNode("head", ("mt",), "head", weight=f32(3, 4), bias=f32(3)),
             ir.NeuronNode("dead", ("x",)),
             ir.OutputNode("o", ("head",))]
    g = graph(*nodes)
    r = cleanup(g)
    ops = r.graph.count_ops()
    assert "permute" not in ops and "scale" not in ops and ops["reshape"] == 1 and "dead" not in r.graph
    assert r.graph["m"].reduce == "sum" and r.graph["mt"].reduce == "sum"
    np.testing.assert_allclose(r.graph["head"].weight, g["head"].weight / 12, rtol=1e-7)
    x = seq_input(g)
    torch.testing.assert_close(run_float(r.graph, x).outputs[0], run_float(g, x).outputs[0], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ repconv
def test_merge_repconv_meta_spikformer_repconv():
    """RepConv (1x1 -> BN + BN-aware pad -> dw3x3 -> 1x1 -> BN) + outer BN -> one 3x3 conv + bias."""
    from examples.models import zoo
    from examples.models.meta_spikformer import RepConv
    from spikec.frontend import trace
    from spikec.passes.merge_repconv import merge_repconv
    from spikec.passes.pipelines import run_pipeline

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            from spikingjelly.clock_driven.neuron import MultiStepLIFNode

            self.lif = MultiStepLIFNode(tau=2.0)
            self.q_conv = torch.nn.Sequential(RepConv(6, 6), torch.nn.BatchNorm2d(6))

        def forward(self, x):
            s = self.lif(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
            return self.q_conv(s.flatten(0, 1))

    net = Net().eval()
    x = torch.rand(8, 6, 5, 5) * 3
    zoo.prepare(net, x)
    g = trace(net, (6, 5, 5))
    assert g.count_ops()["pad"] == 1
    folded = run_pipeline(g, ["fold_batchnorm"]).graph
    r = merge_repconv(folded)
    convs = [n for n in r.graph.nodes if n.op == "conv"]
    assert len(convs) == 1 and "pad" not in r.graph.count_ops()
    (c,) = convs
    assert c.weight.shape == (6, 6, 3, 3) and c.padding == (1, 1) and c.bias is not None
    y_ref = net(x)
    y = run_float(r.graph, x).outputs[0]
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)


def _conv(name, src, cout, cin, k, pad=0, groups=1, bias=True):
    return ir.ConvNode(name, (src,), name, weight=f32(cout, cin // groups, k, k, scale=0.4), bias=f32(cout) if bias else None,
                       stride=(1, 1), padding=(pad, pad), dilation=(1, 1), groups=groups)


def test_merge_repconv_sepconv_and_parallel_branches():
    from spikec.passes.merge_repconv import merge_repconv

    nodes = [ir.InputNode("x", (), features=(4, 6, 6), time=2, layout="sequence"),
             ir.NeuronNode("s", ("x",), v_threshold=0.5),
             _conv("dw", "s", 4, 4, 3, pad=1, groups=4, bias=False), _conv("pw", "dw", 5, 4, 1),  # SepConv dw -> pw2
             ir.NeuronNode("s2", ("pw",), v_threshold=0.5),
             _conv("b3", "s2", 5, 5, 3, pad=1), _conv("b1", "s2", 5, 5, 1, pad=0),  # RepVGG branches
             ir.AddNode("rep", ("b3", "b1")), ir.OutputNode("o", ("rep",))]
    g = graph(*nodes)
    r = merge_repconv(g)
    assert r.graph.count_ops()["conv"] == 2
    assert any("synapses now see spikes" in a for a in r.report.applied)
    assert any("parallel branches" in a for a in r.report.applied)
    assert r.graph.types[r.graph["pw"].inputs[0]].kind is ir.Kind.SPIKE
    x = seq_input(g, batch=4)
    torch.testing.assert_close(run_float(r.graph, x).outputs[0], run_float(g, x).outputs[0], rtol=1e-4, atol=1e-5)


def test_merge_repconv_negative():
    from spikec.passes.merge_repconv import merge_repconv

    nodes = [ir.InputNode("x", (), features=(4, 6, 6), time=2, layout="sequence"),
             _conv("c1", "x", 4, 4, 3, pad=1), _conv("c2", "c1", 4, 4, 3, pad=1),
             ir.OutputNode("o", ("c2",))]
    r = merge_repconv(graph(*nodes))
    assert r.report.fired == 0
    assert "neither conv is pointwise" in r.report.not_applied[0][1]
    nodes = [ir.InputNode("x", (), features=(8,), time=2, layout="sequence"),
             ir.LinearNode("l1", ("x",), weight=f32(2, 8), bias=f32(2)),  # a bottleneck: merging grows it
             ir.LinearNode("l2", ("l1",), weight=f32(64, 2), bias=None), ir.OutputNode("o", ("l2",))]
    r = merge_repconv(graph(*nodes))
    assert r.report.fired == 0 and "merged weight is larger" in r.report.not_applied[0][1]
    nodes[2] = ir.LinearNode("l2", ("l1",), weight=f32(1, 2), bias=f32(1))
    g = graph(*nodes)
    r = merge_repconv(g)
    assert r.report.fired == 1 and r.graph.count_ops()["linear"] == 1
    x = seq_input(g)
    torch.testing.assert_close(run_float(r.graph, x).outputs[0], run_float(g, x).outputs[0], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------- fold sums into synapses
def token_sum_graph(leaf="conv"):
    """A residual stream of two convs over spikes, summed over positions into a neuron (SDT's
    head); ``leaf='real'`` reads a real value that is no synapse over spikes (a scaled conv: a max
    pool of reals, which the pass now keeps as its own term, used to be the example)."""
    nodes = [ir.InputNode("x", (), features=(3, 4, 4), time=2, layout="sequence"),
             ir.NeuronNode("s1", ("x",), v_threshold=0.5), ir.NeuronNode("s2", ("x",), v_threshold=0.9),
             ir.ConvNode("c1", ("s1",), "c1", weight=f32(5, 3, 3, 3, scale=0.4), bias=f32(5), stride=(1, 1),
                         padding=(1, 1), dilation=(1, 1)),
             ir.ConvNode("c2", ("s2",), "c2", weight=f32(5, 3, 1, 1, scale=0.4), bias=None, stride=(1, 1),
                         padding=(0, 0), dilation=(1, 1))]
    if leaf == "real":
        nodes.append(ir.ScaleNode("mp", ("c2",), factor=1.0))  # a real value the pass does not look through
    nodes += [ir.AddNode("res", ("c1", "mp" if leaf == "real" else "c2")), ir.NeuronNode("mid", ("res",)),
              ir.ReshapeNode("tok", ("res",), features=(5, 16)),
              ir.ReduceNode("sum", ("tok",), axes=(1,), reduce="sum"),
              ir.NeuronNode("head", ("sum",), v_threshold=8.0), ir.OutputNode("o", ("head",)),
              ir.OutputNode("o2", ("mid",))]
    return graph(*nodes)


def test_fold_sums_into_synapses():
    """The sum over 16 positions becomes Linear synapses from the spikes (its own fixed-point scale
    later); the float model is unchanged up to float32 rounding of the summed weights."""
    from spikec.passes.fold_sums_into_synapses import fold_sums_into_synapses

    g = token_sum_graph()
    r = fold_sums_into_synapses(g)
    assert r.report.fired == 1
    head_in = r.graph.producer(r.graph["head"].inputs[0])
    assert head_in.op == "add"
    folds = [n for n in r.graph.nodes if n.op == "linear"]
    assert len(folds) == 2 and all(r.graph.types[r.graph.producer(n.inputs[0]).inputs[0]].kind is ir.Kind.SPIKE
                                   for n in folds)
    assert sum(n.bias is not None for n in folds) == 1  # c1's bias, summed over 16 positions
    assert_equivalent(g, r.graph, seq_input(g, scale=1.5), min_agreement=0.999, rtol=1e-5)


def test_fold_sums_reports_what_it_cannot_fold():
    from spikec.passes.fold_sums_into_synapses import fold_sums_into_synapses

    r = fold_sums_into_synapses(token_sum_graph(leaf="real"))
    assert r.report.fired == 0 and "is not a synapse over spikes" in r.report.not_applied[0][1]
