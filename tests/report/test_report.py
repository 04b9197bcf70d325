"""``spikec report``: the counting rules on hand-built layers, the report of the bundled digits
example (table, JSON, four plots), and its synaptic-operation counts against spikingjelly 2.0.0's
``op_counter.SynOpCounter`` and against an independent count with hooks on the torch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikec import ir
from spikec.errors import SpikecError
from spikec.ir.types import Kind
from spikec.reporting.ops import product_counts, synapse_counts, unrolled_synapses

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "examples/checkpoints/spikformer_digits.pth"
FACTORY = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"
SAMPLES = 32
PLOTS = ("firing_rate.png", "sops.png", "agreement.png", "quantization.png")


# ------------------------------------------------------------------------------------------------
# the counting rules, on tiny layers with known spikes
# ------------------------------------------------------------------------------------------------

def test_conv_sops_are_input_spikes_times_their_connected_weights():
    # 1 -> 2 channels, 3x3 kernel, padding 1, stride 2, on a 4x4 map; one weight of channel 1 is zero
    w = np.ones((2, 1, 3, 3), np.float32)
    w[1, 0, 1, 1] = 0.0
    node = ir.ConvNode("c", ("x",), weight=w, stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    s = np.zeros((2, 1, 1, 4, 4), np.float32)  # [T, B, C, H, W]
    s[0, 0, 0, 0, 0] = s[0, 0, 0, 1, 1] = s[1, 0, 0, 3, 3] = s[1, 0, 0, 2, 1] = 1.0
    # by hand: an input spike at (i, j) reaches output (oi, oj) through kernel tap (i - 2 oi + 1, j - 2 oj + 1)
    expected = 0
    for _t, i, j in zip(*np.nonzero(s[:, 0, 0])):
        for oc in range(2):
            for oi in range(2):
                for oj in range(2):
                    ki, kj = i - 2 * oi + 1, j - 2 * oj + 1
                    if 0 <= ki < 3 and 0 <= kj < 3 and w[oc, 0, ki, kj] != 0:
                        expected += 1
    c = synapse_counts(node, torch.from_numpy(s), Kind.SPIKE)
    assert c.sops == expected == 15 and c.macs == 0
    # a count of 2 is two events
    c2 = synapse_counts(node, torch.from_numpy(2 * s), Kind.COUNT)
    assert c2.sops == 2 * expected
    # real input: dense MACs, every weight at every output position and step (padding included)
    r = synapse_counts(node, torch.from_numpy(s + 0.5), Kind.REAL)
    assert r.sops == 0 and r.macs == 2 * 1 * (2 * 2 * 2) * 9  # T·B · outputs · C_in·k
    # unrolled synapses: (input, output) pairs with a non-zero weight inside the image
    ones = torch.ones(1, 1, 4, 4)
    assert unrolled_synapses(node, ir.TensorType(2, (1, 4, 4), Kind.SPIKE)) == int(
        F.conv2d(ones, torch.from_numpy((w != 0).astype(np.float32)), stride=2, padding=1).sum())


def test_linear_sops_count_nonzero_weights_per_spike():
    w = np.array([[1.0, 0.0, 2.0], [0.5, 0.0, 0.0]], np.float32)  # [out, in]: fan-outs 2, 0, 1
    node = ir.LinearNode("l", ("x",), weight=w)
    s = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])  # [T=1, B=2, 3]
    assert synapse_counts(node, s, Kind.SPIKE).sops == (2 + 0 + 1) + 2
    assert synapse_counts(node, torch.tensor([[[-3.0, 0.0, 4.0]]]), Kind.INT).sops == 2 + 1  # graded: one event each
    assert synapse_counts(node, s, Kind.REAL).macs == 2 * 2 * 3
    assert unrolled_synapses(node, ir.TensorType(1, (3,), Kind.SPIKE)) == 3


def test_spike_products_and_then_sum_or_fan_out():
    a = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # [T=1, B=1, N=2, K=2]
    b = torch.tensor([[[[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]]])  # [1, 1, K=2, J=3]
    node = ir.MatMulNode("m", ("a", "b"))
    # spikes x spikes: one accumulation per coincidence a[n,k] = b[k,j] = 1
    expected = sum(int(a[0, 0, n, k] * b[0, 0, k, j]) for n in range(2) for k in range(2) for j in range(3))
    assert product_counts(node, a, b, Kind.SPIKE, Kind.SPIKE).sops == expected == 6
    # graded A, spikes in B: every B spike adds a column of A (N = 2 entries)
    acc = ir.AddressedAccumulationNode("m", ("a", "b"), spike_operand=1)
    assert product_counts(acc, 3 * a, b, Kind.COUNT, Kind.SPIKE).sops == 4 * 2
    # spikes in A, graded B: every A spike adds a row of B (J = 3 entries)
    assert product_counts(node, a, 0.5 * b, Kind.SPIKE, Kind.REAL).sops == 3 * 3
    # no spike operand: dense MACs
    r = product_counts(node, a + 0.1, b, Kind.REAL, Kind.REAL)
    assert r.sops == 0 and r.macs == 2 * 2 * 3


# ------------------------------------------------------------------------------------------------
# the digits example, through the CLI
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_report(tmp_path_factory):
    from spikec.cli import main

    out = tmp_path_factory.mktemp("report") / "digits"
    code = main(["report", str(CKPT), "--model", FACTORY, "--input-shape", "1,8,8", "--dataset", "digits",
                 "--limit", str(SAMPLES), "-o", str(out)])
    assert code == 0
    return out


def test_report_writes_table_json_and_four_plots(digits_report):
    from matplotlib.image import imread

    names = {p.name for p in digits_report.iterdir()}
    assert names == {"report.json", "report.md", *PLOTS}
    md = (digits_report / "report.md").read_text()
    assert "| layer | op | neurons | synapses | rate | SOPs | MACs | energy | float=int |" in md
    assert "block.0.mlp.fc1_lif" in md and "SOPs per sample:" in md and "E_AC 0.9 pJ, E_MAC 4.6 pJ, 45 nm" in md
    for name in PLOTS:
        img = imread(digits_report / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, name
        colours = np.unique(img.reshape(-1, img.shape[2]), axis=0)
        assert len(colours) > 1, f"{name} is blank"

    rep = json.loads((digits_report / "report.json").read_text())
    assert rep["format"] == "spikec-report" and rep["samples"] == SAMPLES and rep["time_steps"] == 4
    assert rep["constants"]["E_AC_pJ"] == 0.9 and rep["constants"]["E_MAC_pJ"] == 4.6
    layers = {r["name"]: r for r in rep["layers"]}
    # the analog first layer is MACs, everything else SOPs
    first = layers["patch_embed.lifs.0"]
    assert first["sops"] == 0 and first["macs"] == 4 * 4 * 8 * 8 * 9  # T · outputs · kernel
    assert all(r["macs"] == 0 for n, r in layers.items() if n != "patch_embed.lifs.0")
    totals = rep["totals"]
    assert totals["sops"] == pytest.approx(sum(r["sops"] for r in rep["layers"]))
    assert totals["energy_pJ"] == pytest.approx(4.6 * totals["macs"] + 0.9 * totals["sops"])
    assert rep["summary"].startswith(f"SOPs per sample: {totals['sops'] / 1e9:.4g} G, energy per sample: "
                                     f"{totals['energy_pJ'] / 1e9:.4g} mJ")
    # firing rates, float vs integer agreement, quantization errors and cores are filled in
    assert 0 < layers["block.0.attn.q_lif"]["rate"] < 1
    assert all(0.8 <= r["float_vs_int"] <= 1 for r in rep["layers"] if r["op"] == "neuron")
    # 12 synapses, four of them over a sum of spike trains: one copy per train (Lava's connections), 17
    assert len(rep["quantization"]["weight_error"]) == 17 and len(rep["quantization"]["threshold_error"]) == 12
    assert rep["loihi"]["available"] and totals["cores"] == sum(r["cores"] or 0 for r in rep["layers"]) > 0


def _counts_by_source(report_dir) -> dict[str, float]:
    """The report's SOPs (all samples) per source module, the attention products under their module."""
    ops = json.loads((report_dir / "report.json").read_text())["ops"]
    out: dict[str, float] = {}
    for o in ops:
        out[o["source"]] = out.get(o["source"], 0.0) + o["sops"] * SAMPLES
    return out


def _digits_module_and_inputs():
    from spikec.data import load_dataset
    from spikec.frontend.source import open_model

    module = open_model(str(CKPT), factory=FACTORY).module.eval()
    x, _ = load_dataset("digits")
    return module, torch.as_tensor(x[:SAMPLES])


def test_sops_match_spikingjelly_synop_counter(digits_report):
    """spikingjelly 2.0.0 ``op_counter.SynOpCounter`` counts the spike-driven convolutions and matrix
    products whose input is binary; every one of them must agree within 1 % (they agree exactly)."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    module, x = _digits_module_and_inputs()
    counter = SynOpCounter()
    functional.reset_net(module)
    with torch.no_grad(), DispatchCounterMode([counter]):
        module(x)
    root = type(module).__name__ + "."
    sj = {scope.removeprefix(root): sum(int(v) for f, v in ops.items() if "convolution" in str(f) or "bmm" in str(f))
          for scope, ops in counter.get_counts().items() if scope.startswith(root)}
    ours = _counts_by_source(digits_report)
    binary_convs = ["patch_embed.convs.1", "patch_embed.convs.2", "patch_embed.convs.3", "patch_embed.rpe_conv",
                    "block.0.attn.proj_conv", "block.0.mlp.fc2_conv"]
    for name in binary_convs:
        assert sj[name] > 0 and ours[name] == pytest.approx(sj[name], rel=0.01), name
    # the attention products (Q Kᵀ: AND then sum; (Q Kᵀ) V: V spikes x tokens), recorded at the SSA module
    sj_attn = sum(int(v) for f, v in counter.get_counts()[root + "block.0.attn"].items() if "bmm" in str(f))
    assert sj_attn > 0 and ours["block.0.attn"] == pytest.approx(sj_attn, rel=0.01)
    total_sj = sum(sj[n] for n in binary_convs) + sj_attn
    total_ours = sum(ours[n] for n in binary_convs) + ours["block.0.attn"]
    assert total_ours == pytest.approx(total_sj, rel=0.01)
    # where spikingjelly counts nothing: inputs that are not binary (the residual stream's counts; the image)
    for name in ["block.0.attn.q_conv", "block.0.mlp.fc1_conv", "patch_embed.convs.0"]:
        assert sj[name] == 0


def test_sops_match_a_hand_count_with_hooks_on_the_torch_model(digits_report):
    """Every convolution of the torch model with an integer-valued input (spikes, or the residual
    stream's counts, where spikingjelly counts nothing): |input| convolved with the non-zero weight mask."""
    module, x = _digits_module_and_inputs()
    hand: dict[str, float] = {}

    def hook(name):
        def count(mod, inputs):
            s = inputs[0].detach().double()
            if not bool((s == s.round()).all()):
                return
            conv = F.conv1d if isinstance(mod, torch.nn.Conv1d) else F.conv2d
            mask = (mod.weight != 0).double()
            y = conv(s.abs(), mask, None, mod.stride, mod.padding, mod.dilation, mod.groups)
            hand[name] = hand.get(name, 0.0) + float(y.sum())
        return count

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        from spikingjelly.activation_based import functional

        functional.reset_net(module)
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    ours = _counts_by_source(digits_report)
    assert {"block.0.attn.q_conv", "block.0.attn.k_conv", "block.0.attn.v_conv", "block.0.mlp.fc1_conv"} <= set(hand)
    for name, n in hand.items():
        assert ours[name] == pytest.approx(n, rel=0.01), name


def test_report_directory_is_replaced_only_when_it_is_a_report(digits_report, tmp_path, capsys):
    from spikec.cli import main
    from spikec.reporting.output import check_report_dir, is_report_dir

    assert is_report_dir(digits_report)
    assert check_report_dir(digits_report) == digits_report  # an earlier report may be replaced
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(SpikecError, match="not a spikec artifact"):
        check_report_dir(other)
    code = main(["report", str(CKPT), "--model", FACTORY, "--input-shape", "1,8,8", "--dataset", "digits",
                 "-o", str(other)])
    assert code == 2 and (other / "mine.txt").read_text() == "keep"
    assert "refusing to replace" in capsys.readouterr().err


def test_python_api_report_and_cores_refused_for_memory(tmp_path):
    import spikec

    module, x = _digits_module_and_inputs()
    out = tmp_path / "r"
    rep = spikec.report(module, x[:4].numpy(), input_shape=(1, 8, 8), max_memory="1K", output=out)
    assert rep.samples == 4 and rep.sops > 0 and rep.energy_mj > 0
    assert rep.cores is None and "memory" in rep.loihi["reason"]
    assert all(r.cores is None for r in rep.layers)
    assert "n/a" in "\n".join(rep.lines())
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", *PLOTS}
    rep.save(out)  # an earlier report is replaced
    assert json.loads((out / "report.json").read_text())["samples"] == 4


def test_without_an_integer_model_the_float_counts_stand(monkeypatch):
    """When quantization refuses the model, the report keeps its counts and rates and says why the
    integer columns are empty."""
    import spikec.passes.quantize as quantize_pkg
    from spikec.frontend.source import model_graph, open_model
    from spikec.reporting import report_graph

    module, x = _digits_module_and_inputs()
    graph = model_graph(open_model(module), (1, 8, 8), None)
    full = report_graph(graph, x[:4].numpy(), cores=False)

    def refuse(*args, **kwargs):
        raise SpikecError("quantize: refused for the test")

    monkeypatch.setattr(quantize_pkg, "quantize", refuse)
    rep = report_graph(graph, x[:4].numpy(), labels=np.zeros(4, np.int64), cores=False)
    assert any("no integer model" in n and "refused for the test" in n for n in rep.notes)
    assert rep.sops == full.sops and rep.macs == full.macs
    assert [r.rate for r in rep.layers] == [r.rate for r in full.layers]
    assert all(r.float_vs_int is None and r.weight_error is None for r in rep.layers)
    assert rep.top1_agreement is None and set(rep.accuracy) == {"float IR"}
    assert rep.cores is None and "not computed" in rep.loihi["reason"]


def test_cli_help_and_missing_output(capsys):
    from spikec.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", "--help"])
    assert e.value.code == 0 and "usage: spikec report" in capsys.readouterr().out
    assert main(["report", str(CKPT), "--model", FACTORY, "--input-shape", "1,8,8", "--dataset", "digits"]) == 2
    assert "report needs -o DIR" in capsys.readouterr().err


def test_the_report_compiles_the_model_once_for_its_integer_model_and_cores(monkeypatch):
    """intref and lava share their passes and quantization: the cores come from the report's own
    integer model, the same figures as compiling for Lava apart."""
    import spikec.compiler as compiler
    from spikec.frontend.source import model_graph, open_model
    from spikec.reporting import report_graph
    from spikec.reporting.resources import loihi_resources

    module, x = _digits_module_and_inputs()
    graph = model_graph(open_model(module), (1, 8, 8), None)
    calls, compile_graph = [], compiler.compile_graph

    def counted(g, target, **kw):
        calls.append(getattr(target, "name", target))
        return compile_graph(g, target, **kw)

    monkeypatch.setattr(compiler, "compile_graph", counted)
    rep = report_graph(graph, x[:4].numpy())
    assert len(calls) == 1 and rep.cores is not None
    apart = loihi_resources(graph)  # compiled for Lava itself
    assert calls[1:] == ["lava"] and apart.cores == rep.loihi["cores"] and apart.lines == rep.loihi["lines"]
