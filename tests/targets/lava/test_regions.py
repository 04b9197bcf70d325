"""Lava region processes: what is not spike-driven (integer kernels, products of two real values, added
constants, concatenations, time mixing, 3-d convolutions) runs in custom processes with intref's
integer semantics, bit for bit as intref in every stage, region output and the output; time mixing
adds T − 1 steps of latency, reported; what remains refused is named with its module."""

import json

import numpy as np
import pytest
import torch
from conftest import first_samples
from spikingjelly.activation_based import neuron
from torch import nn
from torch.nn import functional as F

from spikec import ir
from spikec.compiler import compile_graph
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.targets import get_target
from spikec.targets.intref.executor import run_int
from spikec.targets.lava import build_netspec, report_lines
from spikec.targets.lava.region import Context, evaluate
from spikec.targets.lava.runner import run_lava

# the families whose non-spike-driven operations run in region processes (the README support table
# lists them as lava: yes once conftest.LAVA_FAMILIES holds them)
REGION_FAMILIES = ["staa_snn", "stformer"]


class AllKernels(nn.Module):
    """Every integer kernel (layer norm, GELU, sigmoid, softmax, ReLU), products of two real values
    (a gate, attention matmuls) and a per-step position embedding before one LIF."""

    def __init__(self):
        super().__init__()
        self.fc, self.gate, self.q, self.k = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.pos = nn.Parameter(torch.randn(4, 1, 8) * 0.5)
        self.lif = neuron.LIFNode(step_mode="m")
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # [T, B, 1, 4, 4]
        x = x.flatten(2)
        u = F.gelu(self.norm(self.fc(x))) * torch.sigmoid(self.gate(x))
        a = torch.softmax(self.q(u).unsqueeze(-1) @ self.k(u).unsqueeze(-2) / 8 ** 0.5, -1)
        z = (a @ u.unsqueeze(-1)).squeeze(-1) + F.relu(u) + self.pos
        return self.head(self.lif(z * 6))


@pytest.fixture(scope="module")
def all_kernels():
    torch.manual_seed(0)
    res = compile_graph(trace(AllKernels().eval(), (1, 4, 4), time_steps=4), get_target("lava"))
    return res, np.random.default_rng(0).random((4, 8, 1, 4, 4), dtype=np.float32)


def _lava_equals_intref(q: ir.Graph, x):
    """Run Lava and intref; assert every recorded stage / region output and the output equal."""
    spec = build_netspec(q)
    ri = run_int(q, x, record=True)
    lr = run_lava(spec, x)
    assert set(lr.values) == set(spec.recorded)
    for name, v in lr.values.items():
        assert torch.equal(v, ri.values[name].to(v.dtype)), f"stage {name} differs"
    assert torch.equal(lr.outputs[0], ri.outputs[0])
    return spec, lr, ri


@pytest.mark.parametrize("family", REGION_FAMILIES)
def test_region_families_equal_intref_bit_for_bit(zoo_models, family):
    _, x, g = zoo_models[family]
    x = first_samples(x, g)
    q = compile_graph(g, "lava", input_range=(0, 2)).quantized
    spec, lr, _ = _lava_equals_intref(q, x)
    assert 1 <= len(spec.regions) <= 2 and lr.steps == 8 * spec.T + spec.latency
    assert any(float(lr.values[n].float().mean()) > 0 for n in spec.recorded if spec.stages[n].kind == "lif")
    regions = list(spec.regions.values())
    if family == "stformer":  # the temporal block (time to features .. 3-d convolutions .. back to time) is one buffering region
        (r,) = regions
        assert r.buffered and r.added_latency == spec.T - 1 == spec.time_mixing_latency
        assert {"time_to_features", "features_to_time", "concat"} <= {q[v].op for v in r.nodes}
        assert any(q[v].op == "synapse" and q[v].weight.ndim == 5 for v in r.nodes)
    else:  # the global-context blocks: sigmoid, layer norm, ReLU, products, per-step constants; no latency
        assert all(not r.buffered and r.added_latency == 0 for r in regions) and spec.time_mixing_latency == 0
        kernels = {q[v].kernel for r in regions for v in r.nodes if q[v].op == "integer_kernel"}
        assert kernels == {"sigmoid", "layer_norm", "relu"}


def test_every_integer_kernel_and_product_runs_in_a_region(all_kernels):
    res, x = all_kernels
    spec, lr, _ = _lava_equals_intref(res.quantized, x)
    (r,) = spec.regions.values()
    ops = {res.quantized[v].kernel if res.quantized[v].op == "integer_kernel" else res.quantized[v].op for v in r.nodes}
    assert {"layer_norm", "gelu", "sigmoid", "softmax", "relu", "mul", "matmul", "add_constant"} <= ops
    assert not r.buffered and r.depth == r.in_depth == 0  # per step, in the step its inputs arrive
    assert float(lr.values["lif"].float().mean()) > 0.05


def _regions_against_intref(q: ir.Graph, x):
    """Every region node evaluated with the region kernels (numpy) on intref's values of the region's
    inputs: all T steps at once, and step by step for per-step regions; equal to intref's values."""
    spec = build_netspec(q)
    ri = run_int(q, x, record=True)
    nodes = 0
    for r in spec.regions.values():
        ns = [q[v] for v in r.nodes]
        inputs = {v: ri.values[v].numpy() for v in r.inputs}
        env = evaluate(ns, inputs, Context(q.types, spec.T, None))
        steps = [] if r.buffered else range(spec.T)
        per_step = [evaluate(ns, {v: a[min(t, len(a) - 1):][:1] for v, a in inputs.items()}, Context(q.types, spec.T, t))
                    for t in steps]
        for v in r.nodes:
            want = ri.values[v].numpy().astype(np.int64)
            assert np.array_equal(env[v], want), v
            if per_step:
                assert np.array_equal(np.concatenate([e[v] for e in per_step])[:want.shape[0]], want), v
            nodes += 1
    return nodes


def test_region_kernels_equal_intref_node_by_node(zoo_models, all_kernels):
    res, x = all_kernels
    assert _regions_against_intref(res.quantized, x) >= 20
    for family in REGION_FAMILIES:
        _, xf, g = zoo_models[family]
        assert _regions_against_intref(compile_graph(g, "lava", input_range=(0, 2)).quantized, first_samples(xf, g, 4)) >= 20


def test_time_mixing_latency_is_reported_in_the_report_and_the_artifact(zoo_models, tmp_path):
    g = zoo_models["stformer"][2]
    target = get_target("lava")
    compiled = compile_graph(g, target, input_range=(0, 2))
    art = target.emit(compiled)
    spec = art.cache["netspec"]
    text = "\n".join(report_lines(spec))
    assert f"+{spec.T - 1} steps" in text and f"of which {spec.T - 1} added by time mixing" in text
    assert "embedded cores, not on neuromorphic cores" in text and "time_to_features" in text
    path = target.save(art, tmp_path / "net")
    lava = json.loads((path / "manifest.json").read_text())["lava"]
    assert lava["latency"] == spec.latency and lava["time_mixing_latency"] == spec.T - 1
    (r,) = lava["regions"].values()
    assert r["buffered"] and r["added_latency"] == spec.T - 1


def test_floor_before_sum_runs_in_a_region():
    """A synapse floored by its negative exponent and then summed has no folded Lava connection
    (Lava floors after the sum): the synapse stays a Lava connection (floor per synapse output)
    into a region that sums, bit for bit as intref."""
    nodes = [ir.InputNode("x", (), features=(4, 3), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.SynapseNode("syn", ("q",), "fc", layout="linear", weight=np.full((5, 3), 3, np.int32), weight_exp=-2),
             ir.ReduceNode("sum", ("syn",), "fc", reduce="sum", axes=(0,)),
             ir.LoihiNeuronNode("n", ("sum",), "lif", dv=2048, vth=20),
             ir.DequantizeNode("dq", ("n",)), ir.OutputNode("o", ("dq",))]
    g = ir.Graph(nodes).validate()
    spec, lr, _ = _lava_equals_intref(g, np.random.default_rng(0).random((2, 6, 4, 3), dtype=np.float32))
    (r,) = spec.regions.values()
    assert r.nodes == ["sum"] and r.outputs == ["sum"]
    (c,) = [c for c in spec.connections if c.dst == r.name]
    assert c.synapse == "syn" and c.exp == -2
    assert float(lr.values["n"].float().mean()) > 0


def _residual_blocks(T: int = 4) -> ir.Graph:
    """Two blocks whose residual stream is a one-step value (time in the features, as the published
    Spikeformer keeps ``b (n t) m``): block 0's region makes it, a neuron stage reads its time-major
    form, and block 1's region adds the stage's output to it (reading the one-step value across the
    stage); a step of it, repeated over time, also gates the stage's spikes."""
    def w(o, i, seed):  # even: Lava's 8-bit mixed-sign weights
        return np.random.default_rng(seed).integers(-3, 6, (o, i)).astype(np.int32) * 2

    nodes = [ir.InputNode("x", (), features=(3,), time=T, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.SynapseNode("syn", ("q",), "fc", layout="linear", weight=w(5, 3, 0)),
             ir.LoihiNeuronNode("n", ("syn",), "lif", dv=2048, vth=1),
             ir.TimeToFeaturesNode("t2f", ("n",), "block0", axis=0),
             ir.AddConstantNode("r", ("t2f",), "block0.pos", constant=np.arange(5 * T).reshape(1, T, 5) % 7 - 2),
             ir.FeaturesToTimeNode("f2t", ("r",), "block0", axis=0),
             ir.SynapseNode("syn2", ("f2t",), "block0.fc", layout="linear", weight=w(5, 5, 1)),
             ir.LoihiNeuronNode("n2", ("syn2",), "block0.lif", dv=2048, vth=1),
             ir.TimeToFeaturesNode("t2f2", ("n2",), "block1", axis=0),
             ir.AddNode("r2", ("t2f2", "r"), "block1"),
             ir.FeaturesToTimeNode("f2t2", ("r2",), "block1", axis=0),
             ir.SynapseNode("syn3", ("f2t2",), "block1.fc", layout="linear", weight=w(5, 5, 2)),
             ir.SliceNode("r0", ("r",), "block1", axis=0, start=1, stop=2),
             ir.ReshapeNode("r0f", ("r0",), "block1", features=(5,)),
             ir.RepeatTimeNode("r0T", ("r0f",), "block1", time=T),
             ir.MulNode("gate", ("n2", "r0T"), "block1.gate"),
             ir.SynapseNode("syn4", ("gate",), "block1.fc2", layout="linear", weight=w(5, 5, 3)),
             ir.AddNode("s34", ("syn3", "syn4"), "block1"),
             ir.LoihiNeuronNode("n3", ("s34",), "block1.lif", dv=2048, vth=3),
             ir.DequantizeNode("dq", ("n3",)), ir.OutputNode("o", ("dq",))]
    return ir.Graph(nodes).validate()


def test_a_one_step_value_crosses_a_stage_from_region_to_region():
    """The one-step residual leaves block 0's region, is sent on each of the T output steps and read
    by block 1's region after the neuron stage: bit for bit as intref (the one-step value too), no
    latency of its own (each buffering region adds T − 1), stated in the report."""
    g = _residual_blocks()
    spec, lr, _ = _lava_equals_intref(g, np.random.default_rng(0).random((4, 3, 3), dtype=np.float32))
    a, b = spec.regions.values()
    assert g.types["r"].time == 1 and "r" in a.outputs and "r" in b.inputs and a.buffered and b.buffered
    assert a.added_latency == b.added_latency == spec.T - 1 and spec.time_mixing_latency == 2 * (spec.T - 1)
    assert spec.latency == 3 + 2 * (spec.T - 1) and lr.steps == 3 * spec.T + spec.latency
    assert tuple(lr.values["r"].shape) == (1, 3, spec.T, 5)
    assert all(float(lr.values[n].float().mean()) > 0.1 for n in ("n", "n2", "n3"))
    assert "(1 one-step, sent on each of the T output steps)" in "\n".join(report_lines(spec))


def test_published_residual_stream_runs_two_blocks_bit_for_bit():
    """Loydian/Spikeformer's pattern (published_patterns.batch_time_spikeformer) with a second block
    reading the one-step residual after the first block's MLP neuron."""
    pytest.importorskip("einops")
    from examples.models import published_patterns as pp

    class TwoBlocks(pp.BatchTimeSpikeformer):
        def __init__(self):
            super().__init__()
            dim = self.fc1.in_features
            self.m_norm2, self.fc1b, self.fc2b = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
            self.m_lif2 = pp.MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True)

        def forward(self, x):
            from einops import rearrange

            B, T = x.shape[:2]
            x = self.tokens(rearrange(x, "b t c h w -> t b c h w"))
            x = rearrange(rearrange(x, "t b c h w -> (b t) (h w) c") + self.pos, "(b t) n m -> (b n) t m", b=B, t=T)
            x = rearrange(x + self.time, "(b n) t m -> b (n t) m", b=B, t=T)  # the residual stream: one step
            for norm, fc1, lif, fc2 in ((self.m_norm, self.fc1, self.m_lif, self.fc2),
                                        (self.m_norm2, self.fc1b, self.m_lif2, self.fc2b)):
                res = fc2(lif(fc1(norm(rearrange(x, "b (n t) m -> t b n m", b=B, t=T)) * 4)))
                x = x + rearrange(res, "t b n m -> b (n t) m")
            x = self.norm(x)
            return self.head((self.pool(x).softmax(dim=1).transpose(-1, -2) @ x).squeeze(-2))

    torch.manual_seed(0)
    m = pp.randomize_bn(TwoBlocks())
    g = trace(m, m.sample_shape)
    q = compile_graph(g, "lava", input_range=(0, 2)).quantized
    spec, lr, _ = _lava_equals_intref(q, torch.rand(2, *m.sample_shape, generator=torch.Generator().manual_seed(0)).numpy())
    held = [v for r in spec.regions.values() for v in r.outputs if q.types[v].time == 1]
    assert held and any(v in r.inputs for r in spec.regions.values() for v in held)
    assert spec.time_mixing_latency == 2 * (spec.T - 1)
    assert all(float(lr.values[n].float().mean()) > 0.02 for n in ("m_lif", "m_lif2"))


def test_a_time_mixed_value_leaving_its_region_is_refused_naming_it():
    """A stage cannot read a one-step (time-mixed) value in a T-step network: it would run on one step."""
    nodes = [ir.InputNode("x", (), features=(3,), time=4, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.SynapseNode("syn", ("q",), "fc", layout="linear", weight=np.full((5, 3), 2, np.int32)),
             ir.LoihiNeuronNode("n", ("syn",), "lif", dv=2048, vth=1),
             ir.TimeToFeaturesNode("t2f", ("n",), "mix", axis=0),
             ir.ReshapeNode("flat", ("t2f",), "mix", features=(20,)),
             ir.SynapseNode("syn2", ("flat",), "fc2", layout="linear", weight=np.full((5, 20), 2, np.int32)),
             ir.LoihiNeuronNode("n2", ("syn2",), "lif2", dv=2048, vth=1),
             ir.DequantizeNode("dq", ("n2",)), ir.OutputNode("o", ("dq",))]
    with pytest.raises(UnsupportedError, match=r"lava: the time-mixed value syn2 \(fc2, 1 step\) leaves its region "
                       r"into the stage n2 \(lif2\), which runs on 1 step"):
        build_netspec(ir.Graph(nodes).validate())


def test_a_region_value_beyond_int32_is_refused_after_the_run():
    """Lava's ports carry int32: a region output outside it is counted in the process and the run
    refused naming the value (intref, in int64, would differ from Lava there)."""
    from spikec.errors import SpikecError

    nodes = [ir.InputNode("x", (), features=(3,), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.AddConstantNode("c", ("q",), "pos", constant=np.full((1, 3), 1 << 40, np.int64)),
             ir.LoihiNeuronNode("n", ("c",), "lif", dv=2048, vth=1),
             ir.DequantizeNode("dq", ("n",)), ir.OutputNode("o", ("dq",))]
    spec = build_netspec(ir.Graph(nodes).validate())
    with pytest.raises(SpikecError, match=r"lava: region values leave the int32 of Lava's ports .*: c \(\d+ steps\)"):
        run_lava(spec, np.random.default_rng(0).random((2, 2, 3), dtype=np.float32))


# ---- regressions from the review of the region processes ----------------------------------------------
class CropInRegion(nn.Module):
    """A negative padding (a crop) between a sigmoid and a product: inside a region."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)
        self.l1, self.l2 = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m")
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # [T, B, 2, 6]
        u = torch.sigmoid(self.conv(self.l1(x * 3).flatten(0, 1))).unflatten(0, (x.shape[0], -1))
        p = F.pad(u, (-1, -1))
        return self.head(self.l2(p * p * 4).flatten(2))


def test_a_crop_in_a_region_runs_as_intref():
    torch.manual_seed(0)
    q = compile_graph(trace(CropInRegion().eval(), (2, 6), time_steps=2), "lava", input_range=(0, 2)).quantized
    spec, _, _ = _lava_equals_intref(q, np.random.default_rng(0).random((2, 3, 2, 6), dtype=np.float32))
    assert any("pad" in r.nodes for r in spec.regions.values())


def test_a_region_input_folded_from_many_stages_is_one_port():
    """17 neuron layers summed into one region input: 17 connections into one port, not 17 ports."""
    w = np.full((3, 3), 2, np.int32)
    nodes = [ir.InputNode("x", (), features=(3,), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255)]
    for k in range(17):
        nodes += [ir.SynapseNode(f"s{k}", ("q",), f"fc{k}", layout="linear", weight=w),
                  ir.LoihiNeuronNode(f"n{k}", (f"s{k}",), f"lif{k}", dv=2048, vth=1),
                  ir.SynapseNode(f"t{k}", (f"n{k}",), f"g{k}", layout="linear", weight=w)]
    prev = "t0"
    for k in range(1, 17):
        nodes.append(ir.AddNode(f"a{k}", (prev, f"t{k}"), "sum"))
        prev = f"a{k}"
    nodes += [ir.AddConstantNode("c", (prev,), "pos", constant=np.arange(6).reshape(2, 3)),
              ir.LoihiNeuronNode("out", ("c",), "lif", dv=2048, vth=1), ir.DequantizeNode("dq", ("out",)),
              ir.OutputNode("o", ("dq",))]
    spec, _, _ = _lava_equals_intref(ir.Graph(nodes).validate(), np.random.default_rng(0).random((2, 2, 3), dtype=np.float32))
    (r,) = spec.regions.values()
    assert len(r.inputs) == 1 and len(r.ports) == 17


def test_the_report_counts_the_weights_a_region_computes(zoo_models):
    _, _, g = zoo_models["staa_snn"]
    spec = build_netspec(compile_graph(g, "lava", input_range=(0, 2)).quantized)
    lines = report_lines(spec)
    for r in spec.regions.values():
        inner = sum(int(np.size(spec.graph[v].weight)) for v in r.nodes if isinstance(spec.graph[v], ir.SynapseNode))
        if inner:
            assert any(ln.strip().startswith(f"{r.name}:") and f"{inner:,} synapse weights computed in the region" in ln
                       for ln in lines)
    total = next(ln for ln in lines if ln.startswith("total:"))
    inner_all = sum(int(np.size(spec.graph[v].weight)) for r in spec.regions.values() for v in r.nodes
                    if isinstance(spec.graph[v], ir.SynapseNode))
    assert inner_all > 0 and int(total.split("(")[1].split(" weights stored")[0]) >= inner_all


def test_a_region_with_many_readers_has_a_port_each():
    """A value read by 20 neuron layers through synapses of its own (as every block of a deep model reads
    the residual stream): 20 region outputs, one port each (the published Spikeformer-7 needs 19)."""
    w = np.full((3, 3), 2, np.int32)
    nodes = [ir.InputNode("x", (), features=(3,), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.SynapseNode("s", ("q",), "fc", layout="linear", weight=w),
             ir.LoihiNeuronNode("n", ("s",), "lif", dv=2048, vth=1),
             ir.SynapseNode("t", ("n",), "g", layout="linear", weight=w),
             ir.AddConstantNode("c", ("t",), "pos", constant=np.arange(6).reshape(2, 3))]
    outs = []
    for k in range(20):
        nodes += [ir.SynapseNode(f"r{k}", ("c",), f"read{k}", layout="linear", weight=w * (k % 3 + 1)),
                  ir.LoihiNeuronNode(f"m{k}", (f"r{k}",), f"lif{k}", dv=2048, vth=1 + k)]
        outs.append(f"m{k}")
    total = outs[0]
    for k, o in enumerate(outs[1:], 1):
        nodes.append(ir.AddNode(f"sum{k}", (total, o), "sum"))
        total = f"sum{k}"
    nodes += [ir.DequantizeNode("dq", (total,)), ir.OutputNode("o", ("dq",))]
    spec, _, _ = _lava_equals_intref(ir.Graph(nodes).validate(), np.random.default_rng(0).random((2, 2, 3), dtype=np.float32))
    (r,) = spec.regions.values()
    assert len(r.outputs) == 20


def test_a_region_keeps_only_its_widest_cut(zoo_models):
    """evaluate(keep=outputs) drops each value after its last reader and returns the outputs only, equal
    to the full evaluation; the memory estimate counts that widest cut, each value with its own steps."""
    from spikec.targets.lava.resources import region_working_bytes

    _, x, g = zoo_models["stformer"]
    q = compile_graph(g, "lava", input_range=(0, 2)).quantized
    spec = build_netspec(q)
    ri = run_int(q, first_samples(x, g, 1), record=True)
    (r,) = [r for r in spec.regions.values() if r.buffered]
    values = {v: ri.values[v].numpy() for v in r.inputs}
    ctx = Context(q.types, spec.T, None)
    full = evaluate([q[v] for v in r.nodes], values, ctx)
    kept = evaluate([q[v] for v in r.nodes], values, ctx, keep=set(r.outputs))
    assert set(kept) == set(r.outputs) and all(np.array_equal(kept[v], full[v]) for v in r.outputs)
    everything = sum(q.types[v].numel * 8 * q.types[v].time for v in [*r.inputs, *r.nodes])
    assert 0 < region_working_bytes(spec, r) < everything
