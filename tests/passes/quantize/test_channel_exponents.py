"""A weight exponent per output channel (issue 13): each channel keeps its mantissa bits, the
synapse holds the channels shifted to its lowest exponent (intref, ONNX and region processes run
that exactly), and Lava gets one connection per exponent (Loihi has one exponent per connection;
a weight-shared ConvConnection process applies each channel's own)."""

import numpy as np
import pytest
import scipy.sparse as sp

from spikec import ir, loihi
from spikec.compiler import compile_graph
from spikec.errors import IRError
from spikec.ir.serialize import graph_from_dict, graph_to_dict
from spikec.passes.quantize.weights import CHANNEL_EXP_SPREAD, quantize_weights
from spikec.targets.lava import build_netspec, report_lines
from spikec.targets.lava.netspec import SharedMap, Term


def _mixed(rng, rows, cols, peaks):
    w = rng.normal(size=(rows, cols))
    return w / np.abs(w).max(1, keepdims=True) * np.asarray(peaks)[:, None]


def test_each_channel_gets_its_own_exponent_and_keeps_its_mantissa_bits():
    w = _mixed(np.random.default_rng(0), 4, 64, [1.0, 0.1, 0.5, 0.013])  # e.g. batch-norm gains folded in
    q, e, mode, clipped, err, exps = quantize_weights(w, 1.0)
    assert mode == "mixed" and clipped < 0.02 and exps is not None and e == exps.min()
    assert exps[0] - exps[1] >= 3 and exps[0] - exps[3] >= 6, exps
    mant = q.astype(np.int64) >> (exps - e)[:, None]
    assert np.array_equal(mant << (exps - e)[:, None], q), "every channel a multiple of its shift"
    assert np.array_equal(loihi.effective_weights(mant, "mixed"), mant), "8-bit MIXED mantissas"
    for c in range(4):  # each channel uses its mantissa range: its largest is above half of it
        assert np.abs(mant[c]).max() > 64, (c, np.abs(mant[c]).max())
    rel = np.abs(q * 2.0 ** e - w).max(1) / np.abs(w).max(1)  # per-channel worst rounding, relative to its peak
    assert rel.max() <= 2.0 ** -7 * 1.01, rel
    one_exp = np.abs(np.round(w / 2.0 ** exps.max() / 2) * 2 * 2.0 ** exps.max() - w).max(1) / np.abs(w).max(1)
    assert one_exp[3] > 0.1, "one exponent for all would leave the small channel a few levels"


def test_equal_channels_share_one_exponent_and_silent_ones_stay_bounded():
    rng = np.random.default_rng(1)
    assert quantize_weights(_mixed(rng, 3, 16, [1.0, 0.9, 0.8]), 1.0)[5] is None
    w = _mixed(rng, 3, 16, [1.0, 0.5, 2.0 ** -12])
    q, e, _, _, _, exps = quantize_weights(w, 1.0)
    assert exps.max() - exps.min() == CHANNEL_EXP_SPREAD, "a nearly silent channel: at most the spread below"
    assert np.any(q[2] != 0) and np.abs(q).max() <= 254 << CHANNEL_EXP_SPREAD
    q, e, _, _, _, exps = quantize_weights(_mixed(rng, 3, 16, [1.0, 0.5, 1e-6]), 1.0)
    assert not q[2].any() and e == exps.min() == exps[:2].min(), "a channel rounded to zero sets no exponent"
    assert np.abs(q).max() <= 254 << 1
    held = quantize_weights(w * 1e-3, 1.0, min_exp=0)  # a sum follows: no channel floors
    assert held[1] == 0 and (held[5] is None or held[5].min() >= 0)


def _synapse(weight, exp, channel_exp):
    return ir.SynapseNode("s", ("x",), "fc", layout="linear", weight=np.asarray(weight, np.int32), weight_exp=exp,
                          channel_exp=None if channel_exp is None else np.asarray(channel_exp, np.int64))


def test_channel_groups_are_the_connections_and_recompose_the_weights():
    n = _synapse([[4, -8], [16, 8], [4, 0]], -1, [1, 2, -1])  # shifts 2, 3, 0
    groups = n.channel_groups()
    assert [(e, list(c)) for e, c, _ in groups] == [(-1, [2]), (1, [0]), (2, [1])]
    total = sum(m.astype(np.int64) << (e - n.weight_exp) for e, _, m in groups)
    assert np.array_equal(total, n.weight)
    assert "exp=-1..2 (3 connections)" in n.summary()


def test_ir_refuses_inconsistent_channel_exponents_and_round_trips_them():
    x = ir.InputNode("x", (), features=(2,), time=1, layout="sequence", kind=ir.Kind.SPIKE)
    for exp, bad, why in ((0, [0, 1, -1], "below the common exponent"), (-1, [1, 3, -1], "not multiples"),
                          (-1, [1, 2], "3 integers")):
        g = ir.Graph([x, _synapse([[4, -8], [16, 8], [4, 0]], exp, bad), ir.OutputNode("o", ("s",))])
        with pytest.raises(IRError, match=why):
            g.validate()
    g = ir.Graph([x, _synapse([[4, -8], [16, 8], [4, 0]], -1, [1, 2, -1]), ir.OutputNode("o", ("s",))]).validate()
    back = graph_from_dict(*graph_to_dict(g))
    assert np.array_equal(back["s"].channel_exp, [1, 2, -1])


def test_prepared_models_use_them_and_lava_wires_them_as_loihi_would(zoo_models):
    """The families' Lava runs (tests/targets/lava, bit-exact with intref) cover channel exponents:
    here, that they are there, that a weight-shared connection (one ConvConnection process) carries
    one exponent per kernel output and 8-bit mantissas, and that the resource report counts one
    Loihi connection per exponent."""
    _, _, g = zoo_models["sj_spikformer"]
    res = compile_graph(g, "lava", input_range=(0, 2))
    spec = build_netspec(res.quantized)
    per_channel = [n for n in res.quantized.nodes if isinstance(n, ir.SynapseNode) and n.channel_exp is not None]
    assert per_channel, "BN gains folded in give channels exponents of their own"
    conns = [c for c in spec.connections if c.synapse in {n.name for n in per_channel}]
    assert conns
    for c in conns:
        n = res.quantized[c.synapse]
        assert c.loihi_connections == len(n.channel_groups()) >= 2
        assert np.abs(c.weights.data).max() <= 255, "8-bit mantissas"
        shift = c.weights.core.out_shift()
        assert shift is not None and shift.max() == n.channel_exps().max() - n.weight_exp
    total = [line for line in report_lines(spec) if line.startswith("total:")][0]
    assert f"{sum(c.loihi_connections for c in spec.connections)} Loihi connections, one per weight exponent" in total
    srep = {s.name: s for s in res.quant_report.synapses}
    assert all(srep[n.name].connections == len(n.channel_groups()) for n in per_channel)


def test_an_unfactored_map_is_one_lava_connection_per_exponent():
    """A linear map at a single position is a dense matrix (stock Lava Dense / Sparse, one exponent
    each): its channels of each exponent become a connection of their own."""
    n = _synapse([[4, -8], [16, 8], [4, 0]], -1, [1, 2, -1])
    term = Term("x", sp.identity(2, dtype=np.int64, format="csr"), exp=n.weight_exp, synapse="s",
                core=SharedMap(n, (2,), (3,)))
    parts = term.expand()
    assert sorted(p.exp for p in parts) == [-1, 1, 2]
    total = sum(p.weights(2).build().toarray() * 2.0 ** (p.exp - n.weight_exp) for p in parts)
    assert np.array_equal(total, n.weight)
    assert all(np.abs(p.weights(2).build().data).max() <= 255 for p in parts)
