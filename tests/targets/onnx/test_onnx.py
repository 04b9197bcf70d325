"""ONNX target: the integer model in onnxruntime equals intref bit for bit; checker passes."""

import numpy as np
import onnx
import pytest
from conftest import ONNX_FAMILIES, ROOT, first_samples

from spikec import ir
from spikec.compiler import compile_graph
from spikec.targets.intref.executor import run_int
from spikec.targets.onnx import OPSET, export_onnx
from spikec.targets.onnx.runner import run_onnx_model

FLOAT_OPS = {"Div", "Add", "Floor", "Clip", "Cast", "Gather"}  # the input quantization boundary may use these on floats


@pytest.mark.parametrize("family", ONNX_FAMILIES)
def test_onnx_equals_intref(zoo_models, family):
    _, x, g = zoo_models[family]
    x = first_samples(x, g)
    res = compile_graph(g, "onnx", input_range=(0, 2))
    model = export_onnx(res.quantized)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == OPSET
    y = run_onnx_model(model, x.numpy())[0][0]
    ref = run_int(res.quantized, x).outputs[0].numpy()
    assert y.dtype == np.int64 and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)
    # integer-only datapath: the only float tensors feed the input quantization (before its Cast)
    inferred = onnx.shape_inference.infer_shapes(model)
    float_values = {v.name for v in inferred.graph.value_info
                    if v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)}
    for node in model.graph.node:
        if any(o in float_values for o in node.output):
            assert node.op_type in FLOAT_OPS, node.op_type


def test_input_quantization_ties_round_like_intref(zoo_models):
    """Inputs exactly half an LSB between two levels (8x8 digits at 1/16 steps hit them): the
    quantization runs in float64 as in intref (in float32, x / scale lands on either side of .5)."""
    import torch

    _, x, g = zoo_models["spikformer_digits"]
    res = compile_graph(g, "onnx", input_range=(0, 2))
    scale = next(n.scale for n in res.quantized.nodes if n.op == "quantize_input")
    k = torch.randint(0, 255, (8, *x.shape[1:]), generator=torch.Generator().manual_seed(0))
    xh = ((k + 0.5) * scale).float()
    f32 = np.floor(xh.numpy() / np.float32(scale) + np.float32(0.5))
    f64 = np.floor(xh.numpy().astype(np.float64) / scale + 0.5)
    assert (f32 != f64).any()  # the inputs do exercise the difference
    from spikec.targets.onnx.runner import run_onnx_model

    outs, _, _ = run_onnx_model(export_onnx(res.quantized), xh.numpy())
    np.testing.assert_array_equal(outs[0], run_int(res.quantized, xh).outputs[0].numpy())


def test_compile_onnx_cli(tmp_path):
    from spikec.cli import main

    ckpt = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
    out = tmp_path / "m.onnx"
    assert main(["compile", str(ckpt), "--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits",
                 "--input-shape", "1,8,8", "--target", "onnx", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert "output_scales" in meta and meta["time_steps"] == "4"
    # spikec run on the .onnx file (onnxruntime) equals spikec run on the intref artifact
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["compile", str(ckpt), "--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits",
                 "--input-shape", "1,8,8", "--target", "intref", "-o", str(tmp_path / "m.intref")]) == 0
    for art in ("m.onnx", "m.intref"):
        assert main(["run", str(tmp_path / art), "--input", str(tmp_path / "x.npy"), "--save", str(tmp_path / f"{art}.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "m.onnx.npy"), np.load(tmp_path / "m.intref.npy"))
    np.save(tmp_path / "bad.npy", x[:, :, :4])
    assert main(["run", str(out), "--input", str(tmp_path / "bad.npy")]) == 2
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    assert main(["run", str(tmp_path / "junk.bin"), "--input", str(tmp_path / "x.npy")]) == 2


def test_run_onnx_rejects_a_mis_shaped_input(tmp_path):
    from spikec.errors import SpikecError
    from spikec.targets.onnx.runner import run_onnx

    (tmp_path / "m.onnx").write_bytes(b"\x08garbage")
    with pytest.raises(SpikecError, match="not a readable ONNX model"):
        run_onnx(tmp_path / "m.onnx", np.zeros((1, 1, 8, 8), np.float32))


def test_verify_target_onnx(capsys):
    """`spikec verify --target onnx` runs onnxruntime and compares with intref bit for bit (the
    held-out digits include half-LSB inputs)."""
    from spikec.cli import main

    ckpt = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
    assert main(["verify", str(ckpt), "--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits",
                 "--input-shape", "1,8,8", "--target", "onnx", "--dataset", "digits", "--limit", "48"]) == 0
    assert "onnx vs intref (bit for bit): outputs equal intref: yes" in capsys.readouterr().out


def _conv_if_linear():
    import torch
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), neuron.IFNode(v_threshold=0.5), layer.Flatten(),
                              layer.Linear(64, 3))
    functional.set_step_mode(net, "m")
    return net.eval()


def test_signed_input_into_a_convolution():
    """An input range below zero quantizes to signed 8-bit levels: the first convolution must not
    read them as uint8 (ConvInteger), else -1 becomes 255."""
    import torch

    from spikec.frontend import trace
    from spikec.targets.onnx.runner import run_onnx_model

    q = compile_graph(trace(_conv_if_linear(), (2, 4, 4), time_steps=3), "onnx", input_range=(-1, 1)).quantized
    x = torch.rand(3, 8, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ref = run_int(q, x)
    assert ref.outputs[0].abs().sum() > 0
    np.testing.assert_array_equal(run_onnx_model(export_onnx(q), x.numpy())[0][0], ref.outputs[0].numpy())


def test_nan_inputs_are_refused():
    """NaN has no 8-bit level (intref would carry INT64_MIN, ONNX and Lava a 0): refused alike."""
    import torch

    from spikec.errors import SpikecError
    from spikec.frontend import trace
    from spikec.targets.onnx.runner import run_onnx_model

    q = compile_graph(trace(_conv_if_linear(), (2, 4, 4), time_steps=3), "onnx").quantized
    x = torch.rand(3, 2, 2, 4, 4)
    x[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(SpikecError, match="1 NaN values"):
        run_int(q, x)
    with pytest.raises(SpikecError, match="1 NaN values"):
        run_onnx_model(export_onnx(q), x.numpy())


def test_pointwise_convolutions_on_counts_stay_small(zoo_models):
    """1x1 convolutions on graded values (Spikformer's residual spike counts) are MatMuls over
    channels, not unrolled [C*N, C*N] matrices (1.9 GB at embed 64 / 32x32 before)."""
    import onnx.numpy_helper

    _, _, g = zoo_models["sj_spikformer"]
    model = export_onnx(compile_graph(g, "onnx", input_range=(0, 2)).quantized)
    c, n = 32, 16  # embed dims, tokens of the tiny configuration
    biggest = max(onnx.numpy_helper.to_array(t).size for t in model.graph.initializer)
    assert biggest < (c * n) ** 2 // 4, biggest


def test_integer_square_root_in_onnx_is_exact():
    """targets/onnx/kernels.py's Newton square root against math.isqrt on edge and random values."""
    import math

    from onnx import TensorProto, helper

    from spikec.targets.onnx.export import _Builder
    from spikec.targets.onnx.kernels import _isqrt

    rng = np.random.default_rng(0)
    xs = [0, 1, 2, 3, 4, 15, 16, 17, 2 ** 31, 2 ** 62 - 1, 2 ** 62, 2 ** 63 - 1]
    xs += [k * k + d for k in (3, 46340, 3037000499) for d in (-1, 0, 1)]
    xs += rng.integers(0, 2 ** 63 - 1, 200, dtype=np.int64).tolist() + rng.integers(0, 2 ** 20, 200).tolist()
    x = np.array(xs, dtype=np.int64)
    b = _Builder(ir.Graph([ir.InputNode("x", (), features=(1,))]))
    y = _isqrt(b, "x")
    g = helper.make_graph(b.nodes, "isqrt", [helper.make_tensor_value_info("x", TensorProto.INT64, [len(x)])],
                          [helper.make_tensor_value_info(y, TensorProto.INT64, [len(x)])], initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    import onnxruntime as ort

    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.tolist() == [math.isqrt(int(v)) for v in x]


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 0.05, 3.0])
def test_kernel_output_ranges_hold_the_outputs(scale):
    """The ranges the exporter's digit decomposition relies on hold every output of the kernel."""
    import torch

    from spikec.targets.intref.executor import integer_kernel
    from spikec.targets.onnx.kernels import output_range

    for kernel in ("gelu", "relu", "sigmoid"):
        n = ir.IntegerKernelNode("k", ("x",), kernel=kernel, scale_in=scale, output_scale=scale, input_bits=15)
        for lo, hi in ((-32767, 32767), (-100, 50), (0, 32767), (5, 9), (-7, -1)):
            y = integer_kernel(n, torch.arange(lo, hi + 1, dtype=torch.int64).reshape(1, 1, -1))
            a, b = output_range(n, lo, hi)
            assert a <= int(y.min()) and int(y.max()) <= b, (kernel, lo, hi)
