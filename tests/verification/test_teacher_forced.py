"""Teacher-forced verification: each Loihi neuron layer run by the integer executor on the float
model's own spikes of the layers upstream, its flips judged against its quantization error bound
(spikec.verification.bounds)."""

import numpy as np
import pytest
import torch
from conftest import ROOT, first_samples

from spikec import ir
from spikec.compiler import compile_graph
from spikec.errors import SpikecError
from spikec.passes.quantize import quantize
from spikec.runtime.execute import execute
from spikec.runtime.float_interpreter import FLOAT_KERNELS, run_float
from spikec.targets import get_target
from spikec.targets.intref.executor import run_int
from spikec.verification import teacher_forced, verify_graph
from spikec.verification.bounds import layer_bounds, pre_spike_membrane

CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
DIGITS = ["--model", f"{ROOT / 'examples' / 'models' / 'spikformer.py'}:spikformer_digits", "--input-shape", "1,8,8"]
ZOO_RANGE = (0.0, 2.0)  # the zoo's inputs are uniform in [0, 2)


@pytest.fixture(scope="module")
def digits():
    """The trained digits model, 48 held-out digits and its traced graph."""
    from sklearn.datasets import load_digits

    from examples.models.spikformer import spikformer_digits
    from spikec.frontend import trace

    net = spikformer_digits()
    net.load_state_dict(torch.load(CKPT, weights_only=True)["model"])
    d = load_digits()
    x = (d.images[1437:1437 + 48] / 16.0).astype("float32")[:, None]
    return net, x, trace(net, (1, 8, 8))


@pytest.fixture(scope="module")
def digits_compiled(digits):
    return compile_graph(digits[2], "intref")


def _case(name, digits, zoo_models):
    if name == "spikformer_digits":
        net, x, g = digits
        return net, x, g, (0.0, 1.0)
    model, x, g = zoo_models[name]
    return model, first_samples(x, g).numpy(), g, ZOO_RANGE


# ---- (a) local agreement >= end-to-end agreement, no unexplained flips ---------------------------------------------
@pytest.mark.parametrize("name", ["spikformer_digits", "sj_spikformer", "sj_sdt"])
def test_local_agreement_and_every_flip_explained(name, digits, zoo_models):
    model, x, g, input_range = _case(name, digits, zoo_models)
    report = verify_graph(g, "intref", x, module=model, input_range=input_range)
    assert report.layers and report.flips_explained, report.lines()
    for r in report.layers:
        assert r.local_agreement is not None and r.error_bound is not None, r.layer
        assert r.local_agreement >= r.float_vs_int, f"{r.layer}: local {r.local_agreement} < end-to-end {r.float_vs_int}"
        assert r.unexplained_flips == 0 and not r.off_rule, r.layer
        assert np.isfinite(r.error_bound), r.layer
    assert min(r.float_vs_int for r in report.layers) < 0.99, "cascades happen end to end (else the test says little)"
    assert "unexpl." in report.lines()[1] and "local_agreement" in report.to_json()


def test_digits_bounds_are_tight_enough_to_judge(digits, digits_compiled):
    """Every digits layer's flip bound is below θ: a flip of a neuron whose float membrane is more
    than the bound away from θ (e.g. H = 0 or H = 2θ) would be reported."""
    net, x, g = digits
    local = teacher_forced(get_target("intref"), digits_compiled, run_float(digits_compiled.optimized, x, record=True), x)
    for name, (agreement, judged, bound) in local.items():
        assert bound.relative < 1.0, (name, bound.terms)
        assert judged.unexplained == 0 and agreement > 0.99, name


# ---- (b) the check can fail -------------------------------------------------------------------------------------------
def _mutated(res, layer: str, **changes):
    """A copy of the compile result whose quantized node ``layer`` has ``changes``."""
    from dataclasses import replace

    nodes = [n.replace(**changes) if n.name == layer else n for n in res.quantized.nodes]
    return replace(res, quantized=res.quantized.rewrite(nodes))


def _unexplained(res, x) -> dict[str, int]:
    local = teacher_forced(get_target("intref"), res, run_float(res.optimized, x, record=True), x)
    return {k: j.unexplained for k, (_, j, _) in local.items()}


def test_perturbed_threshold_gives_unexplained_flips_in_that_layer_only(digits, digits_compiled):
    _, x, _ = digits
    layer = "block.0.attn.q_lif"
    q = digits_compiled.quantized[layer]
    bad = _mutated(digits_compiled, layer, vth=q.vth // 2)
    counts = _unexplained(bad, x)
    assert counts[layer] > 0
    assert all(v == 0 for k, v in counts.items() if k != layer), counts  # teacher forcing keeps it local
    bounds = layer_bounds(bad.optimized, bad.quantized, bad.quant_report)
    assert any("vth" in d for d in bounds[layer].deviations)


def test_perturbed_weight_gives_unexplained_flips(digits, digits_compiled):
    _, x, _ = digits
    g = digits_compiled.quantized
    # one of the synapses feeding fc1_lif (one copy per spike train of the residual sum it reads)
    name = sorted(_synapses_upstream(g, g["block.0.mlp.fc1_lif"].inputs[0]))[0]
    syn = g[name]
    w = syn.weight.copy()
    flat = np.unravel_index(int(np.argmin(w)), w.shape)  # the most negative weight ...
    w[flat] = 254  # ... becomes the largest positive one
    bad = _mutated(digits_compiled, syn.name, weight=w)
    counts = _unexplained(bad, x)
    downstream = [k for k, v in counts.items() if v]
    assert downstream == ["block.0.mlp.fc1_lif"], counts
    bounds = layer_bounds(bad.optimized, bad.quantized, bad.quant_report)
    assert any("1 weights differ" in d for d in bounds["block.0.mlp.fc1_lif"].deviations)


def _synapses_upstream(g: ir.Graph, value: str) -> set[str]:
    out, stack = set(), [value]
    while stack:
        n = g.producer(stack.pop())
        if isinstance(n, ir.SynapseNode):
            out.add(n.name)
        elif not isinstance(n, (ir.LoihiNeuronNode, ir.InputNode, ir.QuantizeInputNode)):
            stack += list(n.inputs)
    return out


def test_cli_exits_1_on_unexplained_flips(monkeypatch, capsys, tmp_path):
    import spikec.compiler
    from spikec.cli import main

    layer = "block.0.attn.q_lif"
    original = spikec.compiler.compile_graph

    def compile_with_bug(*args, **kwargs):
        res = original(*args, **kwargs)
        return _mutated(res, layer, vth=res.quantized[layer].vth // 2)

    monkeypatch.setattr(spikec.compiler, "compile_graph", compile_with_bug)
    out = tmp_path / "report.json"
    code = main(["verify", str(CKPT), *DIGITS, "--dataset", "digits", "--limit", "32", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAIL: teacher-forced flips beyond the quantization error bound" in err and layer in err
    import json

    layers = {r["layer"]: r for r in json.loads(out.read_text())["layers"]}
    assert layers[layer]["unexplained_flips"] > 0 and layers[layer]["unexplained_at"]
    assert all(r["unexplained_flips"] == 0 for k, r in layers.items() if k != layer)


# ---- (c) the bound is a bound -----------------------------------------------------------------------------------------
def measured_membrane_errors(res, x) -> dict[str, tuple[float, float, int]]:
    """Per layer: max |H − h·Δv| / θ (teacher-forced, at every step up to and including each
    neuron's first own flip), the bound's membrane part / θ and the number of positions measured."""
    r_opt = run_float(res.optimized, x, record=True)
    neurons = [n for n in res.quantized.nodes if isinstance(n, ir.LoihiNeuronNode)]
    run = run_int(res.quantized, x, record=True, teacher={n.name: r_opt.values[n.name] for n in neurons})
    observed = {n.name: float(r_opt.membranes[n.name].abs().max()) for n in neurons}
    bounds = layer_bounds(res.optimized, res.quantized, res.quant_report, x=x, observed=observed)
    out = {}
    for n in neurons:
        b = bounds[n.name]
        v, u = run.membranes[n.name]
        h = pre_spike_membrane(n, v, u).double() * b.delta_v
        H = r_opt.membranes[n.name].double()
        diff = r_opt.values[n.name] != run.taught[n.name].reshape(H.shape).float()
        agreed_before = (torch.cumsum(diff.int(), 0) - diff.int()) == 0
        err = (H - h).abs()
        limit = torch.as_tensor(np.broadcast_to(b.membrane, tuple(H.shape[2:])).copy())
        over = agreed_before & (err > limit)
        assert not bool(over.any()), f"{n.name}: |H − h·Δv| {float(err[over].max())} above the bound at {torch.nonzero(over)[0].tolist()}"
        assert float(err[agreed_before].max()) <= b.relative * b.theta
        out[n.name] = (float(err[agreed_before].max()) / b.theta, float(b.membrane.max()) / b.theta, int(agreed_before.sum()))
    return out


def test_bound_holds_on_random_inputs_digits(digits, digits_compiled):
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)).numpy()
    measured = measured_membrane_errors(digits_compiled, np.concatenate([x, digits[1]]))
    assert len(measured) == 12
    assert all(m[2] > 0 for m in measured.values())
    assert max(m[0] for m in measured.values()) > 0, "the integer model does differ (else the test is vacuous)"


def test_bound_holds_for_if_plif_and_soft_reset(zoo_models):
    """neuron_variants: IF (linear growth in T), PLIF, soft reset (reset amount error per spike)."""
    _, x, g = zoo_models["neuron_variants"]
    res = compile_graph(g, "intref", input_range=ZOO_RANGE)
    resets = {n.reset for n in res.quantized.nodes if isinstance(n, ir.LoihiNeuronNode)}
    decays = {n.dv for n in res.quantized.nodes if isinstance(n, ir.LoihiNeuronNode)}
    assert "soft" in resets and 0 in decays, (resets, decays)
    xs = torch.rand(*x.shape, generator=torch.Generator().manual_seed(2)) * 2.0
    measured = measured_membrane_errors(res, xs.numpy())
    assert all(m[2] > 0 for m in measured.values())


# ---- (d) teacher forcing in the execution loop ------------------------------------------------------------------------
def _tiny_graph() -> ir.Graph:
    w1 = np.array([[1.0, -0.5, 0.25], [0.5, 0.5, 0.5]], np.float32)
    w2 = np.array([[0.75, 0.5]], np.float32)
    return ir.Graph([ir.InputNode("x", (), features=(3,), time=5, layout="sequence"),
                     ir.LinearNode("l1", ("x",), weight=w1),
                     ir.NeuronNode("n1", ("l1",), v_threshold=0.5, tau=2.0, decay_input=False),
                     ir.LinearNode("l2", ("n1",), weight=w2),
                     ir.NeuronNode("n2", ("l2",), v_threshold=0.5, tau=2.0, decay_input=False),
                     ir.OutputNode("o", ("n2",))]).validate()


def test_execute_teacher_forces_users_and_keeps_the_computed_value():
    g = _tiny_graph()
    x = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(0))
    free = run_float(g, x, record=True)
    forced = 1.0 - free.values["n1"]  # every spike flipped
    kernels = {**FLOAT_KERNELS}
    run = execute(g, x, kernels, record=True, teacher={"n1": forced})
    assert torch.equal(run.taught["n1"], free.values["n1"])  # computed as usual
    assert torch.equal(run.values["n1"], forced)  # users got the teacher's value
    overridden = execute(g, x, kernels, record=True, overrides={"n1": forced})
    assert torch.equal(run.values["n2"], overridden.values["n2"])
    assert not torch.equal(run.values["n2"], free.values["n2"])
    assert list(run.taught) == ["n1"]


def test_run_int_teacher_and_refusals():
    g = _tiny_graph()
    q = quantize(g, input_range=(0, 1)).graph
    x = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(0))
    free = run_int(q, x, record=True)
    forced = 1 - free.values["n1"]
    run = run_int(q, x, teacher={"n1": forced.float()})  # float spikes (the float model's) are cast
    assert torch.equal(run.taught["n1"], free.values["n1"])
    assert torch.equal(run.outputs[0], run_int(q, x, overrides={"n1": forced}).outputs[0])
    with pytest.raises(SpikecError, match="not representable"):
        run_int(q, x, teacher={"n1": forced.float() * 0.5})
    with pytest.raises(SpikecError, match="has shape"):
        run_int(q, x, teacher={"n1": forced[:2]})
