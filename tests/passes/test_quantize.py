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
    from examples.train import CONFIG
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
    assert w and all((m % 2 == 0).all() and np.abs(m).max() <= 254 for n in w for _, _, m in n.channel_groups())


def test_quantize_refuses_what_it_cannot_represent(zoo_models):
    """Unfolded batch norms and decay_input LIFs are refused; a product of two real values is not (it is
    the product of their integers)."""
    g = zoo_models["sj_sdt"][2]
    with pytest.raises(UnsupportedError, match="batch norm .* still in the graph"):
        quantize(g)
    p = run_pipeline(g, ["fold_batchnorm"]).graph
    with pytest.raises(UnsupportedError, match="decay_input=True"):
        quantize(p)
    nodes = [ir.InputNode("x", (), features=(4, 4), time=2, layout="sequence"), ir.MatMulNode("mm", ("x", "x"), "attn"),
             ir.NeuronNode("n", ("mm",), decay_input=False), ir.OutputNode("o", ("n",))]
    q = quantize(ir.Graph(nodes).validate())  # a product of two real values: of their integers (test_kernels)
    mm = q.graph["mm"]
    assert isinstance(mm, ir.MatMulNode) and all(q.graph.types[i].kind is not ir.Kind.REAL for i in mm.inputs)


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



# ---- a scale per consumer (issue 13) -------------------------------------------------------------------

def _stream_graph(seed: int = 0) -> ir.Graph:
    """A hand-built real-valued residual stream (a membrane shortcut): two synapses over the spikes of
    one layer summed, read by two neurons of very different thresholds (0.05 and 200)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    nodes = [ir.InputNode("x", (), features=(16,), time=4, layout="sequence"),
             ir.LinearNode("l0", ("x",), "l0", weight=rng.uniform(-0.5, 1.0, (32, 16)).astype(f32),
                           bias=np.full(32, 0.2, f32)),
             ir.NeuronNode("s0", ("l0",), "s0", v_threshold=1.0, tau=2.0, decay_input=False),
             ir.LinearNode("a", ("s0",), "a", weight=rng.uniform(-0.01, 0.02, (24, 32)).astype(f32),
                           bias=np.full(24, 0.01, f32)),
             ir.LinearNode("b", ("s0",), "b", weight=rng.uniform(-0.01, 0.02, (24, 32)).astype(f32), bias=None),
             ir.AddNode("stream", ("a", "b"), "stream"),
             ir.NeuronNode("small", ("stream",), "small", v_threshold=0.05, tau=2.0, decay_input=False),
             ir.NeuronNode("large", ("stream",), "large", v_threshold=200.0, model="IF", tau=None, decay_input=False),
             ir.AddNode("both", ("small", "large"), "both"),
             ir.OutputNode("o", ("both",))]
    return ir.Graph(nodes).validate()


def _worst(quant) -> tuple[float, float]:
    """(largest relative weight error, largest relative threshold error) of a quantization report."""
    w = max(s.rel_error for s in quant.synapses)
    t = max(abs(n.threshold_int - n.threshold) / abs(n.threshold) for n in quant.neurons)
    return w, t


def test_each_reader_of_a_residual_stream_gets_its_own_scale():
    """copy_linear_inputs_per_consumer gives the second reader of the stream its own copies of the
    synapses (fired once; the float model is unchanged bit for bit); the quantizer then picks each
    neuron's scale from its own threshold and range: both thresholds within 1 %, every weight
    within 2 %.  Without the pass the stream has one scale, the large threshold's, and the small
    neuron's threshold is off by more than 1 % (its current is in units 256x coarser)."""
    from spikec.passes.copy_linear_inputs_per_consumer import copy_linear_inputs_per_consumer
    from spikec.runtime.float_interpreter import run_float

    g = _stream_graph()
    r = copy_linear_inputs_per_consumer(g)
    assert r.report.fired == 1 and "large" in r.report.applied[0]
    assert {n.name for n in r.graph.nodes if isinstance(n, ir.LinearNode)} == {"l0", "a", "b", "a->large", "b->large"}
    assert r.graph["small"].inputs == ("stream",) and r.graph["large"].inputs == ("stream->large",)
    x = torch.rand(4, 8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run_float(g, x).outputs[0], run_float(r.graph, x).outputs[0])
    assert copy_linear_inputs_per_consumer(r.graph).report.fired == 0  # nothing shared any more

    q = quantize(run_pipeline(g, "intref").graph).quant
    reps = {n.name: n for n in q.neurons}
    assert reps["small"].delta_v <= reps["large"].delta_v / 128  # two scales, each from its own range
    w_err, th_err = _worst(q)
    assert w_err <= 0.02 and th_err <= 0.01, (w_err, th_err)
    assert not q.warnings()

    shared = quantize(run_pipeline(g, "intref", skip=["copy_linear_inputs_per_consumer"]).graph).quant
    w_err, th_err = _worst(shared)
    assert th_err > 0.01 and w_err < 0.02  # the negative case: one scale for both (weights keep per-synapse exponents)


def _assert_integer_targets_agree(qgraph, x):
    """intref, ONNX and (if installed) Lava give the same integers on ``x``."""
    from spikec.targets.intref.executor import run_int
    from spikec.targets.onnx import export_onnx
    from spikec.targets.onnx.runner import run_onnx_model

    ref = run_int(qgraph, x, record=True)
    assert not ref.overflows
    y = run_onnx_model(export_onnx(qgraph), x.numpy())[0][0]
    np.testing.assert_array_equal(y, ref.outputs[0].numpy())
    pytest.importorskip("lava")
    from spikec.targets.lava import build_netspec
    from spikec.targets.lava.runner import run_lava

    lr = run_lava(build_netspec(qgraph), x)
    for name, v in lr.values.items():
        assert torch.equal(v, ref.values[name]), name
    assert torch.equal(lr.outputs[0], ref.outputs[0])
    return ref


def test_per_consumer_scales_stay_exact_on_every_integer_target():
    from spikec.compiler import compile_graph

    g = _stream_graph()
    x = torch.rand(4, 3, 16, generator=torch.Generator().manual_seed(1))
    for target in ("intref", "lava"):
        res = compile_graph(g, target)
        assert any(isinstance(n, ir.SynapseNode) and n.name == "a->large" for n in res.quantized.nodes)
        ref = _assert_integer_targets_agree(res.quantized, x)
        assert ref.values["small"].any()  # the small-threshold layer is active


def _calib_graph() -> ir.Graph:
    """Input -> identity synapse -> LIF of threshold 0.006: the current is the input itself."""
    nodes = [ir.InputNode("x", (), features=(256,), time=4, layout="sequence"),
             ir.LinearNode("w", ("x",), "w", weight=np.eye(256, dtype=np.float32), bias=None),
             ir.NeuronNode("n", ("w",), "n", v_threshold=0.006, tau=2.0, decay_input=False),
             ir.OutputNode("o", ("n",))]
    return ir.Graph(nodes).validate()


def test_calibration_takes_a_percentile_and_counts_saturation():
    """--calib: each layer's bound is the 99.99th percentile of its measured |current|, so 5 outliers
    among 102,400 currents do not coarsen the scale; the report counts them (above the bound) and
    the ones the scale cannot hold (u wraps, v saturates, as Loihi would), per layer and in the
    compile output.  Inputs far beyond the calibration still give the same integers on intref,
    ONNX and Lava (u wraps there alike; |a| stays below Lava's 2^25 int32 limit)."""
    from spikec import loihi
    from spikec.compiler import compile_graph
    from spikec.passes.quantize import CALIB_PERCENTILE

    g = _calib_graph()
    calib = np.full((4, 100, 256), 0.004, np.float32)
    calib[0, 0, :5] = 1.0
    res = compile_graph(g, "intref", calib=calib)
    q = res.quant_report
    assert q.calibrated and q.percentile == CALIB_PERCENTILE == 99.99
    rep = q.neurons[0]
    assert rep.input_bound == pytest.approx(0.004, rel=1e-6)  # the percentile, not the outliers' 1.0
    assert rep.calib_values == 4 * 100 * 256 and rep.calib_beyond == 5
    da = rep.delta_v * 64
    assert (loihi.U_MAX >> loihi.CURRENT_SHIFT) * da <= 1.0 < loihi.A_INT32_LIMIT * da  # outliers wrap u, not int32
    assert rep.calib_wrapped == 5 and rep.calib_saturated >= 5 and rep.saturation == rep.calib_wrapped + rep.calib_saturated
    lines = res.quant_lines
    assert any("99.99th percentile" in ln for ln in lines)
    assert any(ln.strip().startswith("calibration: 5 of 102400") for ln in lines)
    assert any("WARNING: neuron n" in ln and "5 input currents wrap u" in ln for ln in lines)
    # beyond the calibration: every integer target does what Loihi does, bit for bit
    x = torch.rand(4, 3, 256, generator=torch.Generator().manual_seed(2))
    ref = _assert_integer_targets_agree(res.quantized, x)
    assert ref.values["n"].any()
    # worst-case bounds stay the default: no calibration columns, no saturation
    wc = compile_graph(g, "intref").quant_report
    assert not wc.calibrated and wc.percentile is None and wc.neurons[0].saturation == 0
    assert wc.neurons[0].input_bound == pytest.approx(1.0)
