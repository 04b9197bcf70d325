"""The quantize pass (passes/quantize/): Loihi 2 parameter mapping, refusals, and the per-layer
report of coarse quantization."""

import numpy as np
import pytest
import torch
from conftest import ROOT

from spikec import ir
from spikec.errors import UnsupportedError
from spikec.passes.pipelines import run_pipeline
from spikec.passes.quantize import quantize

DIGITS_CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"


@pytest.fixture(scope="module")
def digits():
    from examples.models.spikformer import spikformer_digits
    from examples.train_digits import CONFIG
    from spikec.frontend import trace

    model = spikformer_digits(**CONFIG)
    model.load_state_dict(torch.load(DIGITS_CKPT, weights_only=True)["model"])
    g = run_pipeline(trace(model.eval(), (1, 8, 8)), "intref").graph
    return g, quantize(g)


def test_neuron_parameter_mapping(digits):
    g, q = digits
    lif = q.graph["block.0.attn.attn_lif"]
    assert isinstance(lif, ir.LoihiNeuronNode)
    assert lif.du == 4095 and lif.dv == 2048 and lif.reset == "zero"  # tau = 2
    rep = {n.name: n for n in q.quant.neurons}["block.0.attn.attn_lif"]
    assert rep.threshold == 8.0 and 8.0 - 64 * rep.delta_v < rep.threshold_int <= 8.0
    assert all(s.clipped < 0.01 for s in q.quant.synapses)
    w = [n for n in q.graph.nodes if isinstance(n, ir.SynapseNode) and n.sign_mode == "mixed"]
    assert w and all((n.weight % 2 == 0).all() and np.abs(n.weight).max() <= 254 for n in w)


def test_quantize_refuses_what_it_cannot_represent(zoo_models):
    g = zoo_models["sj_sdt"][2]
    with pytest.raises(UnsupportedError, match="batch norm .* still in the graph"):
        quantize(g)
    p = run_pipeline(g, ["fold_batchnorm"]).graph
    with pytest.raises(UnsupportedError, match="decay_input=True"):
        quantize(p)
    nodes = [ir.InputNode("x", (), features=(4, 4), time=2, layout="sequence"), ir.MatMulNode("mm", ("x", "x"), "attn"),
             ir.NeuronNode("n", ("mm",), decay_input=False), ir.OutputNode("o", ("n",))]
    with pytest.raises(UnsupportedError, match=r"matmul mm \(attn\) multiplies two activations"):
        quantize(ir.Graph(nodes).validate())


def test_coarse_quantization_is_reported_and_sums_get_their_own_scale(zoo_models):
    """Without fold_sums_into_synapses, sj_sdt's residual stream shares its fixed-point scale with
    the sum over tokens before its head: coarse weights, which the report names by layer instead
    of staying silent.  With the pass (the default) the sum has synapses of its own: no warning.
    The trained digits model quantizes cleanly."""
    from spikec.compiler import compile_graph
    from spikec.frontend import load_checkpoint, trace

    _, _, g = zoo_models["sj_sdt"]
    lines = compile_graph(g, "intref", input_range=(0, 2), skip=["fold_sums_into_synapses"]).quant_report.lines()
    assert any(l.startswith("WARNING: synapse patch_embed.rpe_conv") for l in lines)
    assert "share a fixed-point scale" in lines[-1]
    assert not compile_graph(g, "intref", input_range=(0, 2)).quant_report.warnings()
    digits = load_checkpoint(ROOT / "examples" / "checkpoints" / "spikformer_digits.pth",
                             factory=f"{ROOT}/examples/models/spikformer.py:spikformer_digits")
    assert not compile_graph(trace(digits, (1, 8, 8)), "intref").quant_report.warnings()

