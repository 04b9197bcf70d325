"""NIR files in other simulators: each consumer's own NIR import runs spikec's file and fires like the
float IR where spikec says it does, refuses (naming the nodes and modules) where it says it cannot,
and the README's support table and per-consumer guides say exactly this."""

from __future__ import annotations

import json
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import NIR_FAMILIES, ROOT

from examples.models import zoo
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.passes.pipelines import run_pipeline
from spikec.targets.nir import consumers, export_nir, write_nir
from spikec.targets.nir.verify import check_against_float, run_file

CONSUMERS = list(consumers.CONSUMERS)
SMALL = {"lif": "conv / linear LIF, reset to 0", "if": "conv / linear IF, reset to 0",
         "lif_soft": "conv / linear LIF, soft reset", "if_soft": "conv / linear IF, soft reset"}
FAMILIES = list(SMALL) + list(NIR_FAMILIES)

# the cells where the consumer's own import runs spikec's file and every neuron layer fires exactly as in the
# float IR; every other cell is refused by --consumer, for reasons the README table lists (rendered from
# consumers.unreadable, checked to be real by running the consumer anyway)
# (issue 16: snnTorch and Norse read conv / linear networks of LIF and of IF neurons with hard reset exactly,
# exported with --consumer NAME: snnTorch gets IF as a LIF without leak, Norse LIF in the input-decayed form)
IDENTICAL = {("lif", "snntorch"), ("if", "snntorch"), ("lif", "norse"), ("if", "norse")}
ENCODING = {c for c in CONSUMERS if consumers.get(c).encode is not None}  # consumers with forms of their own


def cell(family: str, consumer: str, tmp_path_factory) -> str:
    """The README table's cell: what the consumer cannot read, node types first-seen order."""
    if (family, consumer) in IDENTICAL:
        return "spike-identical"
    reasons = consumers.unreadable(exported(family, tmp_path_factory, consumer)[3].graph, consumer)
    short = [r.split(" (")[0] if "no mapping" in r else r for r in reasons]
    return "no: " + ", ".join(dict.fromkeys(short))


def small_net(kind: str):
    """conv -> BN -> neuron -> flatten -> linear -> neuron over [T=4, B=8, 1, 8, 8] (prepared to fire)."""
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    soft = kind.endswith("_soft")
    cell = (lambda: neuron.LIFNode(tau=2.0, v_reset=None if soft else 0.0)) if kind.startswith("lif") else \
        (lambda: neuron.IFNode(v_reset=None if soft else 0.0))
    net = torch.nn.Sequential(OrderedDict(conv=layer.Conv2d(1, 8, 3, padding=1), bn=layer.BatchNorm2d(8), sn1=cell(),
                                          flat=layer.Flatten(), fc=layer.Linear(8 * 8 * 8, 10), sn2=cell()))
    functional.set_step_mode(net, "m")
    x = torch.rand(4, 8, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.5
    zoo.prepare(net, x)
    with torch.no_grad():  # the classifier neurons fire too
        net.fc.weight.mul_(4.0)
        net.fc.bias.add_(0.5)
    return net, x


_CACHE: dict = {}


def _graph(family: str):
    """(float IR after the nir pipeline, input) of a family, built once."""
    if family not in _CACHE:
        if family in SMALL:
            net, x = small_net(family)
            shape, T = (1, 8, 8), 4
        else:
            net, x = zoo.build(family, batch=6, **NIR_FAMILIES[family])
            shape, T = zoo.input_shape_of(family), zoo.SEQUENCE_INPUT.get(family)
        _CACHE[family] = (run_pipeline(trace(net, shape, time_steps=T), "nir").graph, x)
    return _CACHE[family]


def exported(family: str, tmp_path_factory, consumer=None):
    """(float IR, input, NIR file, Exported) of a family as ``--consumer consumer`` writes it (the
    default export for consumers without forms of their own), built once."""
    consumer = consumer if consumer in ENCODING else None
    if (family, consumer) not in _CACHE:
        g, x = _graph(family)
        ex = export_nir(g, consumer=consumer)
        path = tmp_path_factory.mktemp("interop") / f"{family}_{consumer or 'nir'}.nir"
        write_nir(ex, path)
        own = check_against_float(g, path, x)  # the conventions keep spikec's own re-import exact
        assert own["spikes_identical"] and own["output_max_abs_diff"] <= 1e-5, own
        _CACHE[family, consumer] = (g, x, path, ex)
    return _CACHE[family, consumer]


def _guard(consumer: str):
    pytest.importorskip(consumers.get(consumer).module)  # installed by `make test` (pyproject's interop extra)


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_matrix(family, consumer, tmp_path_factory):
    """Each cell: spike-identical in the consumer's own import, or refused by --consumer for a reason
    that is real (the consumer fails to load or run it, or fires differently)."""
    _guard(consumer)
    g, x, path, ex = exported(family, tmp_path_factory, consumer)  # checked against spikec's own reader once
    sources = {n.name: n.source for n in g.nodes}
    refusal = consumers.describe(ex.graph, consumer, ex.origins, sources)
    if (family, consumer) in IDENTICAL:
        assert refusal == ""
        rep = consumers.compare_with_float(g, path, x, consumer)
        assert rep["layers"] and rep["spikes_identical"], rep["layers"]
        assert rep["output_max_abs_diff"] <= 1e-5
        return
    assert refusal.startswith(f"nir: {consumers.get(consumer).requirement} cannot read") and "\n" not in refusal
    assert "module '" in refusal  # names the source modules
    try:  # not over-cautious: run anyway, and the consumer indeed fails or fires differently
        rep = consumers.compare_with_float(g, path, x, consumer, refuse=False)
    except Exception:  # noqa: BLE001 - any failure of the consumer's own import or run
        return
    assert not rep["spikes_identical"], (family, consumer, rep["layers"])


def test_spikes_fire_in_identical_cells(tmp_path_factory):
    """The identical cells are not vacuous: every layer fires and stays silent somewhere."""
    for family in ("lif", "if"):
        g, x, path, ex = exported(family, tmp_path_factory)
        from spikec.runtime.float_interpreter import run_float

        rf = run_float(g, x, record=True)
        for n in g.nodes:
            if n.op == "neuron":
                assert 0.02 < float(rf.values[n.name].float().mean()) < 0.98, (family, n.name)


@pytest.mark.parametrize("consumer", ["snntorch", "norse"])
@pytest.mark.parametrize("kind", ["lif", "if"])
def test_conv_linear_spike_identical_in_the_consumer(kind, consumer, tmp_path_factory):
    """Issue 16: conv / linear networks of LIF and of IF neurons (hard reset), exported with --consumer,
    imported by the consumer's own NIR import: on 8 inputs every neuron layer fires as the float IR."""
    _guard(consumer)
    g, x, path, ex = exported(kind, tmp_path_factory, consumer)
    assert x.shape[1] == 8 and consumers.describe(ex.graph, consumer) == ""
    rep = consumers.compare_with_float(g, path, x, consumer)
    assert set(rep["layers"]) == {n.name for n in g.nodes if n.op == "neuron"}, rep["layers"]
    assert rep["spikes_identical"] and rep["output_max_abs_diff"] == 0.0, rep


def _neuron_graph(node, n: int):
    import nir

    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}), "neuron": node,
                               "output": nir.Output(output_type={"output": np.array([n])})},
                        edges=[("input", "neuron"), ("neuron", "output")], metadata={"dt": json.dumps(1e-4)})


def _ir_neuron(model: str, tau=None, theta=1.0):
    from spikec import ir

    return ir.NeuronNode(name="sn", inputs=("x",), model=model, v_threshold=theta, v_reset=0.0, tau=tau,
                         decay_input=False, leak_rate=None, v_init=0.0)


def _currents(n: int = 20000, T: int = 16):
    g = torch.Generator().manual_seed(3)
    return torch.randn(T, n, generator=g) * 0.7 + 0.3  # fires often, and its membrane sits anywhere in float32


def test_snntorch_if_form_is_an_exact_if():
    """IF (hard reset) for snnTorch: a NIR LIF without leak; snnTorch's own import makes beta exactly 1.0 and no
    threshold rescaling, and its membranes and spikes equal the IR's IF bit for bit."""
    _guard("snntorch")
    import nir

    from spikec.runtime.neuron_dynamics import neuron_forward

    n, x = 20000, _currents()
    theta = np.full(n, np.nextafter(np.float32(1.0), np.float32(0)), np.float32)
    node, _ = consumers.encode_neuron("snntorch", nir, _ir_neuron("IF"), theta, (n,))
    assert isinstance(node, nir.LIF) and np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    assert np.allclose(node.r * 1e-4 / node.tau, 1.0) and np.all(node.tau == consumers.IF_AS_LIF_TAU)
    net = consumers.run_consumer(_neuron_graph(node, n), "snntorch", x.unsqueeze(1))[0].reshape(x.shape)
    leaky = [m for m in consumers.get("snntorch").load(_neuron_graph(node, n)).modules() if hasattr(m, "beta")][0]
    assert torch.all(leaky.beta == 1.0) and leaky.beta.dtype == torch.float32
    assert float(leaky.threshold) == float(theta[0])
    assert torch.equal(net, neuron_forward(x, "IF", 1.0, 0.0, None, True, None, 0.0))
    assert consumers.encode_neuron("snntorch", nir, _ir_neuron("IF").replace(v_reset=0.5), theta, (n,)) is None


def test_norse_lif_form():
    """LIF (hard reset, τ = 2^k) for Norse: r = 1, threshold θ'/τ, Norse's dt·(1/tau) exactly 1/τ; Norse then
    computes spikingjelly's input-decayed LIF bit for bit, and fires as the IR's input-unscaled form here."""
    _guard("norse")
    import nir

    from spikec.runtime.neuron_dynamics import neuron_forward

    n, x = 20000, _currents()
    for tau in (2.0, 4.0, 8.0):
        th = np.full(n, np.nextafter(np.float32(tau), np.float32(0)), np.float32)  # the IR's θ' = τθ, θ = 1
        node, _ = consumers.encode_neuron("norse", nir, _ir_neuron("LIF", tau, tau), th, (n,))
        assert np.all(node.r == 1) and np.all(node.v_threshold * np.float32(tau) == th)
        assert consumers._norse_leak(node.tau[0]) == 1 / tau
        z = consumers.run_consumer(_neuron_graph(node, n), "norse", x.unsqueeze(1))[0].reshape(x.shape)
        assert torch.equal(z, neuron_forward(x, "LIF", 1.0, 0.0, tau, True, None, 0.0))  # the source's LIF
        assert torch.equal(z, neuron_forward(x, "LIF", tau, 0.0, tau, False, None, 0.0))  # the IR's form
    for tau in (3.0, 2.0 ** -1):  # not a power of two steps / below one step: the default form (refused: r ignored)
        assert consumers.encode_neuron("norse", nir, _ir_neuron("LIF", tau, tau), th, (n,)) is None


def test_default_export_keeps_nir_forms(tmp_path_factory):
    """Without --consumer the file is spikec's NIR: IF as NIR IF (r = 1/dt), input-unscaled LIF with r = τ."""
    import nir

    for kind, cls in (("if", nir.IF), ("lif", nir.LIF)):
        g, x, path, ex = exported(kind, tmp_path_factory)
        neurons = [v for v in ex.graph.nodes.values() if isinstance(v, (nir.IF, nir.LIF))]
        assert neurons and all(type(v) is cls for v in neurons)
        assert json.loads(ex.graph.metadata["consumer"]) is None
        if kind == "lif":
            assert all(np.all(v.r == 2.0) for v in neurons)
        assert consumers.describe(ex.graph, "snntorch" if kind == "if" else "norse")  # still refused as written


def test_conventions_in_the_file(tmp_path_factory):
    """dt = 1e-4 s, Flatten with a negative start dim, strict thresholds just below θ, metadata."""
    import nir

    g, x, path, ex = exported("lif", tmp_path_factory)
    back = nir.read(str(path))
    assert json.loads(back.metadata["dt"]) == 1e-4
    assert {"T", "input_layout", "readout", "neurons", "threshold_convention"} <= set(back.metadata)
    (flat,) = [v for v in back.nodes.values() if isinstance(v, nir.Flatten)]
    assert (flat.start_dim, flat.end_dim) == (-3, -1)  # [C, H, W] un-batched; also right for batched readers
    neurons = json.loads(back.metadata["neurons"])
    for n in g.nodes:
        if n.op == "neuron":
            v = back.nodes[neurons[n.name]]
            assert isinstance(v, nir.LIF)
            below = np.nextafter(np.float32(n.v_threshold), np.float32(-np.inf))  # NIR's strict v > θ' = v >= θ
            assert np.all(v.v_threshold == below) and np.allclose(v.v_leak, v.v_reset)
            assert json.loads(v.metadata["spikec_tau"]) == n.tau and np.allclose(v.tau, n.tau * 1e-4)


def test_unknown_consumer_is_refused():
    with pytest.raises(Exception, match="unknown NIR consumer 'brian'; consumers: snntorch, norse, rockpool, sinabs"):
        consumers.get("brian")


# --- the option on the target, the API and the CLI ----------------------------------------------------------

def _write_model(tmp_path, kind: str):
    net, x = small_net(kind)
    (tmp_path / "net.py").write_text(
        "import torch\nfrom collections import OrderedDict\n"
        "from spikingjelly.activation_based import functional, layer, neuron\n\n"
        "def net():\n"
        f"    cell = (lambda: neuron.{'LIFNode(tau=2.0, v_reset=0.0)' if kind == 'lif' else 'IFNode(v_reset=0.0)'})\n"
        "    n = torch.nn.Sequential(OrderedDict(conv=layer.Conv2d(1, 8, 3, padding=1), bn=layer.BatchNorm2d(8), sn1=cell(),\n"
        "        flat=layer.Flatten(), fc=layer.Linear(512, 10), sn2=cell()))\n"
        "    functional.set_step_mode(n, 'm')\n"
        "    return n.eval()\n")
    torch.save(net.state_dict(), tmp_path / "net.pth")
    np.save(tmp_path / "x.npy", x.numpy())  # 8 inputs
    return ["--model", f"{tmp_path}/net.py:net", "--input-shape", "1,8,8", "--time-steps", "4"]


def test_cli_compile_refuses_what_the_consumer_cannot_read(tmp_path, capsys):
    from spikec.cli import main

    args = _write_model(tmp_path, "if")
    out = tmp_path / "m.nir"
    code = main(["compile", str(tmp_path / "net.pth"), *args, "--target", "nir", "--consumer", "sinabs", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "sinabs==3.1.3 cannot read" in err and "IF (multi-spike, subtractive reset)" in err and "module 'sn1'" in err, err
    assert not out.exists()
    for consumer in ("norse", "snntorch"):  # snnTorch: IF written as a LIF without leak
        assert main(["compile", str(tmp_path / "net.pth"), *args, "--target", "nir", "--consumer", consumer,
                     "-o", str(out)]) == 0
        assert out.is_file()


@pytest.mark.parametrize("consumer", ["norse", "snntorch"])
@pytest.mark.parametrize("kind", ["lif", "if"])
def test_cli_verify_runs_the_file_in_the_consumer(kind, consumer, tmp_path, capsys):
    _guard(consumer)
    from spikec.cli import main

    args = _write_model(tmp_path, kind)
    code = main(["verify", str(tmp_path / "net.pth"), *args, "--target", "nir", "--consumer", consumer,
                 "--input", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"nir in {consumer}==1.{'1.0' if consumer == 'norse' else '0.0'} (its own NIR import): " \
           "spikes identical in every layer: yes" in out, out


def test_api_verify_with_consumer_reports_its_agreement(tmp_path):
    _guard("snntorch")
    import spikec

    net, x = small_net("lif")
    rep = spikec.verify(net, "nir", x[:, :4], input_shape=(1, 8, 8), time_steps=4, consumer="snntorch")
    assert rep.check["exact"] and rep.check["consumer"] == "snntorch==1.0.0", rep.check
    assert any("snntorch==1.0.0" in line for line in rep.check_lines)
    with pytest.raises(UnsupportedError, match=r"rockpool==3.1.0 cannot read .*LIF \(reads LIF.tau_mem"):
        spikec.compile(net, "nir", input_shape=(1, 8, 8), time_steps=4, consumer="rockpool")


# --- the README: support table and guides -------------------------------------------------------------------

def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## NIR in other simulators\n(.*?)^## ", text, re.S | re.M)
    assert m, "README has the section 'NIR in other simulators'"
    return m.group(1)


def test_readme_table_matches_the_tested_matrix(tmp_path_factory):
    block = re.search(r"<!-- nir-consumers-table -->\n(.*?)<!-- /nir-consumers-table -->", _readme_section(), re.S)
    assert block
    rows = [line for line in block.group(1).strip().splitlines()[2:]]
    names = {"snntorch": "snnTorch 1.0.0", "norse": "Norse 1.1.0", "rockpool": "Rockpool 3.1.0", "sinabs": "Sinabs 3.1.3"}
    header = block.group(1).strip().splitlines()[0]
    assert header == "| family | spikec (nirtorch) | " + " | ".join(names[c] for c in CONSUMERS) + " |", header
    want = [f"| {SMALL.get(f, f'`{f}`')} | spike-identical | "
            + " | ".join(cell(f, c, tmp_path_factory) for c in CONSUMERS) + " |" for f in FAMILIES]
    assert rows == want, "\n".join(want)


GUIDE_FILES = {"snntorch": "lif", "norse": "if", "rockpool": "lif", "sinabs": "if"}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_readme_guide_runs(consumer, tmp_path_factory, monkeypatch, capsys):
    """Each guide snippet, as written, in a folder holding model.nir and input.npy."""
    _guard(consumer)
    block = re.search(rf"<!-- nir-guide: {consumer} -->\n```python\n(.*?)```", _readme_section(), re.S)
    assert block, f"README has the {consumer} guide"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 14
    g, x, path, ex = exported(GUIDE_FILES[consumer], tmp_path_factory, consumer)
    d = tmp_path_factory.mktemp(f"guide_{consumer}")
    (d / "model.nir").write_bytes(path.read_bytes())
    np.save(d / "input.npy", x.numpy())
    monkeypatch.chdir(d)
    ns: dict = {}
    exec(compile(code, f"README guide {consumer}", "exec"), ns)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    if (GUIDE_FILES[consumer], consumer) in IDENTICAL:
        want = run_file(d / "model.nir", x)[0]
        assert torch.equal(torch.as_tensor(ns["y"]).reshape(want.shape), want)
    else:
        assert f"{consumers.get(consumer).requirement} cannot read" in out, out
