"""causal_time_conv_to_delays: a causal convolution over time written as time mixing becomes delayed
per-step taps (exact: the same spikes and, here, the same float32 outputs), and every other use of
the time axis is left alone with the reason named."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn
from torch.nn import functional as F

from spikec import ir
from spikec.frontend import trace
from spikec.passes.causal_time_conv_to_delays import causal_time_conv_to_delays
from spikec.runtime.float_interpreter import run_float


class CausalConvs(nn.Module):
    """[T, B, 2, 4, 4] spikes -> [B, C, T, H, W] -> causal convs over time (kernels 1, 3; dilation 2 for the
    second), concatenated -> a channel slice back to [T, B, ...] -> LIF."""

    def __init__(self, kernels=(1, 3), dilation=2, pad_front=None, softmax=False):
        super().__init__()
        self.lif_in = neuron.LIFNode(step_mode="m")
        self.kernels, self.dilation, self.softmax = kernels, dilation, softmax
        self.pad_front = pad_front
        self.convs = nn.ModuleList([nn.Conv3d(2, 3, (k, 3, 1), padding=(0, 1, 0), dilation=(dilation, 1, 1))
                                    for k in kernels])
        self.lif = neuron.LIFNode(step_mode="m", v_threshold=0.3)
        with torch.no_grad():  # enough drive that the output layer fires
            for conv in self.convs:
                conv.weight.mul_(4.0)

    def forward(self, x):
        s = self.lif_in(x * 2).permute(1, 2, 0, 3, 4)
        ys = []
        for k, conv in zip(self.kernels, self.convs):
            p = self.dilation * (k - 1) if self.pad_front is None else self.pad_front
            ys.append(conv(F.pad(s, (0, 0, 0, 0, p, 0))))
        y = torch.cat(ys, 1)
        if self.softmax:
            y = torch.softmax(y, dim=2)
        return self.lif(y[:, 1:5].permute(2, 0, 1, 3, 4))


def _graph(model, T=6):
    torch.manual_seed(0)
    return trace(model.eval(), (2, 4, 4), time_steps=T)


def test_causal_convolutions_become_delayed_taps_with_the_same_spikes():
    torch.manual_seed(0)
    model = CausalConvs()
    g = _graph(model)
    r = causal_time_conv_to_delays(g)
    assert r.report.fired == 1 and "2 causal convolution(s) over time as 4 delayed per-step taps (delays up to 4 steps)" \
        in r.report.applied[0]
    ops = [n.op for n in r.graph.nodes]
    assert "time_to_features" not in ops and "features_to_time" not in ops
    assert sorted(n.steps for n in r.graph.nodes if isinstance(n, ir.DelayNode)) == [2, 4]
    convs = [n for n in r.graph.nodes if isinstance(n, ir.ConvNode) and n.weight.ndim == 4]
    assert len(convs) == 4 and sum(n.bias is not None for n in convs) == 2  # the bias in the undelayed tap only
    x = torch.rand(6, 5, 2, 4, 4)
    want = run_float(g, x, record=True)
    got = run_float(r.graph, x, record=True)
    assert torch.equal(got.outputs[0], want.outputs[0])
    with torch.no_grad():
        torch_out = model(x)
    functional.reset_net(model)
    assert torch.equal(got.outputs[0], torch_out)
    assert 0.05 < float(got.outputs[0].mean()) < 0.95  # the delayed taps make spikes


def test_a_convolution_over_time_alone_is_a_linear_layer_per_step():
    class OverTimeOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif_in, self.lif = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m", v_threshold=0.2)
            self.conv = nn.Conv1d(3, 4, 2)

        def forward(self, x):  # [T, B, 3] -> [B, 3, T] -> causal conv over T -> [T, B, 4]
            s = F.pad(self.lif_in(x * 2).permute(1, 2, 0), (1, 0))
            return self.lif(self.conv(s).permute(2, 0, 1))

    torch.manual_seed(0)
    model = OverTimeOnly().eval()
    g = trace(model, (3,), time_steps=5)
    r = causal_time_conv_to_delays(g)
    assert r.report.fired == 1
    assert [type(n).__name__ for n in r.graph.nodes if isinstance(n, (ir.LinearNode, ir.DelayNode))] == \
        ["LinearNode", "DelayNode", "LinearNode"]
    x = torch.rand(5, 7, 3)
    with torch.no_grad():
        want = model(x)
    assert torch.equal(run_float(r.graph, x).outputs[0], want)


@pytest.mark.parametrize("kw,reason", [
    (dict(pad_front=1, kernels=(3,), dilation=1), "is not causal along time (kernel 3, dilation 1, stride 1, padding 0, "
                                                   "front padding 1)"),
    (dict(softmax=True), "(softmax) reads the time axis"),
])
def test_other_time_mixing_is_left_alone_with_the_reason(kw, reason):
    g = _graph(CausalConvs(**kw))
    r = causal_time_conv_to_delays(g)
    assert r.report.fired == 0 and r.graph is g
    ((where, why),) = r.report.not_applied
    assert where.startswith("time_to_features") and reason in why


def test_the_nir_pipeline_runs_it_and_nir_writes_delay_nodes(tmp_path):
    import nir

    from spikec.passes.pipelines import run_pipeline
    from spikec.targets.nir import export_nir, write_nir
    from spikec.targets.nir.verify import check_against_float

    g = run_pipeline(_graph(CausalConvs()), "nir").graph
    assert any(isinstance(n, ir.DelayNode) for n in g.nodes)
    ex = export_nir(g)
    delays = [n for n in ex.graph.nodes.values() if isinstance(n, nir.Delay)]
    assert sorted({float(np.unique(d.delay)[0]) for d in delays}) == pytest.approx([2e-4, 4e-4])
    write_nir(ex, tmp_path / "m.nir")
    x = torch.rand(6, 4, 2, 4, 4)
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"], rep["layers"]


def test_nir_refusal_of_other_time_mixing_says_why_the_pass_left_it():
    import spikec
    from spikec.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match=r"nir: time mixing has no NIR form .*; not a causal convolution over "
                                               r"time: .*is not causal along time \(kernel 3, dilation 1"):
        spikec.compile(CausalConvs(pad_front=1, kernels=(3,), dilation=1).eval(), "nir", input_shape=(2, 4, 4),
                       time_steps=6)
