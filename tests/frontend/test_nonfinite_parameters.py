"""A NaN or an infinity in a parameter or buffer (weights, biases, batch norm statistics, neuron
parameters) is refused where the frontend turns it into an IR constant: one line naming the module,
the parameter and the first bad entry, exit code 2 on the CLI, no artifact written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

import spikec
from spikec import ir
from spikec.cli import main
from spikec.errors import UnsupportedError
from spikec.frontend.finite import nonfinite
from spikec.frontend.load import build_model

MODEL_FILE = '''
import torch
from torch import nn
from spikingjelly.activation_based import neuron


class Net(nn.Module):
    """conv -> bn -> LIF -> linear -> LIF on [T, B, 1, 4, 4]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.lif = neuron.LIFNode(tau=2.0, step_mode="m")
        self.fc = nn.Linear(32, 3)
        self.out = neuron.LIFNode(tau=2.0, step_mode="m")

    def forward(self, x):
        T, B = x.shape[:2]
        s = self.lif(self.bn(self.conv(x.flatten(0, 1))).reshape(T, B, 2, 4, 4))
        return self.out(self.fc(s.flatten(2)))


def net():
    return Net().eval()
'''

# (state_dict key, index of the bad entry, the message's module and parameter)
BAD = [("conv.weight", (1, 0, 2, 2), "module 'conv' (Conv2d): weight"),
       ("fc.weight", (0, 0), "module 'fc' (Linear): weight"),
       ("bn.running_var", (1,), "module 'bn' (BatchNorm2d): running_var")]
VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    (d / "nonfinite_net.py").write_text(MODEL_FILE)
    return f"{d}/nonfinite_net.py:net"


def _model(factory: str) -> nn.Module:
    return build_model(factory)


def _poison(model: nn.Module, key: str, index: tuple, value: float) -> nn.Module:
    with torch.no_grad():
        model.state_dict()[key][index] = value  # state_dict tensors share the parameters' storage
    return model


def _expected(prefix: str, index: tuple, name: str) -> str:
    return (f"{prefix} has 1 non-finite value ({name} at [{', '.join(map(str, index))}]); "
            "the checkpoint is corrupt or training diverged")


@pytest.mark.parametrize("name", ["NaN", "+Inf"])
@pytest.mark.parametrize("key,index,prefix", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("target", ["intref", "nir"])
def test_compile_refuses_nonfinite_parameter(factory, key, index, prefix, name, target):
    model = _poison(_model(factory), key, index, VALUES[name])
    with pytest.raises(UnsupportedError) as e:
        spikec.compile(model, target, input_shape=(1, 4, 4), time_steps=2)
    assert str(e.value) == _expected(prefix, index, name)


@pytest.mark.parametrize("name", ["NaN", "-Inf"])
@pytest.mark.parametrize("key,index,prefix", BAD, ids=[b[0] for b in BAD])
def test_cli_compile_refuses_nonfinite_checkpoint_in_one_line(tmp_path, capsys, factory, key, index, prefix, name):
    ckpt = tmp_path / "bad.pth"
    torch.save(_poison(_model(factory), key, index, VALUES[name]).state_dict(), ckpt)
    out = tmp_path / "out"
    code = main(["compile", str(ckpt), "--model", factory, "--input-shape", "1,4,4", "--time-steps", "2",
                 "--target", "intref", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == f"error: {_expected(prefix, index, name)}\n"
    assert not out.exists() and list(tmp_path.iterdir()) == [ckpt]


def test_the_finite_checkpoint_compiles(tmp_path, factory):
    """The refusals above are about the bad entry, not the model."""
    ckpt = tmp_path / "good.pth"
    torch.save(_model(factory).state_dict(), ckpt)
    out = tmp_path / "out"
    assert main(["compile", str(ckpt), "--model", factory, "--input-shape", "1,4,4", "--time-steps", "2",
                 "--target", "intref", "-o", str(out)]) == 0
    assert out.exists()


def test_counts_every_bad_entry_and_names_the_first():
    model = nn.Sequential(nn.Linear(4, 3), neuron.LIFNode(step_mode="m"))
    with torch.no_grad():
        model[0].bias[1:] = math.inf
        model[0].bias[2] = math.nan
    with pytest.raises(UnsupportedError, match=r"^module '0' \(Linear\): bias has 2 non-finite values "
                                               r"\(first: \+Inf at \[1\]\); the checkpoint"):
        spikec.trace(model, input_shape=(4,), time_steps=2)


@pytest.mark.parametrize("make,message", [
    (lambda: neuron.LIFNode(step_mode="m", v_threshold=math.nan), "v_threshold is NaN"),
    (lambda: neuron.LIFNode(step_mode="m", tau=math.inf), "tau is +Inf"),
    (lambda: neuron.LIFNode(step_mode="m", v_reset=-math.inf), "v_reset is -Inf"),
    (lambda: neuron.ParametricLIFNode(step_mode="m"), "leak rate sigmoid(w) is NaN"),
], ids=["threshold", "tau", "reset", "plif_w"])
def test_nonfinite_neuron_parameters(make, message):
    cell = make()
    if isinstance(cell, neuron.ParametricLIFNode):
        with torch.no_grad():
            cell.w.fill_(math.nan)
    model = nn.Sequential(nn.Linear(4, 3), cell)
    with pytest.raises(UnsupportedError) as e:
        spikec.trace(model, input_shape=(4,), time_steps=2)
    assert str(e.value).startswith(f"module '1' ({type(cell).__name__}): {message}; "), str(e.value)


def test_a_nonfinite_constant_factor_in_the_forward():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.lif = neuron.LIFNode(step_mode="m")

        def forward(self, x):
            return self.lif(self.fc(x) * math.inf)

    with pytest.raises(UnsupportedError, match=r"^the model's top-level forward: constant factor is \+Inf; "
                                               "the forward multiplies"):
        spikec.trace(Net(), input_shape=(4,), time_steps=2)


@pytest.mark.parametrize("op", ["mul", "div", "add"])
def test_the_refusal_survives_arithmetic_after_the_bad_layer(op):
    """A constant multiple (or quotient, or sum) of the bad layer's output reports the bad layer,
    not the arithmetic (Spikformer's ``attn * scale``: the fuzzer's case)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.other = nn.Linear(4, 3)
            self.lif = neuron.LIFNode(step_mode="m")

        def forward(self, x):
            y = self.fc(x)
            y = {"mul": lambda: y * 0.125, "div": lambda: y / 8.0, "add": lambda: self.other(x) + y}[op]()
            return self.lif(y)

    m = Net()
    with torch.no_grad():
        m.fc.weight[2, 1] = math.nan
    with pytest.raises(UnsupportedError, match=r"^module 'fc' \(Linear\): weight has 1 non-finite value \(NaN at \[2, 1\]\)"):
        spikec.trace(m, input_shape=(4,), time_steps=2)


def test_an_unused_nonfinite_parameter_is_not_an_error():
    """Only what the traced graph uses is checked (an unsupported op fails only if its result is used)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.spare = nn.Linear(4, 3)
            self.lif = neuron.LIFNode(step_mode="m")

        def forward(self, x):
            return self.lif(self.fc(x))

    m = Net()
    with torch.no_grad():
        m.spare.weight.fill_(math.nan)
    g = spikec.trace(m, input_shape=(4,), time_steps=2)
    assert [n.source for n in g.nodes if n.op == "linear"] == ["fc"]


def test_nonfinite_predicates():
    assert nonfinite(np.ones((2, 2), np.float32)) is None and nonfinite(1.5) is None and nonfinite(None) is None
    assert nonfinite(np.array([1, 2])) is None and nonfinite(True) is None
    assert nonfinite(math.nan) == "is NaN" and nonfinite(np.float32(-np.inf)) == "is -Inf"
    a = np.zeros((2, 3), np.float32)
    a[1, 2] = np.inf
    assert nonfinite(a) == "has 1 non-finite value (+Inf at [1, 2])"


def test_nir_export_survives_a_failing_quantization(monkeypatch):
    """The NIR target computes the Loihi quantization only for its metadata: when that fails with an
    internal error (here a quantizer made to crash), the float export still succeeds and the metadata
    says why the quantization is missing."""
    import spikec.compiler

    real = spikec.compiler.compile_graph

    def crashing(graph, target, *args, **kwargs):
        if target == "intref":
            raise ValueError("cannot convert float NaN to integer")
        return real(graph, target, *args, **kwargs)

    g = ir.Graph([ir.InputNode("x", (), features=(4,), time=2, layout="sequence"),
                  ir.LinearNode("fc", ("x",), "fc", weight=np.full((3, 4), 0.5, np.float32), bias=None),
                  ir.NeuronNode("lif", ("fc",), "lif", tau=2.0, decay_input=False),
                  ir.OutputNode("o", ("lif",))]).validate()
    monkeypatch.setattr(spikec.compiler, "compile_graph", crashing)
    art = spikec.compile(g, "nir")
    quant = json.loads(art.payload.graph.metadata["quantization"])
    assert set(quant) == {"unavailable"} and "please report the model" in quant["unavailable"]
    assert "ValueError: cannot convert float NaN to integer" in quant["unavailable"]


def test_a_saved_ir_with_a_nonfinite_weight_is_refused(tmp_path, factory):
    """A saved IR skips the converter: the same refusal when it is opened (spikec show / compile DIR)."""
    graph = spikec.trace(_model(factory), input_shape=(1, 4, 4), time_steps=2)
    node = next(n for n in graph.nodes if isinstance(n, (ir.ConvNode, ir.LinearNode)))
    node.weight.flat[0] = np.nan
    saved = ir.save(graph, tmp_path / "ir")
    with pytest.raises(UnsupportedError, match=rf"saved IR .*: module '{node.source}': weight has 1 non-finite value"):
        spikec.compile(str(saved), "intref")
    with pytest.raises(UnsupportedError, match="the IR graph: module"):
        spikec.compile(graph, "intref")
