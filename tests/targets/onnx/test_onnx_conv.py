"""ONNX convolutions on graded values (counts, residual streams, signed and wide inputs) stay
convolutions (u8 x u8 ConvIntegers over signs and base-256 digits), bit-exact with intref; models
over protobuf's 2 GiB are refused before they are built, with one line."""

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from conftest import ROOT

from spikec import ir
from spikec.compiler import compile_graph
from spikec.errors import UnsupportedError
from spikec.targets.intref.executor import run_int
from spikec.targets.onnx import export as E
from spikec.targets.onnx import export_onnx, write_onnx
from spikec.targets.onnx.runner import run_onnx_model

CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
DIGITS = ["--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits", "--input-shape", "1,8,8"]


def _conv_graph(cin, spatial, w, *, stride=None, padding=None, dilation=None, groups=1, bits=8, signed=False, T=2,
                exp=0, bias=None) -> ir.Graph:
    """input -> quantize (scale 1: an integer input is its own level) -> repeat -> conv synapse -> output."""
    nd = len(spatial)
    return ir.Graph([
        ir.InputNode("x", (), features=(cin, *spatial)),
        ir.QuantizeInputNode("q", ("x",), scale=1.0, bits=bits, signed=signed),
        ir.RepeatTimeNode("r", ("q",), time=T),
        ir.SynapseNode("conv", ("r",), layout="conv", weight=np.asarray(w, np.int64), weight_exp=exp, bias=bias,
                       stride=stride or (1,) * nd, padding=padding or (0,) * nd, dilation=dilation or (1,) * nd,
                       groups=groups),
        ir.OutputNode("y", ("conv",)),
    ]).validate()


def _assert_equals_intref(g: ir.Graph, x: np.ndarray) -> onnx.ModelProto:
    model = export_onnx(g)
    ref = run_int(g, torch.as_tensor(x)).outputs[0].numpy()
    y = run_onnx_model(model, x)[0][0]
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, ref)
    return model


def _mixed_weights(rng, shape):
    """Lava MIXED effective weights: even values in [-256, 254]."""
    return rng.integers(-128, 128, shape) * 2


# (spatial, cin, cout, kernel, stride, padding, dilation, groups, bits, signed)
CASES = {
    "2d-u8-3x3-pad": ((7, 7), 3, 5, 3, 1, 1, 1, 1, 8, False),
    "2d-s8-strided": ((9, 8), 4, 6, 3, 2, 1, 1, 1, 8, True),
    "2d-u12-two-digits": ((6, 6), 2, 4, 3, 1, 1, 1, 1, 12, False),
    "2d-s16-dilated-grouped": ((9, 9), 4, 6, 3, (2, 1), (1, 2), (1, 2), 2, 16, True),
    "2d-s12-depthwise-strided": ((8, 8), 4, 4, 3, 2, 1, 1, 4, 12, True),
    "2d-s8-1x1-strided": ((6, 6), 4, 3, 1, 2, 0, 1, 1, 8, True),
    "2d-s10-1x1-pointwise": ((5, 5), 4, 3, 1, 1, 0, 1, 1, 10, True),
    "2d-u20-three-digits": ((5, 5), 2, 3, 3, 1, 1, 1, 1, 20, False),
    "1d-s16-strided-padded": ((11,), 3, 4, 5, 2, 2, 1, 1, 16, True),
    "1d-u9-depthwise-dilated": ((12,), 4, 8, 3, 1, 2, 2, 4, 9, False),
}


@pytest.mark.parametrize("case", CASES)
def test_graded_convolution_equals_intref(case):
    spatial, cin, cout, k, s, p, d, groups, bits, signed = CASES[case]
    nd = len(spatial)
    tup = lambda v: v if isinstance(v, tuple) else (v,) * nd  # noqa: E731
    rng = np.random.default_rng(len(case))
    w = _mixed_weights(rng, (cout, cin // groups, *tup(k)))
    g = _conv_graph(cin, spatial, w, stride=tup(s), padding=tup(p), dilation=tup(d), groups=groups, bits=bits,
                    signed=signed, exp=-3, bias=rng.integers(-50, 50, cout))
    lo, hi = next(n for n in g.nodes if n.name == "q").bounds
    x = rng.integers(lo - 3, hi + 4, (5, cin, *spatial)).astype(np.float32)  # a few clipped at both ends
    x[0] = hi  # the extremes
    x[1] = lo
    model = _assert_equals_intref(g, x)
    ops = {n.op_type for n in model.graph.node}
    if case.endswith("pointwise"):
        assert "MatMul" in ops and "ConvInteger" not in ops
    else:
        assert "ConvInteger" in ops and "MatMul" not in ops, ops


def test_convolution_of_a_synapse_sum_uses_derived_ranges():
    """A conv on another conv's (unshifted, signed, wide) output: the range comes from interval
    arithmetic over the first synapse (several digits of each sign), sound and exact."""
    rng = np.random.default_rng(6)
    w1, w2 = _mixed_weights(rng, (4, 3, 3, 3)), _mixed_weights(rng, (5, 4, 3, 3))
    g = ir.Graph([
        ir.InputNode("x", (), features=(3, 8, 8)),
        ir.QuantizeInputNode("q", ("x",), scale=1.0, bits=8, signed=True),
        ir.RepeatTimeNode("r", ("q",), time=2),
        ir.SynapseNode("c1", ("r",), layout="conv", weight=w1, weight_exp=-1, stride=(1, 1), padding=(1, 1),
                       dilation=(1, 1)),
        ir.SynapseNode("c2", ("c1",), layout="conv", weight=w2, weight_exp=-4, stride=(2, 2), padding=(1, 1),
                       dilation=(1, 1)),
        ir.OutputNode("y", ("c2",)),
    ]).validate()
    ranges = E.value_ranges(g)
    assert ranges["c1"][0] < -2 ** 16 and ranges["c1"][1] > 2 ** 16  # three digits a sign
    assert [nd for _, nd, _ in E.input_parts(ranges["c1"])] == [3, 3]
    x = rng.integers(-128, 128, (4, 3, 8, 8)).astype(np.float32)
    x[0] = np.sign(w1[0].sum((1, 2)))[:, None, None] * 127  # large c1 values
    _assert_equals_intref(g, x)
    values = run_int(g, torch.as_tensor(x), record=True).values
    for name in ("c1", "c2"):
        assert ranges[name][0] <= int(values[name].min()) and int(values[name].max()) <= ranges[name][1]


def test_input_parts_and_weight_parts_reconstruct():
    """The algebra of the module docstring: parts and digits add back up to the value."""
    rng = np.random.default_rng(0)
    w = rng.integers(-700, 700, (4, 3, 3))
    back = sum(sc * e.astype(np.int64) for sc, e in E.weight_parts(w))
    np.testing.assert_array_equal(back, w)
    assert all(e.dtype == np.uint8 for _, e in E.weight_parts(w))
    mixed = _mixed_weights(rng, (8, 8))
    parts = E.weight_parts(mixed)  # one ConvInteger per sign, as before, MIXED's even weights halved
    assert len(parts) == 2 and all(np.min(np.abs(sc)) >= 2 and int(e.max()) <= 128 for sc, e in parts)
    shifted = mixed << (np.arange(8) % 3)[:, None]  # channel exponents: the shift goes with the gcd
    parts = E.weight_parts(shifted)
    assert len(parts) == 2 and all(int(e.max()) <= 128 for _, e in parts)
    np.testing.assert_array_equal(sum(sc * e.astype(np.int64) for sc, e in parts), shifted)
    assert E.input_parts((0, 1)) == [(1, 1, 1)]  # spikes: one uint8 operand
    assert E.input_parts((0, 2)) == [(1, 1, 2)]  # a sum of two spike trains
    assert E.input_parts((-128, 127)) == [(1, 1, 127), (-1, 1, 128)]
    assert E.input_parts((-3, 70000)) == [(1, 3, 1), (-1, 1, 3)]


def test_accumulator_limit_is_exact_at_the_edge_and_refused_beyond():
    """u8 x u8 ConvInteger accumulates in int32: at 255 x 255 over a fan-in of 32,760 (just below
    2^31) onnxruntime is still exact; one step further the exporter refuses instead of wrapping."""
    rng = np.random.default_rng(1)
    cin = 3640  # x 3x3 = 32,760 products of up to 255 · 255
    w = rng.choice([254, 255], (2, cin, 3, 3))
    g = _conv_graph(cin, (3, 3), w, padding=(1, 1), T=1)
    x = np.full((2, cin, 3, 3), 255, np.float32)
    x[1] = rng.integers(200, 256, (cin, 3, 3))
    _assert_equals_intref(g, x)
    with pytest.raises(UnsupportedError, match="int32 accumulator"):
        export_onnx(_conv_graph(4096, (3, 3), rng.choice([254, 255], (2, 4096, 3, 3)), padding=(1, 1), T=1))


def test_a_graded_convolution_is_not_a_dense_matrix():
    """A 3x3 conv 16 -> 32 at 32x32 on counts was a 16384 x 32768 int64 matrix (4 GiB, then an
    EncodeError); now every initializer is at most the kernel and the file is about its size."""
    rng = np.random.default_rng(2)
    w = _mixed_weights(rng, (32, 16, 3, 3))
    g = _conv_graph(16, (32, 32), w, padding=(1, 1), bits=2, T=1)  # counts 0..3
    model = export_onnx(g)
    sizes = [onnx.numpy_helper.to_array(t).size for t in model.graph.initializer]
    assert max(sizes) <= w.size, max(sizes)
    assert model.ByteSize() < 3 * w.size + 16384, model.ByteSize()
    estimate, _ = E.estimate_bytes(g)
    assert model.ByteSize() / 2 <= estimate <= 4 * model.ByteSize()
    x = rng.integers(0, 4, (2, 16, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run_onnx_model(model, x)[0][0], run_int(g, torch.as_tensor(x)).outputs[0].numpy())


# --- real models: counts from spike sums, residual streams, sum pools ---------------------------

def _residual_net(conv1d: bool):
    """Residual spike sums feeding graded convolutions: counts [0, 2] into a depthwise dilated conv,
    the residual stream [0, 3] into a grouped strided conv, a sum pool, the first conv on the
    (unsigned or signed) 8-bit input."""
    from spikingjelly.activation_based import functional, layer, neuron

    from examples.models.zoo import prepare

    Conv, BN, Pool = (layer.Conv1d, layer.BatchNorm1d, layer.AvgPool1d) if conv1d else \
        (layer.Conv2d, layer.BatchNorm2d, layer.AvgPool2d)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            unit = lambda cin, cout, **kw: torch.nn.Sequential(Conv(cin, cout, 3, **kw), BN(cout),  # noqa: E731
                                                               neuron.LIFNode(tau=2.0))
            self.a = unit(2, 4, padding=1)
            self.b = unit(4, 4, padding=1)
            self.c = unit(4, 4, padding=2, dilation=2, groups=4)
            self.d = unit(4, 6, stride=2, padding=1, groups=2)
            self.pool = Pool(2)
            self.head = layer.Linear(24, 3)

        def forward(self, x):
            a = self.a(x)
            s = a + self.b(a)  # counts 0..2
            r = s + self.c(s)  # residual stream 0..3
            return self.head(self.pool(self.d(r)).flatten(2))

    torch.manual_seed(0)
    net = Net()
    functional.set_step_mode(net, "m")
    shape = (2, 16) if conv1d else (2, 8, 8)
    prepare(net, torch.rand(3, 16, *shape, generator=torch.Generator().manual_seed(3)) * 2)
    return net, shape


@pytest.mark.parametrize("conv1d", [False, True], ids=["2d", "1d"])
@pytest.mark.parametrize("input_range", [(0, 2), (-1, 1)], ids=["u8", "s8"])
def test_residual_streams_equal_intref(conv1d, input_range):
    from spikec.frontend import trace

    net, shape = _residual_net(conv1d)
    q = compile_graph(trace(net, shape, time_steps=3), "onnx", input_range=input_range).quantized
    ranges = E.value_ranges(q)
    graded = [n for n in q.nodes if isinstance(n, ir.SynapseNode) and n.layout == "conv"
              and q.types[n.inputs[0]].kind is not ir.Kind.SPIKE]
    assert any(ranges[n.inputs[0]][1] >= 2 for n in graded), [ranges[n.inputs[0]] for n in graded]  # spike sums
    lo, hi = input_range
    x = torch.rand(3, 8, *shape, generator=torch.Generator().manual_seed(4)) * (hi - lo) + lo
    ref = run_int(q, x, record=True)
    assert ref.outputs[0].abs().sum() > 0
    model = export_onnx(q)
    np.testing.assert_array_equal(run_onnx_model(model, x.numpy())[0][0], ref.outputs[0].numpy())
    # no unrolled matrix: no initializer beyond a weight tensor or one neuron layer's per-neuron constants
    largest = max([n.weight.size for n in q.nodes if isinstance(n, ir.SynapseNode)]
                  + [q.types[n.name].numel for n in q.nodes if isinstance(n, ir.LoihiNeuronNode)])
    assert max(onnx.numpy_helper.to_array(t).size for t in model.graph.initializer) <= largest
    # the ranges the lowering relies on are sound: every recorded value lies within them
    for name, v in ref.values.items():
        r = ranges.get(name)
        if r is not None and v.numel():
            assert r[0] <= int(v.min()) and int(v.max()) <= r[1], (name, r, int(v.min()), int(v.max()))


def test_sum_pool_is_a_depthwise_convolution():
    rng = np.random.default_rng(5)
    g = ir.Graph([
        ir.InputNode("x", (), features=(3, 9, 9)),
        ir.QuantizeInputNode("q", ("x",), scale=1.0, bits=12, signed=True),
        ir.RepeatTimeNode("r", ("q",), time=2),
        ir.AvgPoolNode("pool", ("r",), kernel=(3, 2), stride=(2, 2), padding=(1, 0), divisor_override=1),
        ir.OutputNode("y", ("pool",)),
    ]).validate()
    x = rng.integers(-2100, 2100, (4, 3, 9, 9)).astype(np.float32)
    model = _assert_equals_intref(g, x)
    assert "ConvInteger" in {n.op_type for n in model.graph.node}
    assert max(onnx.numpy_helper.to_array(t).size for t in model.graph.initializer) <= 3 * 3 * 2


# --- the 2 GiB limit: refused before building, one line, no file --------------------------------

def test_over_two_gib_is_refused_before_building(monkeypatch):
    """A ceil-mode sum pool still needs an unrolled matrix: at 64 x 128 x 128 it would be ~2 TiB.
    The estimate refuses it without allocating anything (the builder is never made)."""
    g = ir.Graph([
        ir.InputNode("x", (), features=(64, 128, 128)),
        ir.QuantizeInputNode("q", ("x",), scale=1.0),
        ir.AvgPoolNode("pool", ("q",), kernel=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=True,
                       divisor_override=1, source="net.pool"),
        ir.OutputNode("y", ("pool",), layout="batch"),
    ]).validate()
    monkeypatch.setattr(E, "_Builder", lambda *a: pytest.fail("built a model over the limit"))
    with pytest.raises(UnsupportedError, match=r"would need about 2048\.00 GiB \(largest tensor: pool \(net\.pool\)\)"
                                               r", over protobuf's 2\.00 GiB limit"):
        export_onnx(g)


def test_lowered_limit_refuses_and_backstop_after_building(monkeypatch):
    g = _conv_graph(2, (6, 6), np.full((3, 2, 3, 3), 2), padding=(1, 1))
    monkeypatch.setattr(E, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(UnsupportedError, match="would need about"):
        export_onnx(g)
    monkeypatch.setattr(E, "estimate_bytes", lambda *a: (0, ""))  # an estimate too low: the built size decides
    with pytest.raises(UnsupportedError, match="the model needs .* over protobuf's"):
        export_onnx(g)


@pytest.mark.parametrize("verb", ["compile", "verify"])
def test_cli_refuses_in_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys, verb):
    from spikec.cli import main

    monkeypatch.setattr(E, "PROTOBUF_LIMIT", 10_000)
    out = tmp_path / "m.onnx"
    args = ["-o", str(out)] if verb == "compile" else ["--dataset", "digits", "--limit", "4"]
    assert main([verb, str(CKPT), *DIGITS, "--target", "onnx", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: onnx: the model would need about"), err
    assert list(tmp_path.iterdir()) == []


def test_a_serialisation_failure_is_one_line_and_no_file(tmp_path):
    from google.protobuf.message import EncodeError

    class Huge:
        def SerializeToString(self):
            raise EncodeError("Failed to serialize proto")

    with pytest.raises(UnsupportedError, match="cannot be serialised .EncodeError: Failed to serialize proto"):
        write_onnx(Huge(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
