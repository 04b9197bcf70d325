"""Re-import check: read the NIR file back, build a torch module with nirtorch's interpreter and
spikec's own node map, run it step by step and compare with the float IR.

The node map implements NIR's semantics (forward Euler with the graph's dt) in the same float32
operation order as spikingjelly, using the ``spikec_*`` node metadata where NIR allows several
orders (decay_input, parametric leak).  nirtorch's own Affine mapping is not used (it drops the
bias); neurons are not built into nirtorch.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# NIR outputs agree with the float IR when |y_nir - y_float| <= OUTPUT_RTOL * max(1, max |y_float|) everywhere.
# Spikes are compared exactly; the real-valued outputs may differ by float32 summation order (a mean readout
# moved behind the classifier, max-pool selections, fan-in edges summed pairwise), an error that scales with
# the outputs' magnitude: relative for outputs beyond 1 (1e-5 is ~84 float32 ulps), absolute below.
OUTPUT_RTOL = 1e-5


def output_tolerance(y_float) -> float:
    """The largest |difference| from the float IR's outputs ``y_float`` that counts as agreement."""
    y = torch.as_tensor(np.asarray(y_float) if not isinstance(y_float, torch.Tensor) else y_float)
    return OUTPUT_RTOL * max(1.0, float(y.abs().max()) if y.numel() else 0.0)


class _LIF(nn.Module):
    def __init__(self, node, dt):
        super().__init__()
        f = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        meta = node.metadata or {}
        tau = json.loads(meta["spikec_tau"]) if "spikec_tau" in meta else np.asarray(node.tau, np.float64) / dt
        self.tau_steps = f(tau)  # the source's τ in steps (τ·dt itself is rounded in float32)
        self.r, self.v_leak, self.th, self.v_reset = f(node.r), f(node.v_leak), f(node.v_threshold), f(node.v_reset)
        self.decay_input = json.loads(meta.get("spikec_decay_input", "true"))
        rate = json.loads(meta.get("spikec_leak_rate", "null"))
        self.rate = None if rate is None else torch.tensor(rate, dtype=torch.float32)

    def forward(self, x, state=None):
        v = self.v_reset.expand_as(x) if state is None else state
        vl = float(self.v_leak.reshape(-1)[0]) if self.v_leak.numel() else 0.0
        tau = float(self.tau_steps.reshape(-1)[0])
        r = float(self.r.reshape(-1)[0])
        if self.decay_input:
            drive = x if r == 1.0 else x * self.r
            h = v + (drive - (v - vl)) * self.rate if self.rate is not None else v + (drive - (v - vl)) / tau
        else:  # the leak first, then the input r·x/τ (x itself for spikec's r = τ; x/τ for r = 1, as for Norse)
            drive = x if r == float(np.float32(tau)) or self.rate is not None else x * (r / tau)
            h = v - (v - vl) * self.rate + drive if self.rate is not None else v - (v - vl) / tau + drive
        s = (h > self.th).to(torch.float32)
        vr = float(self.v_reset.reshape(-1)[0])
        v = s * vr + (1 - s) * h
        return s, v


class _IF(nn.Module):
    def __init__(self, node, dt):
        super().__init__()
        self.th = torch.as_tensor(np.asarray(node.v_threshold, np.float32))
        self.v_reset = float(np.asarray(node.v_reset).reshape(-1)[0])
        if type(node).__name__ == "LIF":  # an IF written as a LIF without leak (spikec_model "IF": for snnTorch)
            self.gain = 1.0
            return
        gain = float(np.asarray(node.r).reshape(-1)[0]) * dt
        self.gain = 1.0 if abs(gain - 1.0) < 1e-9 else gain  # r = 1/dt: v += x (1e4 * 1e-4 rounds in float64)

    def forward(self, x, state=None):
        v = torch.full_like(x, self.v_reset) if state is None else state
        h = v + (x if self.gain == 1.0 else x * self.gain)
        s = (h > self.th).to(torch.float32)
        return s, s * self.v_reset + (1 - s) * h


class _Affine(nn.Module):
    def __init__(self, node):
        super().__init__()
        self.w = torch.as_tensor(np.asarray(node.weight, np.float32))
        self.b = torch.as_tensor(np.asarray(node.bias, np.float32))

    def forward(self, x):
        return F.linear(x, self.w, self.b)


class _Delay(nn.Module):
    """NIR's Delay, ``y(t) = x(t - delay)``, for delays of whole steps of ``dt`` (zeros before)."""

    def __init__(self, node, dt):
        super().__init__()
        steps = np.unique(np.round(np.asarray(node.delay, np.float64) / dt))
        if steps.size != 1 or steps[0] < 1:
            raise ValueError(f"a Delay of {np.unique(node.delay)} s is not one whole number of steps of {dt} s")
        self.steps = int(steps[0])

    def forward(self, x, state=None):
        buf = torch.zeros((self.steps, *x.shape), dtype=x.dtype) if state is None else state
        return buf[0], torch.cat([buf[1:], x[None]])


def node_map(dt: float) -> dict:
    import nir

    def conv2d(n):
        m = nn.Conv2d(n.weight.shape[1] * n.groups, n.weight.shape[0], n.weight.shape[2:], stride=tuple(n.stride),
                      padding=tuple(n.padding), dilation=tuple(n.dilation), groups=n.groups)
        m.weight.data = torch.as_tensor(np.asarray(n.weight, np.float32))
        m.bias.data = torch.as_tensor(np.asarray(n.bias, np.float32))
        return m

    def conv1d(n):
        m = nn.Conv1d(n.weight.shape[1] * n.groups, n.weight.shape[0], n.weight.shape[2], stride=int(n.stride),
                      padding=int(n.padding), dilation=int(n.dilation), groups=n.groups)
        m.weight.data = torch.as_tensor(np.asarray(n.weight, np.float32))
        m.bias.data = torch.as_tensor(np.asarray(n.bias, np.float32))
        return m

    class _Lambda(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    return {
        nir.LIF: lambda n: _IF(n, dt) if json.loads((n.metadata or {}).get("spikec_model", "null")) == "IF" else _LIF(n, dt),
        nir.IF: lambda n: _IF(n, dt),
        nir.Affine: _Affine,
        nir.Delay: lambda n: _Delay(n, dt),
        nir.Conv2d: conv2d,
        nir.Conv1d: conv1d,
        nir.Threshold: lambda n: _Lambda(lambda x, th=torch.as_tensor(np.asarray(n.threshold, np.float32)): (x > th).float()),
        # NIR's start / end dims count on the un-batched shape (spikec writes negative ones)
        nir.Flatten: lambda n: _Lambda(lambda x, s=int(n.start_dim), e=int(n.end_dim):
                                       x.flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)),
        nir.SumPool2d: lambda n: _Lambda(lambda x, k=tuple(int(a) for a in n.kernel_size), s=tuple(int(a) for a in n.stride),
                                         p=tuple(int(a) for a in n.padding): F.avg_pool2d(x, k, s, p, divisor_override=1)),
        nir.Scale: lambda n: _Lambda(lambda x, c=torch.as_tensor(np.asarray(n.scale, np.float32)): x * c),
        nir.Input: lambda n: nn.Identity(),
        nir.Output: lambda n: nn.Identity(),
    }


def topological(g):
    """``g`` with its nodes in evaluation order (spikec writes them so; older or foreign files may
    not be): nirtorch evaluates nodes in dict order and re-queues a node whose inputs are not
    ready, which breaks on nested graphs in nirtorch 2.6."""
    import nir

    from .export import topological_order

    order = topological_order(list(g.nodes), g.edges)
    return nir.NIRGraph(nodes={k: g.nodes[k] for k in order}, edges=g.edges, metadata=g.metadata, type_check=False)


def run_nir(path_or_graph, x_steps: torch.Tensor, record: bool = False):
    """Run a NIR file / graph step by step on ``x_steps`` [T, B, *features]; returns the per-step
    outputs [T, B, ...] and (if ``record``) every module's per-step output."""
    import nir
    import nirtorch

    g = nir.read(str(path_or_graph)) if not isinstance(path_or_graph, nir.NIRGraph) else path_or_graph
    dt = json.loads(g.metadata.get("dt", "1.0")) if isinstance(g.metadata.get("dt"), str) else float(g.metadata.get("dt", 1.0))
    module = nirtorch.nir_to_torch(topological(g), node_map(dt))
    recorded: dict[str, list] = {}
    hooks = []
    if record:
        for name, m in module.named_children():
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: recorded.setdefault(name, []).append((o[0] if isinstance(o, tuple) else o).detach())))
    outs, state = [], None
    with torch.no_grad():
        for x in x_steps:
            y, state = module(x, state)
            outs.append(y)
    for h in hooks:
        h.remove()
    return torch.stack(outs), {k: torch.stack(v) for k, v in recorded.items()}


def run_file(path, x) -> tuple[torch.Tensor, dict, dict]:
    """Run a spikec NIR file on model inputs ``x`` (the source model's input layout) as its
    metadata says: static inputs repeated for T steps, then the readout (sum / mean over time, or
    per step).  Returns the outputs, every NIR node's per-step output and the metadata."""
    import nir

    from spikec.errors import SpikecError

    try:
        g = nir.read(str(path))
    except Exception as e:  # h5py / nir raise several types for a foreign or corrupt file
        raise SpikecError(f"{path}: not a readable NIR file ({e})") from None
    meta = {k: json.loads(v) if isinstance(v, str) else v for k, v in (g.metadata or {}).items()
            if k in ("T", "input_layout", "readout", "sources", "neurons", "output_features")}
    if not {"T", "input_layout", "readout"} <= set(meta):
        raise SpikecError(f"{path}: a NIR graph without spikec's metadata (T, input_layout, readout): "
                          "run it with its own consumer")
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    want = tuple(int(d) for d in next(iter(g.nodes[k] for k in g.nodes if type(g.nodes[k]).__name__ == "Input")).input_type["input"])
    feats = tuple(xs.shape[1:]) if meta["input_layout"] == "static" else tuple(xs.shape[2:])
    if feats != want:
        raise SpikecError(f"--input has shape {list(xs.shape)}: the NIR graph takes per-sample features {list(want)} "
                          f"({'[B, ...] frames' if meta['input_layout'] == 'static' else '[T, B, ...] sequences'})")
    if meta["input_layout"] != "static" and xs.shape[0] != meta["T"]:
        raise SpikecError(f"--input has {xs.shape[0]} time steps: the NIR graph was exported for T = {meta['T']} "
                          "(its readout and classifier bias assume it); give [T, B, ...] sequences of that length")
    steps = xs.unsqueeze(0).expand(meta["T"], *xs.shape) if meta["input_layout"] == "static" else xs
    y, rec = run_nir(g, steps, record=True)
    shapes = meta.get("output_features")  # the model's per-sample output shape (files before it: NIR's)
    if shapes and len(shapes) == 1 and y.shape[2:].numel() == int(np.prod(shapes[0])):
        y = y.reshape(*y.shape[:2], *shapes[0])
    y = apply_readout(y, meta["readout"])
    return y, rec, meta


def apply_readout(y: torch.Tensor, readout: str) -> torch.Tensor:
    """The export's readout over the per-step outputs [T, ...]: sum / mean over time, or per step."""
    return {"sum": lambda v: v.sum(0), "mean": lambda v: v.mean(0)}.get(readout, lambda v: v)(y)


def check_against_float(float_graph, nir_path, x) -> dict:
    """Compare the re-imported NIR model with the float IR (per-step semantics, readout moved
    behind the classifier as in the export): neuron spikes per layer and outputs (max |diff| and the
    :func:`output_tolerance` it is judged by); ``outputs`` are the NIR run's in the float graph's
    shape with the readout applied (comparable with the model's)."""
    from spikec.runtime.float_interpreter import run_float

    from .export import _readout

    g, readout = _readout(float_graph)
    rf = run_float(g, x, record=True)
    inp = g.inputs[0]
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    T = max(g.types[n.name].time for n in g.nodes)
    steps = xs.unsqueeze(0).expand(T, *xs.shape) if inp.layout == "static" else xs
    import nir

    back = nir.read(str(nir_path))
    neurons = json.loads(back.metadata["neurons"])
    y, rec = run_nir(back, steps, record=True)
    layers = {}
    for n in g.nodes:
        if n.op == "neuron":
            a = rf.values[n.name]
            b = rec[neurons[n.name]].reshape(a.shape)
            layers[n.name] = float((a == b).float().mean())
    yf = rf.outputs[0]
    y = y.reshape(yf.shape)  # the float graph's output shape (NIR's Output may keep a channel-first view)
    diff = float((y - yf).abs().max()) if yf.numel() else 0.0
    return {"layers": layers, "spikes_identical": all(v == 1.0 for v in layers.values()),
            "output_max_abs_diff": diff, "output_tolerance": output_tolerance(yf), "readout": readout or "per step",
            "outputs": apply_readout(y, readout or "per step")}  # as run_file gives them
