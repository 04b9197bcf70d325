"""Frontend: checkpoint forms, tracing of every family, and error messages."""

import pytest
import torch
from conftest import ROOT, neuron_outputs
from torch import nn

from spikec.errors import CheckpointError, ShapeError, UnsupportedError
from spikec.frontend import load_checkpoint, trace
from spikec.runtime.float_interpreter import run_float

DIGITS = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"


def test_each_neuron_layer_is_one_node(zoo_models):
    for fam, (model, _, graph) in zoo_models.items():
        neurons = [n for n in graph.nodes if n.op == "neuron"]
        assert len({n.source for n in neurons}) == len(neurons)
        names = {p for p, m in model.named_modules() if type(m).__name__.endswith("Node")}
        assert {n.source for n in neurons} == names, fam


def test_sources_and_kinds_of_spikformer_attention(zoo_models):
    g = zoo_models["spikformer_digits"][2]
    matmuls = [n for n in g.nodes if n.op == "matmul"]
    assert [n.source for n in matmuls] == ["block.0.attn", "block.0.attn"]
    assert all(g.types[i].kind.value == "spike" for i in matmuls[0].inputs)
    attn = g["block.0.attn.attn_lif"]
    assert attn.v_threshold == 0.5 and attn.tau == 2.0
    assert any(n.op == "scale" and n.factor == 0.125 for n in g.nodes)


def test_neuron_variants_parameters(zoo_models):
    g = zoo_models["neuron_variants"][2]
    n = {x.source: x for x in g.nodes if x.op == "neuron"}
    assert n["1"].model == "IF" and n["1"].v_threshold == pytest.approx(0.8)
    assert n["4"].leak_rate == pytest.approx(1 / 3.0) and n["4"].v_reset is None
    assert n["7"].decay_input is False and n["7"].v_reset == -0.25 and n["7"].v_init == -0.25
    assert g.inputs[0].layout == "sequence" and g.inputs[0].time == 4


def _save_state_dict(tmp_path, model, wrap=None, prefix=""):
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    obj = {wrap: sd, "epoch": 3} if wrap else sd
    p = tmp_path / "ckpt.pth"
    torch.save(obj, p)
    return p


@pytest.mark.parametrize("wrap,prefix", [(None, ""), ("model", ""), ("state_dict", "module."), ("module", "")])
def test_state_dict_forms(tmp_path, zoo_models, wrap, prefix):
    model, x, graph = zoo_models["spikformer_digits"]
    p = _save_state_dict(tmp_path, model, wrap, prefix)
    loaded = load_checkpoint(p, factory=DIGITS)
    g = trace(loaded, (1, 8, 8))
    y, _ = neuron_outputs(model, x)
    torch.testing.assert_close(run_float(g, x).outputs[0], y, rtol=0, atol=1e-5)


def test_factory_as_module_path(tmp_path, zoo_models):
    model, x, _ = zoo_models["sj_sdt"]
    p = _save_state_dict(tmp_path, model)
    loaded = load_checkpoint(p, factory="examples.models.zoo:sj_sdt")
    g = trace(loaded, (3, 16, 16))
    y, _ = neuron_outputs(model, x)
    torch.testing.assert_close(run_float(g, x).outputs[0], y, rtol=0, atol=1e-5)


def test_factory_kwargs_and_state_dict_mismatch(tmp_path, zoo_models):
    model = zoo_models["spikformer_digits"][0]
    p = _save_state_dict(tmp_path, model)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p, factory=DIGITS, model_kwargs={"embed_dims": 64})
    msg = str(e.value)
    assert "shape mismatch" in msg and "patch_embed.convs.0.weight" in msg
    sd = model.state_dict()
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match=r"missing keys: head\.bias.*unexpected keys: extra\.weight"):
        load_checkpoint(p, factory=DIGITS)


def test_state_dict_needs_a_factory(tmp_path, zoo_models):
    p = _save_state_dict(tmp_path, zoo_models["spikformer_digits"][0])
    with pytest.raises(CheckpointError, match="--model"):
        load_checkpoint(p)


def test_pickled_module_needs_trust(tmp_path, zoo_models):
    model, x, _ = zoo_models["sj_sdt"]
    p = tmp_path / "whole.pt"
    torch.save(model, p)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(p)
    loaded = load_checkpoint(p, trust_checkpoint=True)
    g = trace(loaded, (3, 16, 16))
    y, _ = neuron_outputs(model, x)
    torch.testing.assert_close(run_float(g, x).outputs[0], y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("wrapper", ["none", "DataParallel"])
def test_pickled_legacy_module_in_a_fresh_process(tmp_path, zoo_models, wrapper):
    """A whole pickled module whose code imports the legacy spikingjelly.clock_driven API (the
    compat layer must be in place before unpickling), found from the working directory like
    --model, and a pickled DataParallel wrapper (unwrapped): traced by the console script."""
    import shutil
    import subprocess

    from conftest import ROOT

    model = zoo_models["spikformer_digits"][0]
    torch.save(torch.nn.DataParallel(model) if wrapper == "DataParallel" else model, tmp_path / "whole.pt")
    exe = shutil.which("spikec", path=str(ROOT / ".venv" / "bin")) or shutil.which("spikec")
    r = subprocess.run([exe, "show", str(tmp_path / "whole.pt"), "--trust-checkpoint", "--input-shape", "1,8,8"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "block.0.attn" in r.stdout, r.stderr[-1500:]


@pytest.mark.parametrize("family", ["sj_spikformer", "sj_sdt"])
def test_exported_program_with_spikingjelly_ops(tmp_path, zoo_models, family):
    """A .pt2 of the *unmodified* spikingjelly model: neurons arrive as sj_lif ops."""
    model, x, graph = zoo_models[family]
    ep = torch.export.export(model, (x[:2],), strict=False)
    p = tmp_path / "model.pt2"
    torch.export.save(ep, p)
    g = trace(load_checkpoint(p))
    assert [n.source for n in g.nodes if n.op == "neuron"] == [n.source for n in graph.nodes if n.op == "neuron"]
    y, _ = neuron_outputs(model, x[:2])
    torch.testing.assert_close(run_float(g, x[:2]).outputs[0], y, rtol=0, atol=1e-5)


def test_exported_program_compiles_in_a_fresh_process(tmp_path, zoo_models):
    """The CLI registers spikingjelly's custom ops itself (in the test process an earlier model
    call already did): compile and run a .pt2 of the unmodified model in a new process."""
    import subprocess
    import sys

    import numpy as np

    from examples.models.zoo import _reset

    model, x, _ = zoo_models["sj_sdt"]
    _reset(model)  # fresh membranes (earlier tests ran the model)
    torch.export.save(torch.export.export(model, (x[:2],), strict=False), tmp_path / "m.pt2")
    np.save(tmp_path / "x.npy", x[:3].numpy())
    cmd = [sys.executable, "-m", "spikec"]
    r = subprocess.run(cmd + ["compile", str(tmp_path / "m.pt2"), "--target", "intref", "-o", str(tmp_path / "m.intref")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    r = subprocess.run(cmd + ["run", str(tmp_path / "m.intref"), "--input", str(tmp_path / "x.npy")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "top-1" in r.stdout, r.stderr[-1500:]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read checkpoint|corrupt"):
        load_checkpoint(bad, factory=DIGITS)
    bad2 = tmp_path / "bad.pt2"
    bad2.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="exported program"):
        load_checkpoint(bad2)


def test_bad_factory_specs(tmp_path, zoo_models):
    p = _save_state_dict(tmp_path, zoo_models["spikformer_digits"][0])
    with pytest.raises(CheckpointError, match="expected 'package.module:factory'"):
        load_checkpoint(p, factory="examples.models.zoo")
    with pytest.raises(CheckpointError, match="has no callable 'nope'"):
        load_checkpoint(p, factory="examples.models.zoo:nope")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(p, factory="missing/file.py:f")


class _WithTanh(nn.Module):
    def __init__(self):
        super().__init__()
        from spikingjelly.activation_based import layer, neuron

        self.conv = layer.Conv2d(3, 4, 3, step_mode="m")
        self.act = nn.Tanh()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        x = self.conv(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        return self.lif(self.act(x))


class _LogSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.blocks = nn.ModuleList([nn.Identity(), nn.Linear(8, 8)])
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        x = self.lif(x)
        return self.blocks[1](x).log_softmax(-1)


def test_unsupported_op_names_module_path_and_type():
    with pytest.raises(UnsupportedError) as e:
        trace(_WithTanh(), (3, 8, 8))
    msg = str(e.value)
    assert "tanh" in msg and "module 'act'" in msg and "Tanh" in msg
    with pytest.raises(UnsupportedError, match=r"aten.log_softmax in the model's top-level forward"):
        trace(_LogSoftmax(), (8,), time_steps=2)


def test_unsupported_and_single_step_neurons():
    from spikingjelly.activation_based import neuron

    net = nn.Sequential(nn.Linear(4, 4), neuron.QIFNode(step_mode="m") if hasattr(neuron, "QIFNode") else neuron.EIFNode(step_mode="m"))
    with pytest.raises(UnsupportedError, match=r"module '1' is a spikingjelly.*not support.*Supported neurons"):
        trace(net, (4,), time_steps=2)
    net = nn.Sequential(nn.Linear(4, 4), neuron.LIFNode(step_mode="s"))
    with pytest.raises(UnsupportedError, match="single-step mode.*set_step_mode"):
        trace(net, (4,), time_steps=2)


def test_wrong_input_shape_at_trace_time(zoo_models):
    model = zoo_models["sj_sdt"][0]
    with pytest.raises(ShapeError, match=r"does not accept input of shape \[B, 1, 16, 16\].*channels"):
        trace(model, (1, 16, 16))


def test_model_holding_autograd_state_is_refused_in_one_line():
    """A model run once with autograd keeps neuron state torch cannot copy: named, with the fix."""
    from spikingjelly.activation_based import neuron

    from spikec.errors import SpikecError

    model = nn.Sequential(nn.Linear(4, 4), neuron.LIFNode(step_mode="m"))
    model(torch.rand(2, 3, 4))
    with pytest.raises(SpikecError, match=r"module '1' \(LIFNode\) holds 'v' computed with autograd.*reset_net"):
        trace(model, (4,), time_steps=2)
