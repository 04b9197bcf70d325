"""Quantization + integer reference target: datapath, exactness, accuracy, artifact, verify."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from spikec import ir
from spikec.passes.pipelines import run_pipeline
from spikec.passes.quantize import quantize
from spikec.runtime.float_interpreter import run_float
from spikec.targets.intref import kernels as K
from spikec.targets.intref.executor import run_int

DIGITS_CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
DIGITS = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"


@pytest.fixture(scope="module")
def digits():
    from examples.models.spikformer import spikformer_digits
    from examples.train import CONFIG, digits_split
    from spikec.frontend import trace

    model = spikformer_digits(**CONFIG)
    model.load_state_dict(torch.load(DIGITS_CKPT, weights_only=True)["model"])
    model.eval()
    xtr, ytr, xte, yte = digits_split()
    g = run_pipeline(trace(model, (1, 8, 8)), "intref").graph
    return model, g, quantize(g), xte, yte


def test_trained_spikformer_digits_accuracy(digits):
    """intref top-1 accuracy within 1 pp of float, >= 97 % top-1 agreement (held-out digits)."""
    model, g, q, xte, yte = digits
    yf = run_float(g, xte).outputs[0]
    yi = run_int(q.graph, xte).real_outputs()[0]
    acc_f = (yf.argmax(-1) == yte).float().mean().item()
    acc_i = (yi.argmax(-1) == yte).float().mean().item()
    agree = (yf.argmax(-1) == yi.argmax(-1)).float().mean().item()
    assert acc_f > 0.9, "the bundled example is trained"
    assert abs(acc_f - acc_i) <= 0.01, (acc_f, acc_i)
    assert agree >= 0.97, agree


def test_datapath_is_integer_only(digits):
    _, _, q, xte, _ = digits
    r = run_int(q.graph, xte[:16], record=True)
    for name, v in r.values.items():
        node = q.graph[name]
        if isinstance(node, ir.InputNode):
            continue  # the float input, quantized by the next node (the boundary)
        assert v.dtype in (torch.int64, torch.int32, torch.uint8), (name, v.dtype)
        if isinstance(node, ir.LoihiNeuronNode):
            assert v.dtype == torch.uint8 and int(v.max()) <= 1
    for n in q.graph.nodes:
        for k, a in n.attrs().items():
            if isinstance(a, np.ndarray) and not isinstance(n, (ir.InputNode, ir.QuantizeInputNode, ir.DequantizeNode)):
                assert np.issubdtype(a.dtype, np.integer), f"{n.name}.{k} is {a.dtype}"
    with pytest.raises(TypeError, match="integer datapath"):
        K.exact_matmul(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.int64))


def test_fast_float_kernels_equal_int64_kernels(digits, monkeypatch):
    """The float32 / float64 GEMM and conv kernels run only where a bound proves them exact: same integers as int64."""
    _, _, q, xte, _ = digits
    fast = run_int(q.graph, xte[:32], record=True)
    monkeypatch.setattr(K, "_exact_dtype", lambda *a: None)
    slow = run_int(q.graph, xte[:32], record=True)
    for k in fast.values:
        assert torch.equal(fast.values[k], slow.values[k]), k


def test_integer_counts_are_exact_including_threshold_equality():
    """A neuron fed spike counts: the integer neuron equals the float neuron bit for bit, also when
    the float membrane sits exactly on the threshold (v >= θ realised as v > 64·vth)."""
    nodes = [ir.InputNode("x", (), features=(5,), time=6, layout="sequence"),
             ir.NeuronNode("s", ("x",), v_threshold=0.5, tau=2.0, decay_input=False),
             ir.ReduceNode("c", ("s",), reduce="sum", axes=(0,), keepdim=True),
             ir.NeuronNode("n", ("c",), v_threshold=2.0, tau=2.0, decay_input=False),
             ir.OutputNode("o", ("n",))]
    g = ir.Graph(nodes).validate()
    x = (torch.rand(6, 500, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    q = quantize(g, input_range=(0, 1))
    rf, ri = run_float(g, x, record=True), run_int(q.graph, x, record=True)
    assert torch.equal(rf.values["s"], ri.values["s"].float())
    assert int((rf.membranes["n"] == 2.0).sum()) > 0, "the test hits the threshold exactly"
    assert torch.equal(rf.values["n"], ri.values["n"].float())


@pytest.mark.parametrize("family", [f for f in __import__("conftest").INTREF_FAMILIES if f != "spikformer_digits"])
def test_every_family_quantizes_and_runs(zoo_models, family):
    model, x, g = zoo_models[family]
    p = run_pipeline(g, "intref").graph
    q = quantize(p, input_range=(0, 2))
    rf, ri = run_float(p, x, record=True), run_int(q.graph, x, record=True)
    agreements = [float((rf.values[n.name] == ri.values[n.name].float()).float().mean())
                  for n in q.graph.nodes if isinstance(n, ir.LoihiNeuronNode)]
    assert min(agreements[:1]) > 0.97, "the first layer sees the same input up to 8-bit rounding"
    assert sum(agreements) / len(agreements) > 0.6


def test_compile_run_artifact_without_model_code(tmp_path, digits):
    from spikec.cli import main

    out = tmp_path / "art"
    assert main(["compile", str(DIGITS_CKPT), "--model", DIGITS, "--input-shape", "1,8,8", "--target", "intref",
                 "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "spikec-intref" and manifest["input"]["bits"] == 8
    assert "loihi_lif" in manifest["semantics"]
    _, _, _, xte, _ = digits
    np.save(tmp_path / "x.npy", xte[:20].numpy())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "run", str(out), "--input", str(tmp_path / "x.npy"),
                        "--save", str(tmp_path / "y.npy")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "block.0.attn.attn_lif" in r.stdout and "top-1" in r.stdout
    y = np.load(tmp_path / "y.npy")
    from spikec.targets.intref import load_artifact

    graph, _ = load_artifact(out)
    np.testing.assert_array_equal(y, run_int(graph, xte[:20]).real_outputs()[0].numpy())


def test_compile_failure_leaves_no_artifact(tmp_path, zoo_models):
    from spikec.cli import main

    model = zoo_models["neuron_variants"][0]
    torch.save(model.state_dict(), tmp_path / "nv.pth")
    # per-sample input given as a frame although the model wants a sequence: trace fails
    code = main(["compile", str(tmp_path / "nv.pth"), "--model", "examples.models.zoo:neuron_variants",
                 "--input-shape", "2,8,8", "--target", "intref", "-o", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["nv.pth"]


def test_verify_cli_report_and_threshold(tmp_path, capsys):
    from spikec.cli import main

    js = tmp_path / "v.json"
    args = ["verify", str(DIGITS_CKPT), "--model", DIGITS, "--input-shape", "1,8,8", "--dataset", "digits",
            "--limit", "120", "--json", str(js)]
    assert main(args + ["--min-agreement", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "torch=IR" in out and "first divergence" in out and "accuracy integer" in out
    rep = json.loads(js.read_text())
    assert rep["samples"] == 120 and len(rep["layers"]) == 12
    assert all(l["torch_vs_ir"] == 1.0 for l in rep["layers"])
    assert rep["layers"][0]["float_vs_int"] > 0.99
    assert main(args + ["--min-agreement", "1.01"]) == 1


@pytest.mark.parametrize("family", ["sj_spikformer", "sj_sdt"])
def test_verify_spikingjelly_models(tmp_path, zoo_models, family, capsys):
    from spikec.cli import main

    model, x, _ = zoo_models[family]
    torch.save({"model": model.state_dict()}, tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", x.numpy())
    code = main(["verify", str(tmp_path / "m.pth"), "--model", f"examples.models.zoo:{family}", "--input-shape", "3,16,16",
                 "--input", str(tmp_path / "x.npy"), "--input-range", "0,2", "--json", str(tmp_path / "r.json")])
    assert code == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert all(l["torch_vs_ir"] == 1.0 for l in rep["layers"])
    assert 0.0 <= rep["top1_agreement"] <= 1.0 and rep["layers"][0]["float_vs_int"] > 0.97


def test_currents_beyond_lavas_int32_datapath_are_reported():
    """Calibrated on all-zero inputs, a layer of large weights sees currents far beyond the
    quantization bounds on real inputs; past |a| = 2^25 Lava's int32 `a << 6` overflows, so intref
    reports those layers (and spikec verify prints the warning) instead of claiming Lava agreement."""
    from spikingjelly.activation_based import functional, layer, neuron

    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets.intref.executor import run_int

    torch.manual_seed(0)
    lin = layer.Linear(50, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(4, 50) * 1000)
    net = torch.nn.Sequential(layer.Flatten(), lin, neuron.IFNode(v_threshold=1.0), layer.Linear(4, 2))
    functional.set_step_mode(net, "m")
    g = trace(net.eval(), (2, 5, 5), time_steps=4)
    calib = np.zeros((4, 2, 2, 5, 5), np.float32)
    x = torch.rand(4, 4, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    r = run_int(compile_graph(g, "intref", calib=calib).quantized, x)
    assert list(r.overflows) == ["2"] and r.overflows["2"] > 0
    assert "overflows int32" in r.overflow_lines()[0] and "--calib" in r.overflow_lines()[0]
    assert not run_int(compile_graph(g, "intref").quantized, x).overflows  # worst-case bounds: none
