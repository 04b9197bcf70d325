"""Full pipelines on every family: spike agreement, output agreement, no activation products left."""

import pytest
import torch

from spikec import ir
from spikec.errors import SpikecError
from spikec.passes.pipelines import PASSES, PIPELINES, run_pipeline
from spikec.runtime.float_interpreter import RunResult
from spikec.verification import compare_graphs, compare_runs

SPIKE_DRIVEN = ["sj_spikformer", "sj_sdt", "spikformer_digits", "meta_spikformer"]


@pytest.fixture(scope="module")
def pipelined(zoo_models):
    return {fam: run_pipeline(g, "float") for fam, (_, _, g) in zoo_models.items()}


@pytest.mark.parametrize("family", ["sj_spikformer", "sj_sdt", "spikformer_digits", "neuron_variants", "meta_spikformer"])
def test_float_pipeline_keeps_the_model(zoo_models, pipelined, family):
    model, x, g = zoo_models[family]
    r = pipelined[family]
    c = compare_graphs(g, r.graph, x)
    assert c.agreement >= 0.9999, "\n".join(c.lines())
    assert all(abs(f.margin) < 1e-4 for f in c.flips), "flips only where the membrane sat on the threshold"
    assert c.output_max_rel <= 1e-4
    # and against the torch model itself
    from conftest import neuron_outputs

    y, _ = neuron_outputs(model, x)
    out = __import__("spikec.runtime.float_interpreter", fromlist=["run_float"]).run_float(r.graph, x).outputs[0]
    assert (out - y).abs().max() <= 1e-4 * max(1.0, y.abs().max())


@pytest.mark.parametrize("family", SPIKE_DRIVEN)
def test_no_product_of_two_activations_remains(pipelined, family):
    g = pipelined[family].graph
    ops = g.count_ops()
    assert "matmul" not in ops and "mul" not in ops, ops
    assert ops.get("addressed_acc", 0) + ops.get("and", 0) >= 2
    for n in g.nodes:
        if isinstance(n, ir.AddressedAccumulationNode):
            assert g.types[n.inputs[n.spike_operand]].kind is ir.Kind.SPIKE
        if isinstance(n, ir.ScaleNode):  # constant scales left are not in front of attention neurons
            assert not any(u.op == "neuron" and "attn" in u.name for u in g.users(n.name))


def test_attention_thresholds_merged(pipelined):
    g = pipelined["spikformer_digits"].graph
    attn = g["block.0.attn.attn_lif"]
    assert attn.v_threshold == 8.0 and attn.decay_input is False  # 0.5 / 0.125 * tau
    assert "scale" not in g.count_ops()


def test_pipeline_reports_and_options(zoo_models):
    g = zoo_models["sj_sdt"][2]
    dumped = []
    r = run_pipeline(g, "intref", skip=["cleanup"], dump_after="fold_batchnorm",
                     on_dump=lambda name, gr: dumped.append((name, len(gr))))
    assert [rep.name for rep in r.reports] == [p for p in PIPELINES["intref"] if p != "cleanup"]
    assert dumped == [("fold_batchnorm", r.counts[1][1])]
    lines = r.summary_lines()
    assert lines[0].startswith(f"nodes: {len(g)} -> ")
    assert any("fold_batchnorm: fired 11x" in l for l in lines)
    with pytest.raises(SpikecError, match="unknown pass"):
        run_pipeline(g, "float", skip=["nope"])
    with pytest.raises(SpikecError, match="not in the pipeline"):
        run_pipeline(g, "intref", dump_after="causal_time_conv_to_delays")
    assert set(PIPELINES["float"]) <= set(PASSES)


def test_flips_are_reported_with_margins():
    g = ir.Graph([ir.InputNode("x", (), features=(3,), time=2, layout="sequence"),
                  ir.NeuronNode("n", ("x",), v_threshold=1.0), ir.OutputNode("o", ("n",))]).validate()
    ref_spikes = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])
    new_spikes = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]]])
    h = torch.tensor([[[1.2, 0.3, 0.1]], [[0.4, 0.99999994, 1.5]]])
    ref = RunResult([ref_spikes], {"n": ref_spikes}, {"n": h})
    new = RunResult([new_spikes], {"n": new_spikes})
    c = compare_runs(g, ref, g, new)
    assert c.layers[0].positions == 6 and c.layers[0].equal == 5
    assert c.layers[0].first_divergence == (1, 0, 1)
    (flip,) = c.flips
    assert flip.reference == 0 and flip.margin == pytest.approx(-6e-8, abs=1e-8)
    assert "flip n[1, 0, 1]: reference spike 0, margin -5.96e-08" in "\n".join(c.lines())


def test_integer_pipelines_keep_one_threshold_per_layer():
    """A per-channel scale before a neuron goes into the weights for intref / lava, into a
    per-channel threshold for the float pipeline."""
    import numpy as np

    nodes = [ir.InputNode("x", (), features=(3, 5), time=2, layout="sequence"),
             ir.ConvNode("c", ("x",), weight=np.ones((4, 3, 1), np.float32), bias=None, stride=(1,), padding=(0,),
                         dilation=(1,)),
             ir.ScaleNode("s", ("c",), factor=np.array([1.0, 2.0, 0.5, 4.0], np.float32).reshape(4, 1)),
             ir.NeuronNode("n", ("s",)), ir.OutputNode("o", ("n",))]
    g = ir.Graph(nodes).validate()
    assert isinstance(run_pipeline(g, "float").graph["n"].v_threshold, np.ndarray)
    for target in ("intref", "lava"):
        out = run_pipeline(g, target).graph
        assert not isinstance(out["n"].v_threshold, np.ndarray)
        np.testing.assert_allclose(out["c"].weight[:, 0, 0], [1.0, 2.0, 0.5, 4.0])
