"""Lava target: every family runs in Lava's CPU simulator bit-exact with intref (8 inputs streamed
back to back), the compat module, the resource report, the artifact and CLI paths."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import LAVA_FAMILIES as FAMILIES
from conftest import ROOT, first_samples

from spikec import ir
from spikec.compiler import compile_graph
from spikec.targets.intref.executor import run_int
from spikec.targets.lava import build_netspec, report_lines, resource_report
from spikec.targets.lava.runner import run_lava


@pytest.mark.parametrize("family", FAMILIES)
def test_lava_equals_intref_bit_for_bit(zoo_models, family):
    model, x, g = zoo_models[family]
    x = first_samples(x, g)
    res = compile_graph(g, "lava", input_range=(0, 2))
    spec = build_netspec(res.quantized)
    ri = run_int(res.quantized, x, record=True)
    lr = run_lava(spec, x)
    assert set(lr.values) == set(spec.recorded)
    layers = [n.name for n in res.quantized.nodes if isinstance(n, ir.LoihiNeuronNode)]
    assert set(layers) <= set(lr.values)
    for name, v in lr.values.items():
        assert torch.equal(v, ri.values[name]), f"{family}: stage {name} differs"
    assert torch.equal(lr.outputs[0], ri.outputs[0])
    assert any(float(lr.values[n].float().mean()) > 0 for n in layers), "the network is active"
    assert lr.steps == 8 * spec.T + spec.latency


def test_compat_module_fixes_lava_import_on_311():
    code = "import importlib; importlib.import_module('lava.magma.compiler.var_model')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if sys.version_info >= (3, 11):
        assert r.returncode != 0 and "mutable default" in r.stderr, "without the fix lava fails on 3.11"
    fixed = ("import dataclasses; d = dataclasses.dataclass\n"
             "from spikec.compat.lava311 import ensure_lava; ensure_lava()\n"
             "from lava.magma.compiler.var_model import ByteEncoder, CoreEncoder\n"
             "assert ByteEncoder.__hash__ is object.__hash__ and dataclasses.dataclass is d\n"
             "from lava.proc.lif.process import LIF; print('ok')")
    r = subprocess.run([sys.executable, "-c", fixed], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_lava_imports_after_a_process_pool_fixed_the_start_method():
    """A process pool (spikec verify --workers) fixes multiprocessing's default start method; Lava's
    first import then sets it again, unforced.  ensure_lava lets it (a fresh interpreter: Lava is
    imported once per process)."""
    code = ("import multiprocessing as mp\n"
            "from concurrent.futures import ProcessPoolExecutor\n"
            "with ProcessPoolExecutor(1, mp_context=mp.get_context('forkserver')) as p: list(p.map(abs, [-1]))\n"
            "assert mp.get_start_method(allow_none=True) is not None\n"
            "from spikec.compat.lava311 import ensure_lava; ensure_lava()\n"
            "from lava.proc.dense.process import Dense; print(mp.get_start_method())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "fork", r.stderr[-2000:]


def test_resource_report(zoo_models, monkeypatch):
    res = compile_graph(zoo_models["spikformer_digits"][2], "lava")
    spec = build_netspec(res.quantized)
    rows = resource_report(spec)
    neurons = {r.name: r.neurons for r in rows}
    for n in res.quantized.nodes:
        if isinstance(n, ir.LoihiNeuronNode):
            assert neurons[n.name] == res.quantized.types[n.name].numel
    assert sum(r.synapses for r in rows) == sum(c.weights.nnz for c in spec.connections)
    text = "\n".join(report_lines(spec))
    assert "8192 neurons" in text and "Loihi 2 technology brief" in text and "addressed_acc" in text
    assert "host tail" in text
    total = sum(r.cores for r in rows)
    assert f"fits on one Loihi 2 chip ({total} of 128 cores" in text
    monkeypatch.setattr("spikec.targets.lava.resources.CORES_PER_CHIP", max(1, total // 3))  # a model too big for a chip
    text = "\n".join(report_lines(spec))
    assert "needs at least 3 Loihi 2 chips" in text or "needs at least 4 Loihi 2 chips" in text


def test_compile_run_verify_lava_cli(tmp_path):
    ckpt = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
    model = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"
    from examples.train import digits_split
    from spikec.cli import main

    out = tmp_path / "net"
    assert main(["compile", str(ckpt), "--model", model, "--input-shape", "1,8,8", "--target", "lava", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "spikec-lava" and manifest["lava"]["latency"] == 10
    np.save(tmp_path / "x.npy", digits_split()[2][:8].numpy())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "run", str(out), "--input", str(tmp_path / "x.npy")],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Loihi2SimCfg fixed_pt" in r.stdout and "steps/s" in r.stdout
    js = tmp_path / "v.json"
    assert main(["verify", str(ckpt), "--model", model, "--input-shape", "1,8,8", "--dataset", "digits", "--limit", "8",
                 "--target", "lava", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["check"]["reference"] == "intref" and rep["check"]["exact"] and rep["check"]["outputs_equal"]
    assert rep["check"]["steps"] > 0 and all(v == 1.0 for v in rep["check"]["layers"].values())
    assert all(l["target"] == 1.0 for l in rep["layers"])


@pytest.mark.skipif(not os.environ.get("SPIKEC_LONG_TESTS"), reason="bigger configurations: make test-long")
@pytest.mark.parametrize("family,kw", [("sj_spikformer", dict(embed_dims=64, depths=2, num_heads=4)),
                                       ("sj_sdt", dict(embed_dims=64, depths=2, num_heads=4)),
                                       ("spikformer_digits", dict(embed_dims=64, depths=2, num_heads=4))])
def test_lava_equals_intref_bigger_configs(family, kw):
    from examples.models import zoo
    from spikec.frontend import trace

    model, x = zoo.build(family, batch=16, **kw)
    g = trace(model, zoo.input_shape_of(family))
    res = compile_graph(g, "lava", input_range=(0, 2))
    spec = build_netspec(res.quantized)
    ri = run_int(res.quantized, x, record=True)
    lr = run_lava(spec, x)
    for name, v in lr.values.items():
        assert torch.equal(v, ri.values[name]), name
    assert torch.equal(lr.outputs[0], ri.outputs[0])


def test_convolutions_stay_kernels(zoo_models):
    """Every connection through a weight-shared synapse is a ConvConnection holding the kernel;
    the report counts the unrolled synapses and the stored weights."""
    import scipy.sparse as sp

    from spikec.targets.lava.netspec import ConvWeights

    res = compile_graph(zoo_models["meta_spikformer"][2], "lava", input_range=(0, 2))
    spec = build_netspec(res.quantized)
    conv = [c for c in spec.connections if isinstance(c.weights, ConvWeights)]
    assert conv and any(c.weights.post is not None for c in conv)
    for c in spec.connections:
        if c.synapse is not None and not isinstance(c.weights, ConvWeights):  # only dense linear layers are unrolled
            n = res.quantized[c.synapse]
            assert n.layout == "linear" and len(res.quantized.types[n.inputs[0]].features) == 1
        assert isinstance(c.weights, ConvWeights) or sp.issparse(c.weights)
    rows = resource_report(spec)
    assert sum(r.weights for r in rows) < sum(r.synapses for r in rows)
    text = "\n".join(report_lines(spec))
    assert "weights stored" in text and "Lava CPU simulation: about" in text


def test_memory_estimate_refuses_over_limit_and_writes_nothing(tmp_path, capsys):
    from spikec.cli import main
    from spikec.errors import SpikecError
    from spikec.targets.lava.resources import parse_bytes

    ckpt = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
    model = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"
    out = tmp_path / "net"
    rc = main(["compile", str(ckpt), "--model", model, "--input-shape", "1,8,8", "--target", "lava", "-o", str(out),
               "--max-memory", "100M"])
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists() and not list(tmp_path.iterdir())
    line = next(ln for ln in err.splitlines() if "needs about" in ln)
    assert "over the limit of 100.0 MB" in line and "Lava processes" in line and "GB" in line
    g = ir.load(ROOT / "tests" / "golden" / "spikformer_digits" / "ir")
    spec = build_netspec(g)
    with pytest.raises(SpikecError, match="needs about"):
        build_netspec(g, max_memory=spec.memory.total - 1)
    assert build_netspec(g, max_memory=spec.memory.total).memory.total == spec.memory.total
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("1.5g") == 3 << 29 and parse_bytes("512MB") == 512 << 20
    with pytest.raises(SpikecError, match="not a memory size"):
        parse_bytes("lots")
