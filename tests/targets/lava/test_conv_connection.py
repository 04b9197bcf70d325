"""spikec's ConvConnection (a weight-shared connection held as its kernel) == Lava 0.10.0's stock
fixed_pt ``Dense`` on the unrolled matrix, bit for bit; and why Lava's own ``Conv`` is not used.

Each Lava case is one tiny network: a RingBuffer source feeding both a ConvConnection and a stock
Dense (weight_exp, 8-bit weights, sign mode, binary or graded messages) on
``post · conv_matrix · pre``, each into its own sink, run in Loihi2SimCfg(select_tag="fixed_pt").
"""

import numpy as np
import pytest

from spikec import ir
from spikec.compat.lava311 import ensure_lava
from spikec.ir.index_maps import conv_apply
from spikec.loihi import effective_weights, floor_shift
from spikec.targets.lava.netspec import ConvWeights, SharedMap

ensure_lava()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

from spikec.targets.lava.procs.process import ConvConnection  # noqa: E402

CFG = Loihi2SimCfg(select_tag="fixed_pt")
SIGN = {"mixed": SignMode.MIXED, "exc": SignMode.EXCITATORY, "inh": SignMode.INHIBITORY}

# in_feats, C_out, kernel, stride, padding, dilation, groups, weight_exp, sign, graded, pre, post
CASES = {
    "2d_3x3_pad1": ((3, 6, 5), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0, "mixed", False, False, False),
    "2d_stride2_neg_exp": ((2, 7, 6), 3, (3, 2), (2, 1), (1, 0), (1, 1), 1, -2, "mixed", False, False, False),
    "2d_dilation_pos_exp": ((2, 8, 8), 2, (3, 3), (1, 2), (2, 1), (2, 2), 1, 3, "exc", False, False, False),
    "2d_grouped_graded": ((4, 5, 5), 6, (2, 2), (1, 1), (0, 1), (1, 1), 2, -1, "mixed", True, False, False),
    "2d_depthwise_inh": ((4, 6, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, 1, "inh", False, False, False),
    "1d_stride_dilation": ((3, 17), 5, (3,), (2,), (2,), (2,), 1, -3, "mixed", False, False, False),
    "1d_depthwise_graded": ((4, 9), 4, (5,), (1,), (2,), (1,), 4, 0, "mixed", True, False, False),
    "2d_gathers_around": ((2, 5, 5), 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, -1, "mixed", False, True, True),
    "linear_shared_graded": ((6, 5), 4, None, None, None, None, 1, -2, "mixed", True, False, True),
}


def _case(case, seed=0):
    in_feats, cout, k, stride, padding, dilation, groups, exp, sign, graded, pre, post = CASES[case]
    rng = np.random.default_rng(seed)
    if k is None:  # a linear map on the last axis, shared by the leading positions
        shape = (cout, in_feats[-1])
        node = ir.SynapseNode("syn", ("x",), "fc", layout="linear", weight=np.zeros(shape, np.int32), weight_exp=exp)
        out_feats = (*in_feats[:-1], cout)
    else:
        shape = (cout, in_feats[0] // groups, *k)
        node = ir.SynapseNode("syn", ("x",), "conv", layout="conv", weight=np.zeros(shape, np.int32), weight_exp=exp,
                              stride=stride, padding=padding, dilation=dilation, groups=groups)
        sp_out = tuple((in_feats[1 + a] + 2 * padding[a] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1 for a in range(len(k)))
        out_feats = (cout, *sp_out)
    lo, hi = {"mixed": (-256, 256), "exc": (0, 256), "inh": (-255, 1)}[sign]
    w = effective_weights(rng.integers(lo, hi, shape), sign)
    w[rng.random(shape) < 0.2] = 0
    node = ir.SynapseNode(node.name, node.inputs, node.source, layout=node.layout, weight=w.astype(np.int32), weight_exp=exp,
                          stride=node.stride, padding=node.padding, dilation=node.dilation, groups=node.groups)
    core = SharedMap(node, tuple(in_feats), out_feats)
    n_core_in, n_core_out = core.n_in, core.n_out
    n_src = n_core_in + 3 if pre else n_core_in
    pre_idx = None
    if pre:  # an injective partial gather (a permutation with a few zeros, as padding makes)
        pre_idx = rng.permutation(n_src)[:n_core_in]
        pre_idx[rng.random(n_core_in) < 0.1] = -1
    post_idx = None
    if post:  # a partial gather with repetitions (a broadcast) and zeros
        post_idx = rng.integers(-1, n_core_out, n_core_out + 4)
    return ConvWeights(core, pre_idx, post_idx, n_src), exp, sign, graded


def _inputs(n, steps, graded, seed=1):
    rng = np.random.default_rng(seed)
    if graded:
        return rng.integers(-128, 128, (n, steps))
    return (rng.random((n, steps)) < 0.3).astype(np.int64)


@pytest.mark.parametrize("case", list(CASES))
def test_factored_weights_equal_the_unrolled_matrix(case):
    """numpy level: apply, the synapse counts and the 8-bit data are those of the unrolled matrix."""
    w, exp, sign, graded = _case(case)
    m = w.tocsr()
    m.eliminate_zeros()
    assert m.shape == w.shape
    x = _inputs(w.n_src, 3, graded)
    for t in range(3):
        assert np.array_equal(w.apply(x[:, t]), m @ x[:, t])
    assert np.array_equal(w.row_nnz(), np.diff(m.indptr))
    assert np.array_equal(w.col_nnz(), np.bincount(m.indices, minlength=m.shape[1]))
    assert w.nnz == m.nnz and w.stored == np.count_nonzero(w.core.weight) < m.nnz
    assert set(np.unique(m.data)) <= set(w.data)


@pytest.mark.parametrize("case", list(CASES))
def test_conv_connection_equals_lava_dense_on_unrolled_matrix(case):
    w, exp, sign, graded = _case(case)
    steps = 6
    x = _inputs(w.n_src, steps, graded)
    m = w.tocsr().toarray()
    src = Source(data=x.astype(np.int32))
    core, node = w.core, w.core.node
    conv = ConvConnection(size_in=w.n_src, size_out=w.shape[0], layout=core.layout, weight=np.asarray(core.weight, np.int32),
                          weight_exp=exp, in_feats=core.in_feats, out_feats=core.out_feats, stride=node.stride,
                          padding=node.padding, dilation=node.dilation, groups=node.groups, pre=w.pre, post=w.post,
                          graded=graded)
    dense = Dense(weights=m.astype(np.int32), weight_exp=exp, num_weight_bits=8, sign_mode=SIGN[sign],
                  num_message_bits=24 if graded else 0)
    sink_c, sink_d = Sink(shape=(w.shape[0],), buffer=steps), Sink(shape=(w.shape[0],), buffer=steps)
    src.s_out.connect(conv.s_in)
    src.s_out.connect(dense.s_in)
    conv.a_out.connect(sink_c.a_in)
    dense.a_out.connect(sink_d.a_in)
    src.run(condition=RunSteps(num_steps=steps), run_cfg=CFG)
    got, ref = sink_c.data.get().astype(np.int64), sink_d.data.get().astype(np.int64)
    src.stop()
    expected = np.zeros_like(ref)  # one step of delay; then the floor-shifted exact sum (intref's synapse)
    for t in range(steps - 1):
        expected[:, t + 1] = floor_shift(m.astype(np.int64) @ x[:, t], exp)
    assert np.array_equal(ref, expected), "stock Dense is intref's synapse"
    assert np.array_equal(got, ref)
    assert np.any(ref != 0)


@pytest.mark.parametrize("case", ["2d_stride2_neg_exp", "2d_gathers_around", "linear_shared_graded"])
def test_conv_connection_with_channel_exponents_equals_one_lava_dense_per_exponent(case):
    """Output channels with exponents of their own: one ConvConnection (mantissas, an exponent per
    kernel output) == the stock Dense connections Loihi would have, one per exponent, summed."""
    w, exp, sign, graded = _case(case)
    node = w.core.node
    c_out = node.weight.shape[0]
    channel_exp = exp + np.arange(c_out) % 3  # three exponents: exp, exp + 1, exp + 2
    shifted = np.asarray(node.weight, np.int64) << (channel_exp - exp).reshape(-1, *([1] * (node.weight.ndim - 1)))
    node = node.replace(weight=shifted.astype(np.int32), channel_exp=channel_exp)
    w = ConvWeights(SharedMap(node, w.core.in_feats, w.core.out_feats), w.pre, w.post, w.n_src)
    steps = 6
    x = _inputs(w.n_src, steps, graded)
    src = Source(data=x.astype(np.int32))
    core = w.core
    conv = ConvConnection(size_in=w.n_src, size_out=w.shape[0], layout=core.layout,
                          weight=np.asarray(core.mantissas, np.int32), weight_exp=exp + core.out_shift(),
                          in_feats=core.in_feats, out_feats=core.out_feats, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups, pre=w.pre, post=w.post, graded=graded)
    sink_c = Sink(shape=(w.shape[0],), buffer=steps)
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(sink_c.a_in)
    sinks = []
    for e, _, mantissas in node.channel_groups():
        part = ConvWeights(SharedMap(node.replace(weight=mantissas.astype(np.int32), weight_exp=e, channel_exp=None),
                                     core.in_feats, core.out_feats), w.pre, w.post, w.n_src)
        dense = Dense(weights=part.tocsr().toarray().astype(np.int32), weight_exp=e, num_weight_bits=8,
                      sign_mode=SIGN[sign], num_message_bits=24 if graded else 0)
        sinks.append(Sink(shape=(w.shape[0],), buffer=steps))
        src.s_out.connect(dense.s_in)
        dense.a_out.connect(sinks[-1].a_in)
    src.run(condition=RunSteps(num_steps=steps), run_cfg=CFG)
    got = sink_c.data.get().astype(np.int64)
    ref = sum(sk.data.get().astype(np.int64) for sk in sinks)
    src.stop()
    assert len(sinks) == 3 and np.array_equal(got, ref) and np.any(ref != 0)


def test_lava_conv_ignores_weight_exp():
    """Why spikec does not use lava.proc.conv.Conv: its fixed_pt model returns the raw convolution
    (no weight exponent, a 24-bit wrap of the sum), in (W, H, C) order with a true (flipped)
    convolution; with weight_exp = 0 it equals intref's synapse, with weight_exp != 0 it does not."""
    from lava.proc.conv.process import Conv

    rng = np.random.default_rng(3)
    cin, cout, H, W_ = 2, 3, 5, 6
    w = effective_weights(rng.integers(-256, 256, (cout, cin, 3, 3)), "mixed")  # PyTorch [C_out, C_in, kH, kW]
    x = (rng.random((cin, H, W_, 3)) < 0.4).astype(np.int64)  # [C, H, W, steps]
    outs = {}
    for exp in (0, -2):
        src = Source(data=x.transpose(2, 1, 0, 3).astype(np.int32))  # (W, H, C, steps)
        lava_w = w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32)  # (C_out, kW, kH, C_in), flipped
        conv = Conv(weight=lava_w, weight_exp=exp, input_shape=(W_, H, cin), padding=1)
        sink = Sink(shape=conv.a_out.shape, buffer=3)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        src.run(condition=RunSteps(num_steps=3), run_cfg=CFG)
        outs[exp] = sink.data.get().astype(np.int64)  # (W, H, C_out, steps)
        src.stop()
    ref = conv_apply(x[..., 0], w, (1, 1), (1, 1), (1, 1), 1, (H, W_)).transpose(2, 1, 0)
    assert np.array_equal(outs[0][..., 1], ref)
    assert np.array_equal(outs[-2][..., 1], ref), "Lava's Conv returns the unshifted sum"
    assert not np.array_equal(outs[-2][..., 1], floor_shift(ref, -2))
