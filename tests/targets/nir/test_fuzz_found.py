"""NIR defects found by random-graph testing (tests/fuzz), each with its smallest model:

* ceil-mode (and dilated) max pools of spikes: NIR's SumPool2d cannot express their windows, so the
  window sums are an unrolled Affine before Threshold(0.5); a graph NIR rejects is reported with the
  user's module;
* a max pool of a convolution of spikes as the last op before a reshape: the NIR run's outputs take
  the model's output shape (NIR's Output keeps the [C, 1, 1] view), and verify refuses outputs of
  another shape than the float IR's, naming the target;
* large outputs: the NIR outputs are judged with a tolerance relative to their magnitude (float32
  summation order), not an absolute 1e-5.
"""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

import spikec
from spikec.errors import SpikecError, UnsupportedError
from spikec.frontend import trace
from spikec.passes.pipelines import run_pipeline
from spikec.targets.nir import export_nir, write_nir
from spikec.targets.nir.verify import OUTPUT_RTOL, check_against_float, output_tolerance, run_file


class _SpikePool(nn.Module):
    """[T, B, 1, H, W] -> LIF -> max pool of the spikes -> [T, B, F]."""

    def __init__(self, **pool_kw):
        super().__init__()
        self.enc = neuron.LIFNode(tau=2.0, step_mode="m")
        self.pool = nn.MaxPool2d(**pool_kw)

    def forward(self, x):
        s = self.enc(x)
        T, B = s.shape[:2]
        return self.pool(s.flatten(0, 1)).reshape(T, B, -1)


def _kinds(ex) -> set[str]:
    return {type(v).__name__ for v in ex.graph.nodes.values()}


@pytest.mark.parametrize("pool_kw,hw,sumpool", [
    (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), 4, False),  # 3x3 output; SumPool2d's is 2x2
    (dict(kernel_size=2, stride=2, ceil_mode=True), 5, False),  # the last window holds one column / row
    (dict(kernel_size=2, stride=2, dilation=2), 6, False),
    (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), 5, True),  # ceil mode, same size as floor
    (dict(kernel_size=3, stride=2, padding=1), 4, True),
])
def test_max_pool_of_spikes_geometry_sumpool_cannot_express(tmp_path, pool_kw, hw, sumpool):
    """Window sums as SumPool2d where NIR's floor-mode SumPool2d has the pool's windows, else an
    unrolled Affine; either way Threshold(0.5), spike for spike equal to the torch model."""
    m = _SpikePool(**pool_kw).eval()
    x = torch.as_tensor(np.random.default_rng(0).uniform(0, 2, (2, 3, 1, hw, hw)).astype(np.float32))
    g = run_pipeline(trace(m, (1, hw, hw), time_steps=2), "nir").graph
    ex = export_nir(g)
    assert ("SumPool2d" in _kinds(ex)) == sumpool and ("Affine" in _kinds(ex)) != sumpool
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] == 0.0, rep
    from spikingjelly.activation_based import functional

    functional.reset_net(m)
    with torch.no_grad():
        want = m(x)
    assert 0 < float(want.mean()) < 1  # the pools see both values
    assert torch.equal(rep["outputs"], want)


def test_ceil_mode_max_pool_verifies_exactly():
    """The fuzzer's model (F5): refused before with NIR's type error, now exact against the float IR."""
    m = _SpikePool(kernel_size=3, stride=2, padding=1, ceil_mode=True).eval()
    x = np.random.default_rng(0).uniform(0, 2, (2, 2, 1, 4, 4)).astype(np.float32)
    r = spikec.verify(m, "nir", x, input_shape=(1, 4, 4), time_steps=2, input_range=(0, 2))
    assert r.exact and r.check["outputs_equal"], r.check_lines


def test_a_graph_nir_rejects_names_the_module(monkeypatch):
    """NIR's own type check is the last line: its error names the IR node and the user's module, and
    the NIR nodes by the exporter's names rather than NIR's evaluation-order keys."""
    import spikec.targets.nir.export as export

    m = _SpikePool(kernel_size=3, stride=2, padding=1, ceil_mode=True).eval()
    g = run_pipeline(trace(m, (1, 4, 4), time_steps=2), "nir").graph
    monkeypatch.setattr(export, "sumpool_expresses", lambda *a: True)  # the old export: SumPool2d ignoring ceil mode
    with pytest.raises(UnsupportedError, match=r"rejects the exported graph at \S+ \(maxpool, module 'pool'\)") as e:
        export_nir(g)
    assert "pool_or.input" in str(e.value) and not any(w.startswith("n0") or w.startswith("n1")
                                                         for w in str(e.value).replace(".", " ").split())


class _ConvPoolLast(nn.Module):
    """Max pool of a convolution of spikes, then a reshape to [T, B, C] and a neuron: the per-sample
    pooled map is [C, 1, 1] in NIR (F6)."""

    def __init__(self):
        super().__init__()
        self.enc = neuron.LIFNode(tau=2.0, v_reset=None, step_mode="m")
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.lif = neuron.IFNode(step_mode="m")

    def forward(self, x):
        s = self.enc(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
        y = self.pool(self.conv(s.flatten(0, 1)))
        return self.lif(y.reshape(3, x.shape[0], -1))


def _conv_pool_last():
    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0, 4, (2, 1, 4, 4)).astype(np.float32)
    return _ConvPoolLast().eval(), x


def test_outputs_take_the_model_output_shape(tmp_path):
    """The NIR Output keeps the pooled [C, 1, 1] view; run_file (``spikec run``) and verify give the
    model's [T, B, C]."""
    m, x = _conv_pool_last()
    r = spikec.verify(m, "nir", x, input_shape=(1, 4, 4), input_range=(0, 4))
    assert r.exact and r.top1_agreement == 1.0, r.check_lines
    g = run_pipeline(trace(m, (1, 4, 4)), "nir").graph
    write_nir(export_nir(g), tmp_path / "m.nir")
    y, _, _ = run_file(tmp_path / "m.nir", x)
    with torch.no_grad():
        want = m(torch.as_tensor(x))
    assert y.shape == want.shape == (3, 2, 2) and torch.equal(y, want)


def test_verify_refuses_outputs_of_another_shape(monkeypatch):
    """A target whose outputs have another shape than the float IR's is refused by name before the
    top-1 comparison (which would broadcast or crash)."""
    from spikec.targets.nir.target import NirTarget

    check = NirTarget.check

    def misshaped(self, *a, **kw):
        c = check(self, *a, **kw)
        c.outputs = np.asarray(c.outputs)[..., None, None]
        return c

    monkeypatch.setattr(NirTarget, "check", misshaped)
    m, x = _conv_pool_last()
    with pytest.raises(SpikecError, match=r"nir: .*nir target's .* shape \[3, 2, 2, 1, 1\], the float IR's \[3, 2, 2\]"):
        spikec.verify(m, "nir", x, input_shape=(1, 4, 4), input_range=(0, 4))


class _BigHead(nn.Module):
    """Spikes, mean over positions, a classifier with weights ~1e3, mean over time (F7)."""

    def __init__(self):
        super().__init__()
        self.enc = neuron.IFNode(v_threshold=1.26, v_reset=0.3, step_mode="m")
        self.conv = nn.Conv2d(2, 4, 1, bias=False)
        self.lif = neuron.IFNode(v_threshold=0.001, step_mode="m")
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        T, B = x.shape[:2]
        s = self.lif(self.conv(self.enc(x).flatten(0, 1)).reshape(T, B, 4, 3, 2))
        return self.head(s.flatten(3).mean(3)).mean(0)


def test_output_tolerance_is_relative_to_the_outputs():
    assert output_tolerance(np.array([0.5, -0.25])) == OUTPUT_RTOL
    assert output_tolerance(np.array([10.0, -2048.0])) == pytest.approx(2048 * OUTPUT_RTOL)
    assert output_tolerance(np.zeros(0)) == OUTPUT_RTOL


def test_large_outputs_differ_by_summation_order_only(tmp_path):
    """Outputs ~1e3: the readout moved behind the classifier sums in another order (1 ulp of the
    outputs, above an absolute 1e-5), which is agreement; a bias off by 1e-3 of the outputs is not."""
    torch.manual_seed(53)
    m = _BigHead().eval()
    with torch.no_grad():
        m.head.weight.normal_(0, 1e3)
    x = np.where(np.random.default_rng(53).random((4, 2, 2, 3, 2)) < 0.5, -1.0, 1.0).astype(np.float32)
    r = spikec.verify(m, "nir", x, input_shape=(2, 3, 2), time_steps=4, input_range=(-1, 1))
    assert r.exact and r.check["outputs_equal"], r.check_lines
    g = run_pipeline(trace(m, (2, 3, 2), time_steps=4), "nir").graph
    ex = export_nir(g)
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and 1e-5 < rep["output_max_abs_diff"] <= rep["output_tolerance"], rep
    (head,) = [v for k, v in ex.graph.nodes.items() if k.endswith("head")]
    head.bias = head.bias + np.float32(1e-3 * np.abs(rep["outputs"].numpy()).max())
    write_nir(ex, tmp_path / "off.nir")
    off = check_against_float(g, tmp_path / "off.nir", x)
    assert off["spikes_identical"] and off["output_max_abs_diff"] > off["output_tolerance"], off
