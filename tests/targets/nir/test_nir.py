"""NIR target: export with exact semantics, coincidence expansion, refusals, re-import check."""

import json

import numpy as np
import pytest
import torch
from conftest import NIR_FAMILIES  # tiny attention (16 tokens x 8 channels per head): small expansions

from examples.models import zoo
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.passes.pipelines import run_pipeline
from spikec.runtime.float_interpreter import run_float
from spikec.targets.nir import export_nir, write_nir
from spikec.targets.nir.verify import check_against_float


def _nir_graph(family, **kw):
    model, x = zoo.build(family, batch=6, **kw)
    g = trace(model, zoo.input_shape_of(family), time_steps=zoo.SEQUENCE_INPUT.get(family))
    return run_pipeline(g, "nir").graph, x


@pytest.mark.parametrize("family", list(NIR_FAMILIES))
def test_export_reimport_identical(tmp_path, family):
    g, x = _nir_graph(family, **NIR_FAMILIES[family])
    ex = export_nir(g)
    path = tmp_path / "m.nir"
    write_nir(ex, path)
    rep = check_against_float(g, path, x)
    assert rep["spikes_identical"], rep["layers"]
    assert rep["output_max_abs_diff"] <= 1e-5
    import nir

    back = nir.read(str(path))
    meta = back.metadata
    assert json.loads(meta["T"]) == g.types[g.inputs[0].name].time or json.loads(meta["T"]) >= 1
    assert "v >= theta" in json.loads(meta["threshold_convention"])
    assert any(type(n).__name__ == "LIF" for n in back.nodes.values())
    if family not in ("sj_sdt", "neuron_variants"):  # attention with spike matrix products
        assert ex.coincidence_neurons > 0 and any(type(n).__name__ == "Threshold" for n in back.nodes.values())


def _soft_reset_net(neuron_cls, **kw):
    from spikingjelly.activation_based import functional, layer

    torch.manual_seed(0)
    from collections import OrderedDict

    # the neuron's name sorts before its input's: nir.read's name order is not evaluation order
    net = torch.nn.Sequential(OrderedDict(z_fc=layer.Linear(6, 12), m_lif=neuron_cls(v_reset=None, **kw)))
    with torch.no_grad():
        net.z_fc.weight.copy_(torch.randn(12, 6) * 0.5 + 0.15)
    functional.set_step_mode(net, "m")
    return net.eval()


@pytest.mark.parametrize("variant", ["IF", "LIF", "LIF-no-decay-input", "PLIF", "LIF-tau-3"])
def test_soft_reset_exports_as_an_exact_recurrent_subgraph(tmp_path, variant):
    """V = H - θS: a nested graph of Scale / Threshold nodes with one recurrent edge, in
    spikingjelly's operation order: the re-imported network fires exactly like the source, and
    without the subtraction it does not."""
    import nir
    from spikingjelly.activation_based import neuron

    cls, kw = {"IF": (neuron.IFNode, dict(v_threshold=0.7)),
               "LIF": (neuron.LIFNode, dict(tau=2.0, v_threshold=0.6)),
               "LIF-no-decay-input": (neuron.LIFNode, dict(tau=4.0, decay_input=False, v_threshold=0.9)),
               "PLIF": (neuron.ParametricLIFNode, dict(init_tau=2.5, v_threshold=0.5)),
               "LIF-tau-3": (neuron.LIFNode, dict(tau=3.0, v_threshold=0.6))}[variant]
    net = _soft_reset_net(cls, **kw)
    x = torch.rand(16, 10, 6, generator=torch.Generator().manual_seed(1)) * 1.5
    g = run_pipeline(trace(net, (6,), time_steps=16), "nir").graph
    ex = export_nir(g)
    (sub,) = [v for v in ex.graph.nodes.values() if isinstance(v, nir.NIRGraph)]
    assert json.loads(sub.metadata["spikec_neuron"])["reset"] == "subtract threshold"
    assert {type(v).__name__ for v in sub.nodes.values()} == {"Input", "Output", "Scale", "Threshold"}
    assert any("one ulp" in note for note in ex.notes) == (variant == "LIF-tau-3")
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] == 0.0, rep
    spikes = run_float(g, x).outputs[0]
    assert 0.2 < float(spikes.mean()) < 0.9, float(spikes.mean())  # the reset is exercised
    # keys sort in evaluation order, so plain nirtorch on nir.read's (sorted) graph needs no re-ordering
    import nirtorch

    from spikec.targets.nir.verify import node_map, run_nir

    back = nir.read(str(tmp_path / "m.nir"))
    plain = nirtorch.nir_to_torch(back, node_map(json.loads(back.metadata["dt"])))
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            y, state = plain(xt, state)
            outs.append(y)
    assert torch.equal(torch.stack(outs), run_nir(back, x)[0])
    sub.nodes["d_reset"].scale = sub.nodes["d_reset"].scale * 0  # mutation: no subtraction after a spike
    nir.write(str(tmp_path / "broken.nir"), ex.graph)
    assert not check_against_float(g, tmp_path / "broken.nir", x)["spikes_identical"]


def test_soft_reset_rounds_like_spikingjelly(tmp_path):
    """H = (V - θ) + X, not V + (X - θ): with these inputs the two differ in float32 (0.99999994 vs
    1.0), and only the first fires no second spike, as spikingjelly does."""
    from spikingjelly.activation_based import functional, neuron

    net = torch.nn.Sequential(neuron.IFNode(v_reset=None, v_threshold=1.0))
    functional.set_step_mode(net, "m")
    x = torch.tensor([2.903069257736206, -0.9030693173408508]).reshape(2, 1, 1)
    with torch.no_grad():
        want = net(x)
    assert want.flatten().tolist() == [1.0, 0.0]
    g = run_pipeline(trace(net.eval(), (1,), time_steps=2), "nir").graph
    write_nir(export_nir(g), tmp_path / "m.nir")
    from spikec.targets.nir.verify import run_nir

    got, _ = run_nir(tmp_path / "m.nir", x)
    assert got.flatten().tolist() == [1.0, 0.0]


def _conv_maxpool_net(conv_kw, pool_kw, spiking_input=True):
    """[T, B, 4, 7, 7] -> (IF ->) conv -> max pool: real-valued max pool, weights multiples of 1/8 so
    every sum is exact in float32 and ties are frequent."""
    from spikingjelly.activation_based import functional, layer, neuron

    g = torch.Generator().manual_seed(3)
    conv = layer.Conv2d(4, 6, **conv_kw)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-4, 5, conv.weight.shape, generator=g) / 8.0)
        conv.bias.copy_(torch.randint(-4, 3, conv.bias.shape, generator=g) / 8.0)
    mods = ([neuron.IFNode(v_threshold=0.5)] if spiking_input else []) + [conv, layer.MaxPool2d(**pool_kw)]
    net = torch.nn.Sequential(*mods)
    functional.set_step_mode(net, "m")
    return net.eval()


@pytest.mark.parametrize("conv_kw,pool_kw", [
    (dict(kernel_size=3, padding=1, groups=2), dict(kernel_size=3, stride=2, padding=1)),
    (dict(kernel_size=2, stride=2, padding=1), dict(kernel_size=2, stride=1)),
    (dict(kernel_size=3, padding=2, dilation=2), dict(kernel_size=3, stride=2, padding=1)),
    (dict(kernel_size=(3, 1), padding=(1, 0)), dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))),
    (dict(kernel_size=3, padding=1), dict(kernel_size=1, stride=2)),  # a 1x1 window: subsampling
])
def test_maxpool_of_spike_conv_is_exact_selection(tmp_path, conv_kw, pool_kw):
    """max_p (W*s + b)_p from comparisons, winners and AND selections: equal to torch's max pool
    bit for bit (exact sums), ties and the -inf padding included; each part is needed."""
    import nir

    net = _conv_maxpool_net(conv_kw, pool_kw)
    x = torch.rand(3, 5, 4, 7, 7, generator=torch.Generator().manual_seed(4))
    g = run_pipeline(trace(net, (4, 7, 7), time_steps=3), "nir").graph
    ex = export_nir(g)
    assert any("max pool of real values" in note for note in ex.notes)
    assert (ex.coincidence_neurons > 0) == (pool_kw["kernel_size"] != 1)
    assert not {type(v).__name__ for v in ex.graph.nodes.values()} - {"Input", "Output", "IF", "Conv2d", "Threshold", "Scale"}
    write_nir(ex, tmp_path / "m.nir")
    with torch.no_grad():
        want = net(x)
    from spikec.targets.nir.verify import run_nir

    got, _ = run_nir(tmp_path / "m.nir", x)
    assert torch.equal(got.reshape(want.shape), want)
    with torch.no_grad():  # ties are exercised: windows whose maximum occurs more than once
        y = net[1](net[0](x)).flatten(0, 1)
    if pool_kw["kernel_size"] == 1:
        return
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    (kh, kw), (sh, sw), (ph, pw) = (pair(pool_kw.get(k, 0)) for k in ("kernel_size", "stride", "padding"))
    win = torch.nn.functional.pad(y, (pw, pw, ph, ph), value=float("-inf")).unfold(2, kh, sh).unfold(3, kw, sw)
    assert int(((win == win.amax(dim=(-1, -2), keepdim=True)).sum(dim=(-1, -2)) > 1).sum()) > 20
    for part, change in [("_cmp_diff", lambda v: setattr(v, "weight", -v.weight)),  # selects the minimum
                         ("_win", lambda v: setattr(v, "threshold", v.threshold - 1))]:  # several winners
        broken = nir.read(str(tmp_path / "m.nir"))
        for k, v in broken.nodes.items():
            if k.endswith(part):
                change(v)
        assert not torch.equal(run_nir(broken, x)[0].reshape(want.shape), want), part


def test_maxpool_padding_loses_to_negative_values(tmp_path):
    """PyTorch pads max pools with -inf: a window at the border whose inside values are all
    negative still returns the largest of them (zero padding would return 0)."""
    net = _conv_maxpool_net(dict(kernel_size=1), dict(kernel_size=3, stride=2, padding=1))
    with torch.no_grad():
        net[1].weight.copy_(-net[1].weight.abs() - 0.125)
        net[1].bias.copy_(-net[1].bias.abs() - 0.125)
    x = torch.rand(2, 3, 4, 7, 7, generator=torch.Generator().manual_seed(5))
    g = run_pipeline(trace(net, (4, 7, 7), time_steps=2), "nir").graph
    from spikec.targets.nir.verify import run_nir

    ex = export_nir(g)
    write_nir(ex, tmp_path / "m.nir")
    with torch.no_grad():
        want = net(x)
    assert (want < 0).all()
    assert torch.equal(run_nir(tmp_path / "m.nir", x)[0].reshape(want.shape), want)
    for k, v in ex.graph.nodes.items():  # without the padding correction the zero padding wins
        if k.endswith("_cmp_pad"):
            v.weight = v.weight * 0
    assert not torch.equal(run_nir(ex.graph, x)[0].reshape(want.shape), want)


def test_maxpool_window_that_nir_cannot_type_is_refused():
    """A (2, 3) window needs non-square convolutions whose sizes differ by an odd number, which
    NIR 1.0.8's Conv2d type check (one kernel size for both axes) rejects: refused by name."""
    net = _conv_maxpool_net(dict(kernel_size=3, padding=1), dict(kernel_size=(2, 3), stride=2))
    g = run_pipeline(trace(net, (4, 7, 7), time_steps=2), "nir").graph
    with pytest.raises(UnsupportedError, match=r"max pooling of real values: a \[2, 3\] window .* cannot type"):
        export_nir(g)


@pytest.mark.parametrize("kernel", [(3, 1), (3, 2)])
def test_non_square_convolutions(tmp_path, kernel):
    """NIR 1.0.8 types Conv2d with one kernel size: (3, 1) is centred in a zero-padded 3x3 kernel,
    (3, 2) (odd difference) becomes an Affine; both re-import exactly."""
    from spikingjelly.activation_based import functional, layer, neuron

    net = torch.nn.Sequential(neuron.IFNode(v_threshold=0.5), layer.Conv2d(2, 3, kernel, padding=(1, 0)),
                              neuron.IFNode(v_threshold=0.3))
    functional.set_step_mode(net, "m")
    x = torch.rand(3, 4, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    g = run_pipeline(trace(net.eval(), (2, 6, 6), time_steps=3), "nir").graph
    ex = export_nir(g)
    kinds = {type(v).__name__ for v in ex.graph.nodes.values()}
    assert ("Conv2d" in kinds) == (kernel == (3, 1)) and ("Affine" in kinds) == (kernel == (3, 2))
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] <= 1e-6, rep


class _Sums(torch.nn.Module):
    """Fan-in sums: conv(s) + conv(s) (a repeated term) and a + b + c (three terms) into neurons."""

    def __init__(self):
        from spikingjelly.activation_based import layer, neuron

        super().__init__()
        self.inp = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.conv = layer.Conv2d(2, 3, 3, padding=1, step_mode="m")
        self.a, self.b, self.c = (layer.Conv2d(2, 3, 1, step_mode="m") for _ in range(3))
        self.n1 = neuron.LIFNode(v_threshold=0.4, step_mode="m")
        self.n2 = neuron.IFNode(v_threshold=0.7, v_reset=None, step_mode="m")

    def forward(self, x):
        s = self.inp(x)
        y = self.conv(s)
        return self.n1(y + y) + self.n2(self.a(s) + self.b(s) + self.c(s))


def test_fan_in_sums_keep_the_source_order(tmp_path):
    """NIR has no duplicate edges and nirtorch sums a node's inputs in set order: y + y becomes
    Scale(2) and longer sums are added pairwise in the IR's order, so the re-import is exact
    (and the same whatever the hash seed)."""
    x = torch.rand(4, 5, 2, 6, 6, generator=torch.Generator().manual_seed(2)) * 1.5
    g = run_pipeline(trace(_Sums().eval(), (2, 6, 6), time_steps=4), "nir").graph
    ex = export_nir(g)
    assert len(ex.graph.edges) == len(set(ex.graph.edges))
    assert max(sum(1 for _, b in ex.graph.edges if b == k) for k in ex.graph.nodes) <= 2
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] == 0.0, rep


def test_run_file_checks_the_sequence_length(tmp_path):
    """A sequence model exported for T steps refuses inputs of another length (its readout and
    classifier bias assume T) instead of returning a silently wrong output."""
    from spikec.errors import SpikecError
    from spikec.targets.nir.verify import run_file

    g, x = _nir_graph("neuron_variants")
    write_nir(export_nir(g), tmp_path / "m.nir")
    y, _, meta = run_file(tmp_path / "m.nir", x)
    assert meta["T"] == x.shape[0] and meta["readout"] == "per step" and y.shape[:2] == x.shape[:2]
    with pytest.raises(SpikecError, match=r"2 time steps: the NIR graph was exported for T = 4"):
        run_file(tmp_path / "m.nir", x[:2])


def test_refuses_what_nir_cannot_express():
    """A max pool of a convolution of real values (the image) has no exact NIR form."""
    net = _conv_maxpool_net(dict(kernel_size=3, padding=1), dict(kernel_size=2, stride=2), spiking_input=False)
    g = run_pipeline(trace(net, (4, 7, 7), time_steps=2), "nir").graph
    with pytest.raises(UnsupportedError, match="max pooling of real values: the pooled convolution .* reads real") as e:
        export_nir(g)
    assert "module '" in str(e.value)
    ex = export_nir(g, partial=True)
    assert ex.notes and "partial export" in ex.notes[-1]


def test_coincidence_size_limit():
    g, _ = _nir_graph("spikformer_digits", **NIR_FAMILIES["spikformer_digits"])
    with pytest.raises(UnsupportedError, match=r"coincidence neurons .* --max-nir-neurons 1000"):
        export_nir(g, max_neurons=1000)


@pytest.mark.parametrize("family", ["sj_sdt", "sj_spikformer"])
def test_cli_compile_and_verify_nir(tmp_path, capsys, family):
    from spikec.cli import main

    model, x = zoo.build(family, **NIR_FAMILIES[family])
    torch.save(model.state_dict(), tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", x[:4].numpy())
    args = [str(tmp_path / "m.pth"), "--model", f"examples.models.zoo:{family}", "--model-kwargs",
            json.dumps(NIR_FAMILIES[family]), "--input-shape", "3,16,16"]
    assert main(["compile", *args, "--target", "nir", "-o", str(tmp_path / "m.nir"), "--input-range", "0,2"]) == 0
    import nir

    meta = nir.read(str(tmp_path / "m.nir")).metadata
    quant = json.loads(meta["quantization"])  # the Loihi 2 scales of the same model, per module
    modules = {name for name, _ in model.named_modules()}
    assert quant["input_scale"] == pytest.approx(2.0 / 255)  # 8-bit input over --input-range
    assert quant["neurons"] and all(r["module"] in modules and r["scale_v"] > 0 for r in quant["neurons"])
    per_channel = [r for r in quant["synapses"] if r["channel_exp"] is not None]  # batch-norm gains folded in
    assert per_channel and all(min(r["channel_exp"]) == r["weight_exp"] and r["connections"] == len(set(r["channel_exp"]))
                               for r in per_channel)
    assert set(json.loads(meta["sources"]).values()) <= modules | {"blocks.0", "blocks.0.attn", "head"}
    assert main(["verify", *args, "--target", "nir", "--input", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "spikes identical in every layer: yes" in out
    # spikec run on the .nir file: nirtorch, readout from the metadata, equal to the torch model
    assert main(["run", str(tmp_path / "m.nir"), "--input", str(tmp_path / "x.npy"), "--save", str(tmp_path / "y.npy")]) == 0
    with torch.no_grad():
        want = model(x[:4]).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=1e-5, rtol=0)
    assert "rate" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", x[:4, :1].numpy())
    assert main(["run", str(tmp_path / "m.nir"), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "per-sample features [3, 16, 16]" in capsys.readouterr().err
    if family == "sj_spikformer":  # verify exports with the same limit as compile
        assert main(["verify", *args, "--target", "nir", "--input", str(tmp_path / "x.npy"), "--max-nir-neurons", "1000"]) == 2
        assert "max pool" in capsys.readouterr().err


@pytest.mark.parametrize("pool_kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)])
def test_average_pools(tmp_path, pool_kw):
    """Average pools: SumPool2d + Scale(1/k²) (avg_pool2d's sum-then-divide), or an Affine that
    divides each window by its inside count without count_include_pad; residual sum after it."""
    from spikingjelly.activation_based import functional, layer, neuron

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = neuron.IFNode(v_threshold=0.5, step_mode="m")
            self.a, self.b = (layer.Conv2d(2, 3, 3, padding=1, step_mode="m") for _ in range(2))
            self.pa, self.pb = (layer.AvgPool2d(**pool_kw, step_mode="m") for _ in range(2))
            self.out = neuron.LIFNode(v_threshold=0.3, step_mode="m")

        def forward(self, x):
            s = self.inp(x)
            return self.out(self.pa(self.a(s)) + self.pb(self.b(s)))

    net = Net().eval()
    functional.set_step_mode(net, "m")
    x = torch.rand(3, 4, 2, 6, 6, generator=torch.Generator().manual_seed(0)) * 1.5
    g = run_pipeline(trace(net, (2, 6, 6), time_steps=3), "nir").graph
    ex = export_nir(g)
    kinds = {type(v).__name__ for v in ex.graph.nodes.values()}
    assert ("SumPool2d" in kinds) == pool_kw.get("count_include_pad", True)
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] <= 1e-6, rep


def test_dense_affine_size_is_guarded(monkeypatch):
    """NIR Affines are dense: an export whose weights would pass the limit is refused before the
    matrices are built, naming where (and --partial exports the prefix)."""
    import spikec.targets.nir.export as export

    g, _ = _nir_graph("sj_sdt", **NIR_FAMILIES["sj_sdt"])
    monkeypatch.setattr(export, "MAX_DENSE_ENTRIES", 10_000)
    with pytest.raises(UnsupportedError, match=r"dense Affine weights would exceed .* --partial"):
        export_nir(g)
    assert "partial export" in export_nir(g, partial=True).notes[-1]
