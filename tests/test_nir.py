"""NIR target: export with exact semantics, coincidence expansion, refusals, re-import check."""

import json

import numpy as np
import pytest
import torch

from examples.models import zoo
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.passes.pipelines import run_pipeline
from spikec.runtime.float_interpreter import run_float
from spikec.targets.nir import export_nir, write_nir
from spikec.targets.nir.verify import check_against_float

from conftest import NIR_FAMILIES  # tiny attention (16 tokens x 8 channels per head): small expansions


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
    net = torch.nn.Sequential(layer.Linear(6, 12), neuron_cls(v_reset=None, **kw))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(12, 6) * 0.5 + 0.15)
    functional.set_step_mode(net, "m")
    return net.eval()


@pytest.mark.parametrize("variant", ["IF", "LIF", "LIF-no-decay-input", "PLIF"])
def test_soft_reset_exports_as_membrane_threshold_and_recurrent_inhibition(tmp_path, variant):
    """V = H - θS: a reset-free LI / I membrane, Threshold, and a recurrent Scale edge; the
    re-imported network fires exactly like the source, and without the recurrent edge it does not."""
    import nir
    from spikingjelly.activation_based import neuron

    cls, kw = {"IF": (neuron.IFNode, dict(v_threshold=0.7)),
               "LIF": (neuron.LIFNode, dict(tau=3.0, v_threshold=0.6)),
               "LIF-no-decay-input": (neuron.LIFNode, dict(tau=1.5, decay_input=False, v_threshold=0.9)),
               "PLIF": (neuron.ParametricLIFNode, dict(init_tau=2.5, v_threshold=0.5))}[variant]
    net = _soft_reset_net(cls, **kw)
    x = torch.rand(8, 10, 6, generator=torch.Generator().manual_seed(1)) * 1.5
    g = run_pipeline(trace(net, (6,), time_steps=8), "nir").graph
    ex = export_nir(g)
    kinds = {type(v).__name__ for v in ex.graph.nodes.values()}
    assert {"I" if variant == "IF" else "LI", "Threshold", "Scale"} <= kinds and not kinds & {"LIF", "IF"}
    assert any(a.endswith("_soft_reset") for a, _ in ex.graph.edges)
    write_nir(ex, tmp_path / "m.nir")
    rep = check_against_float(g, tmp_path / "m.nir", x)
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] == 0.0, rep
    spikes = run_float(g, x).outputs[0]
    assert 0.2 < float(spikes.mean()) < 0.9, float(spikes.mean())  # the reset is exercised
    for k, v in ex.graph.nodes.items():  # mutation: no subtraction after a spike
        if k.endswith("_soft_reset"):
            v.scale = v.scale * 0
    nir.write(str(tmp_path / "broken.nir"), ex.graph)
    assert not check_against_float(g, tmp_path / "broken.nir", x)["spikes_identical"]


@pytest.mark.parametrize("family,kw,message", [
    ("sj_spikformer", {}, "max pooling of real values"),
])
def test_refuses_what_nir_cannot_express(family, kw, message):
    g, _ = _nir_graph(family, **kw)
    with pytest.raises(UnsupportedError, match=message) as e:
        export_nir(g)
    assert "module '" in str(e.value)
    ex = export_nir(g, partial=True)
    assert ex.notes and "partial export" in ex.notes[-1]


def test_coincidence_size_limit():
    g, _ = _nir_graph("spikformer_digits", **NIR_FAMILIES["spikformer_digits"])
    with pytest.raises(UnsupportedError, match=r"coincidence neurons .* --max-nir-neurons 1000"):
        export_nir(g, max_neurons=1000)


def test_cli_compile_and_verify_nir(tmp_path, capsys):
    from spikec.cli import main

    model, x = zoo.build("sj_sdt", **NIR_FAMILIES["sj_sdt"])
    torch.save(model.state_dict(), tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", x[:4].numpy())
    args = [str(tmp_path / "m.pth"), "--model", "examples.models.zoo:sj_sdt", "--model-kwargs",
            json.dumps(NIR_FAMILIES["sj_sdt"]), "--input-shape", "3,16,16"]
    assert main(["compile", *args, "--target", "nir", "-o", str(tmp_path / "m.nir")]) == 0
    assert (tmp_path / "m.nir").exists()
    assert main(["verify", *args, "--target", "nir", "--input", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "spikes identical in every layer: yes" in out
