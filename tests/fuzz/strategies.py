"""Random small spiking networks for differential testing of every target (issue 15, deliverable 4).

A network is described by a :class:`NetSpec` (plain data: it prints readably, hypothesis shrinks it)
and built by :func:`build_model` into an ``nn.Module`` of spikingjelly 2.0 multi-step neurons.
:func:`cases` is the hypothesis strategy of whole test cases: ``(spec, model, input_shape,
time_steps, x, input_range, calib)``.

What the generator covers
-------------------------
* input: a static frame ``[B, C, H, W]`` repeated over T inside the model, or a sequence
  ``[T, B, C, H, W]`` (``time_steps=T``); T in 1..4 mostly, and 8, 16, 32; optionally a neuron
  straight on the analog input (spike encoding);
* image blocks: convolution (kernel 1 / 3, stride 1 / 2, depthwise, with or without bias), optional
  BatchNorm2d with random statistics, then a neuron; max / avg pools of spikes (incl. 3/2/1 and
  ceil_mode); max / avg pool of the real-valued convolution before the neuron; residual add of
  spikes (``s + f(s)``); residual add of real values (two convolutions summed before a neuron, or a
  convolution plus the spikes); a spike difference ``s - f(s)``;
* token blocks (``[T, B, N, D]``): Linear + neuron; Spikformer's spike-product attention
  (``q @ k^T @ v * scale`` of spikes, then a neuron, projection, optional residual); SDT's
  spike-driven attention (``q * k`` summed over tokens, a neuron, times ``v``);
* neurons: LIF / IF / PLIF, tau (spikingjelly needs tau > 1: incl. 1.01 and 100), ``decay_input``
  both ways, soft reset (``v_reset=None``) and hard reset (0 or another value), thresholds normal / tiny / huge;
* weights: normal, zero, huge (x1e3), tiny (x1e-4), NaN / Inf (see KNOWN_DEFECTS);
* heads: global mean pool or flatten, Linear, optional neuron, optional mean over time;
* data: ``input_range`` (0, 1), (-1, 1) or (0, 4); inputs random, saturated at the bounds, or
  beyond them; ``calib`` data sometimes.

KNOWN_DEFECTS
-------------
Generator features that hit a known spikec defect, with the targets they break.  While a feature
is listed, cases that have it skip those targets (reported as ``known``; a feature that breaks
every target is not generated at all, and the integer-only defects F2 / F4 are drawn in 1 of 4
places only, so that most cases still reach the integer targets), so the default ``make test`` run
is green; fixing the defect means deleting its entry.  ``SPIKEC_FUZZ_KNOWN=1`` generates and runs
everything anyway (to confirm a fix, or to hunt).  Each entry names its reproduction (F1 ...) in
FAILURES.md of issue 15.  None is listed today: F1-F7 are fixed and have regression tests
(tests/frontend/test_nonfinite_parameters.py, tests/passes/test_merge_scale_into_threshold.py,
tests/passes/quantize/test_domains.py, tests/targets/nir/test_fuzz_found.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

ALL_TARGETS = ("intref", "onnx", "nir", "lava")
INTEGER = ("intref", "onnx", "lava")

# feature -> (what goes wrong, FAILURES.md entry, targets it breaks).  Delete an entry when its defect
# is fixed.  A feature that breaks every target is not generated; otherwise cases with it run, and
# skip only the targets it breaks (``skipped_targets``).
KNOWN_DEFECTS: dict[str, tuple[str, str, tuple]] = {
}

HUNT = bool(os.environ.get("SPIKEC_FUZZ_KNOWN"))


def allowed(feature: str) -> bool:
    """A generator feature is drawn unless it is a listed known defect of every target (or when hunting)."""
    return HUNT or feature not in KNOWN_DEFECTS or set(KNOWN_DEFECTS[feature][2]) != set(ALL_TARGETS)


def skipped_targets(spec: "NetSpec") -> dict[str, str]:
    """target -> the known defects (FAILURES.md entries) of ``spec`` that break it (nothing when hunting)."""
    out: dict[str, str] = {}
    if HUNT:
        return out
    for f in spec.features:
        if f in KNOWN_DEFECTS:
            for t in KNOWN_DEFECTS[f][2]:
                out[t] = ", ".join(x for x in (out.get(t), f"{f} ({KNOWN_DEFECTS[f][1]})") if x)
    return out


# --------------------------------------------------------------------------------------------
# the spec (plain data)

@dataclass
class NeuronSpec:
    kind: str = "LIF"  # LIF | IF | PLIF
    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0  # None: soft reset
    decay_input: bool = True


@dataclass
class Block:
    op: str  # conv | pool | res_spike | res_real | sub | tokens | linear | ssa | sdt
    args: dict = field(default_factory=dict)
    neuron: Optional[NeuronSpec] = None
    neuron2: Optional[NeuronSpec] = None  # attention: the neuron after the product
    weights: str = "normal"  # normal | zero | huge | tiny | nan | inf


@dataclass
class NetSpec:
    T: int
    static: bool  # input [B, C, H, W] repeated T times in the model, else [T, B, C, H, W]
    in_shape: tuple
    encoder: Optional[NeuronSpec]
    blocks: list
    head: dict
    seed: int = 0
    features: tuple = ()  # the KNOWN_DEFECTS features this spec has


# --------------------------------------------------------------------------------------------
# building the module

def _neuron(s: NeuronSpec) -> nn.Module:
    from spikingjelly.activation_based import neuron

    if s.kind == "IF":
        return neuron.IFNode(v_threshold=s.v_threshold, v_reset=s.v_reset, step_mode="m")
    if s.kind == "PLIF":
        return neuron.ParametricLIFNode(init_tau=s.tau, decay_input=s.decay_input, v_threshold=s.v_threshold,
                                        v_reset=s.v_reset, step_mode="m")
    return neuron.LIFNode(tau=s.tau, decay_input=s.decay_input, v_threshold=s.v_threshold, v_reset=s.v_reset,
                          step_mode="m")


_GAIN = {"normal": 1.0, "zero": 0.0, "huge": 1e3, "tiny": 1e-4, "nan": 1.0, "inf": 1.0}


@torch.no_grad()
def _init(m: nn.Module, how: str, g: torch.Generator, gain: float = 1.5) -> None:
    """Weights of a conv / linear (fan-in normal, x gain, then the block's extreme), BN statistics."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        w = torch.randn(m.weight.shape, generator=g) * gain * (2.0 / fan_in) ** 0.5 * _GAIN[how]
        if how == "nan":
            w.view(-1)[0] = float("nan")
        elif how == "inf":
            w.view(-1)[0] = float("inf")
        m.weight.copy_(w)
        if m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2 * min(_GAIN[how], 1.0))
    elif isinstance(m, nn.BatchNorm2d):
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.25)
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 1.0 + 0.5)
        m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.8 - 0.1)


def _conv_out(h: int, k: int, s: int, p: int, ceil: bool = False) -> int:
    num = h + 2 * p - k
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= h + p:
        out -= 1
    return out


class ConvUnit(nn.Module):
    """conv [-> bn] over [T, B, C, H, W] (time merged into batch for the 2-d layers)."""

    def __init__(self, cin, cout, k, stride, depthwise, bias, bn):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=cin if depthwise else 1, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1))
        if self.bn is not None:
            y = self.bn(y)
        return y.reshape(T, B, *y.shape[1:])


class Pool(nn.Module):
    def __init__(self, kind, k, s, p, ceil):
        super().__init__()
        self.pool = (nn.MaxPool2d(k, s, p, ceil_mode=ceil) if kind == "max"
                     else nn.AvgPool2d(k, s, p, ceil_mode=ceil))

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.pool(x.flatten(0, 1))
        return y.reshape(T, B, *y.shape[1:])


class ConvBlock(nn.Module):
    """neuron(pool?(conv(x))), or the residual / difference forms around it."""

    def __init__(self, b: Block, cin: int):
        super().__init__()
        a = b.args
        self.form = b.op
        self.unit = ConvUnit(cin, a["cout"], a["k"], a["stride"], a["depthwise"], a["bias"], a["bn"])
        if b.op == "res_real" and a.get("two_convs"):
            self.unit2 = ConvUnit(cin, a["cout"], a["k"], a["stride"], False, a["bias"], a["bn"])
        self.pool = Pool(a["pool"], 2, 2, 0, False) if a.get("pool") else None
        self.lif = _neuron(b.neuron)

    def forward(self, x):
        y = self.unit(x)
        if self.form == "res_real":
            y = y + (self.unit2(x) if hasattr(self, "unit2") else x)
        if self.pool is not None:
            y = self.pool(y)
        s = self.lif(y)
        if self.form == "res_spike":
            return x + s
        if self.form == "sub":
            return x - s
        return s


class Linear3(nn.Module):
    """Linear over the last axis of [T, B, ..., D]."""

    def __init__(self, din, dout, bias=True):
        super().__init__()
        self.fc = nn.Linear(din, dout, bias=bias)

    def forward(self, x):
        return self.fc(x)


class SSA(nn.Module):
    """Spikformer's spiking self-attention: q, k, v spikes, (q @ k^T) @ v * scale, a neuron, projection."""

    def __init__(self, b: Block, d: int):
        super().__init__()
        a = b.args
        self.heads, self.scale, self.residual, self.order = a["heads"], a["scale"], a["residual"], a["order"]
        self.q_fc, self.k_fc, self.v_fc = (nn.Linear(d, d) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (_neuron(b.neuron) for _ in range(3))
        self.attn_lif = _neuron(b.neuron2)
        self.proj = nn.Linear(d, d)
        self.proj_lif = _neuron(b.neuron)

    def forward(self, x):
        T, B, N, D = x.shape
        h = self.heads
        q, k, v = (lif(fc(x)).reshape(T, B, N, h, D // h).transpose(2, 3)
                   for fc, lif in ((self.q_fc, self.q_lif), (self.k_fc, self.k_lif), (self.v_fc, self.v_lif)))
        y = (q @ k.transpose(-2, -1)) @ v if self.order == "qk" else q @ (k.transpose(-2, -1) @ v)
        y = self.attn_lif(y * self.scale)
        y = y.transpose(2, 3).reshape(T, B, N, D)
        y = self.proj_lif(self.proj(y))
        return x + y if self.residual else y


class SDSA(nn.Module):
    """SDT's spike-driven self-attention: (a * b) summed over tokens, a neuron, times c (spikes)."""

    def __init__(self, b: Block, d: int):
        super().__init__()
        a = b.args
        self.residual, self.pair = a["residual"], a["pair"]
        self.q_fc, self.k_fc, self.v_fc = (nn.Linear(d, d) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (_neuron(b.neuron) for _ in range(3))
        self.talk_lif = _neuron(b.neuron2)
        self.proj = nn.Linear(d, d)
        self.proj_lif = _neuron(b.neuron)

    def forward(self, x):
        q, k, v = (lif(fc(x)) for fc, lif in ((self.q_fc, self.q_lif), (self.k_fc, self.k_lif), (self.v_fc, self.v_lif)))
        a, b_, c = (q, k, v) if self.pair == "qk" else (k, v, q)
        kv = self.talk_lif((a * b_).sum(dim=-2, keepdim=True))
        y = self.proj_lif(self.proj(c * kv))
        return x + y if self.residual else y


class LinearBlock(nn.Module):
    def __init__(self, b: Block, d: int):
        super().__init__()
        self.fc = nn.Linear(d, b.args["dout"], bias=b.args["bias"])
        self.lif = _neuron(b.neuron)

    def forward(self, x):
        return self.lif(self.fc(x))


class RandomNet(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        self.T, self.static = spec.T, spec.static
        self.enc = _neuron(spec.encoder) if spec.encoder else None
        C, H, W = spec.in_shape
        shape = ("image", C, H, W)
        self.kinds: list[str] = []
        blocks = []
        for b in spec.blocks:
            if b.op in ("conv", "res_spike", "res_real", "sub"):
                m = ConvBlock(b, shape[1])
                a = b.args
                h, w = _conv_out(shape[2], a["k"], a["stride"], a["k"] // 2), _conv_out(shape[3], a["k"], a["stride"], a["k"] // 2)
                if a.get("pool"):
                    h, w = h // 2, w // 2
                shape = ("image", a["cout"], h, w)
            elif b.op == "pool":
                a = b.args
                m = Pool(a["kind"], a["k"], a["s"], a["p"], a["ceil"])
                shape = ("image", shape[1], _conv_out(shape[2], a["k"], a["s"], a["p"], a["ceil"]),
                         _conv_out(shape[3], a["k"], a["s"], a["p"], a["ceil"]))
            elif b.op == "tokens":
                m = nn.Identity()
                shape = ("tokens", shape[2] * shape[3], shape[1])
            elif b.op == "linear":
                m = LinearBlock(b, shape[2])
                shape = ("tokens", shape[1], b.args["dout"])
            elif b.op == "ssa":
                m = SSA(b, shape[2])
            elif b.op == "sdt":
                m = SDSA(b, shape[2])
            else:
                raise ValueError(b.op)
            blocks.append(m)
            self.kinds.append(b.op)
        self.blocks = nn.ModuleList(blocks)
        hd = spec.head
        feat = (shape[1] if shape[0] == "image" else shape[2]) if hd["pool"] == "mean" else int(np.prod(shape[1:]))
        self.head_pool, self.time_mean = hd["pool"], hd["time_mean"]
        self.head = nn.Linear(feat, hd["classes"]) if hd["linear"] else None
        self.head_lif = _neuron(hd["neuron"]) if hd["neuron"] is not None else None
        g = torch.Generator().manual_seed(spec.seed)
        for b, m in zip(spec.blocks, self.blocks):
            for sub in m.modules():
                _init(sub, b.weights, g)
        if self.head is not None:
            _init(self.head, hd.get("weights", "normal"), g)
        self.eval()

    def forward(self, x):
        if self.static:
            x = x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))
        if self.enc is not None:
            x = self.enc(x)
        for kind, m in zip(self.kinds, self.blocks):
            if kind == "tokens":
                x = x.flatten(3).transpose(-1, -2).contiguous()  # [T, B, N, C]
            else:
                x = m(x)
        if self.head_pool == "mean":
            x = x.flatten(3).mean(3) if x.dim() == 5 else x.mean(2)
        else:
            x = x.flatten(2)
        if self.head is not None:
            x = self.head(x)
        if self.head_lif is not None:
            x = self.head_lif(x)
        return x.mean(0) if self.time_mean else x


def build_model(spec: NetSpec) -> nn.Module:
    return RandomNet(spec)


# --------------------------------------------------------------------------------------------
# strategies

def neurons():
    @st.composite
    def draw_neuron(draw):
        kind = draw(st.sampled_from(["LIF", "IF", "PLIF"]))
        tau = draw(st.sampled_from([2.0, 1.5, 4.0, 1.01, 100.0]) | st.floats(1.05, 10.0))
        v_th = draw(st.sampled_from([1.0, 0.5, 1e-3, 1e3]) | st.floats(0.1, 2.0))
        v_reset = draw(st.sampled_from([0.0, None, -0.25, 0.3]))
        decay_input = draw(st.booleans()) if kind != "IF" else True
        if (kind != "IF" and decay_input and v_reset not in (0.0, None) and not HUNT
                and "decay_input_hard_reset" in KNOWN_DEFECTS and draw(st.integers(0, 3))):
            # a listed known defect of the integer targets: keep it in 1 of 4 such neurons (NIR still runs
            # them) so that most cases still reach the integer targets
            v_reset = draw(st.sampled_from([0.0, None]))
        return NeuronSpec(kind, float(tau), float(v_th), v_reset, decay_input)

    return draw_neuron()


def _weights():
    """Mostly normal weights; each extreme 1 in 10 draws, NaN / Inf 1 in 40 each (a network draws
    several: a frequent non-finite weight would turn most cases into the same refusal)."""
    return st.sampled_from(["normal"] * 26 + ["zero", "huge", "tiny"] * 4 + ["nan", "inf"])


@st.composite
def net_specs(draw, max_T: int = 32) -> NetSpec:
    T = draw(st.integers(1, 4) | st.sampled_from([t for t in (8, 16, 32) if t <= max_T]))
    static = draw(st.booleans())
    C = draw(st.integers(1, 3))
    H = draw(st.integers(2, 6))
    W = draw(st.integers(2, 6))
    encoder = draw(st.none() | neurons())
    blocks: list[Block] = []
    c, h, w = C, H, W
    spikes = encoder is not None  # is the running value a spike (or count) train?
    image_ops = ["conv", "pool", "res_spike", "res_real", "sub"]
    feats: set[str] = set()
    scaled = False  # the running value is an average pool of spikes over a non-power-of-two window
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(image_ops))
        if op == "pool" and (not spikes or min(h, w) < 2):
            op = "conv"
        if op in ("res_spike", "sub") and not spikes:
            op = "conv"
        if op == "sub" and not HUNT and "spike_difference" in KNOWN_DEFECTS and draw(st.integers(0, 3)):
            op = "res_spike"  # a listed known defect of the integer targets: keep 1 in 4 (NIR still runs them)
        if op in ("res_spike", "sub") and scaled:
            feats.add("add_unequal_scales")
        if op == "pool":
            kind = draw(st.sampled_from(["max", "avg"]))
            k, s, p, ceil = draw(st.sampled_from([(2, 2, 0, False), (2, 1, 0, False), (3, 2, 1, False), (3, 2, 1, True)]))
            if kind == "avg" and p:
                ceil = False
            blocks.append(Block("pool", dict(kind=kind, k=k, s=s, p=p, ceil=ceil)))
            scaled = scaled or (kind == "avg" and k == 3)
            h, w = _conv_out(h, k, s, p, ceil), _conv_out(w, k, s, p, ceil)
            continue
        two = op == "res_real" and (not spikes or draw(st.booleans()))  # conv + conv, else conv(x) + x
        keep = op in ("res_spike", "sub") or (op == "res_real" and not two)
        if op == "res_real" and scaled and not two:
            feats.add("add_unequal_scales")
        depthwise = draw(st.booleans()) if op in ("conv", "res_spike", "sub") else False
        cout = c if (keep or depthwise) else draw(st.integers(1, 6))
        k = draw(st.sampled_from([3, 1])) if not keep else 3
        stride = 1 if keep else draw(st.sampled_from([1, 1, 2]))
        pool = None
        if op == "conv" and min(h, w) >= 4:
            pool = draw(st.sampled_from([None, None, "max", "avg"]))
        args = dict(cout=cout, k=k, stride=stride, depthwise=depthwise, bias=draw(st.booleans()),
                    bn=draw(st.booleans()), pool=pool, two_convs=two)
        blocks.append(Block(op, args, neuron=draw(neurons()), weights=draw(_weights())))
        h, w = _conv_out(h, k, stride, k // 2), _conv_out(w, k, stride, k // 2)
        if pool:
            h, w = h // 2, w // 2
        c = cout
        spikes, scaled = True, False
    # token stage (attention kept small: NIR's coincidence expansion is tokens^2 x head-dim^2)
    n, d = h * w, c
    if spikes and n <= 16 and draw(st.booleans()):
        blocks.append(Block("tokens"))
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.sampled_from(["linear", "ssa", "sdt"]))
            if op == "linear" or d > 8:
                scaled = False
                dout = draw(st.sampled_from([2, 4, 6]))
                blocks.append(Block("linear", dict(dout=dout, bias=draw(st.booleans())), neuron=draw(neurons()),
                                    weights=draw(_weights())))
                d = dout
                continue
            heads = draw(st.sampled_from([h_ for h_ in (1, 2) if d % h_ == 0]))
            args = dict(residual=draw(st.booleans()))
            if args["residual"] and scaled:
                feats.add("add_unequal_scales")
            if op == "ssa":
                args.update(heads=heads, scale=draw(st.sampled_from([0.125, 0.25, 1.0, 0.3])), order=draw(st.sampled_from(["qk", "kv"])))
            else:
                args.update(pair=draw(st.sampled_from(["kv", "qk"])))
            blocks.append(Block(op, args, neuron=draw(neurons()), neuron2=draw(neurons()), weights=draw(_weights())))
            scaled = scaled and args["residual"]
    head = dict(pool=draw(st.sampled_from(["mean", "flatten"])), linear=draw(st.booleans()), classes=draw(st.integers(2, 4)),
                neuron=None, time_mean=False, weights=draw(_weights()))
    head["neuron"] = draw(st.none() | neurons()) if head["linear"] else None
    head["time_mean"] = draw(st.booleans())
    spec = NetSpec(T=T, static=static, in_shape=(C, H, W), encoder=encoder, blocks=blocks, head=head,
                   seed=draw(st.integers(0, 2 ** 16)))
    spec.features = tuple(sorted(feats | _features(spec)))
    return spec


def _features(spec: NetSpec) -> set[str]:
    """KNOWN_DEFECTS features visible in the finished spec (the add-scale one is found while drawing)."""
    out = set()
    ns = [spec.encoder, spec.head.get("neuron")] + [n for b in spec.blocks for n in (b.neuron, b.neuron2)]
    if any(n is not None and n.kind != "IF" and n.decay_input and n.v_reset not in (0.0, None) for n in ns):
        out.add("decay_input_hard_reset")
    if any(b.op == "sub" for b in spec.blocks):
        out.add("spike_difference")
    if any(b.op == "pool" and b.args["kind"] == "max" and b.args["ceil"] for b in spec.blocks):
        out.add("nir_maxpool_ceil")
    if any(b.op == "conv" and b.args.get("pool") == "max" for b in spec.blocks) and not spec.head["linear"]:
        out.add("nir_real_maxpool_output_shape")
    if spec.head["linear"] and spec.head["neuron"] is None and spec.head.get("weights") == "huge":
        out.add("nir_output_abs_tolerance")
    if any(b.weights in ("nan", "inf") for b in spec.blocks) or spec.head.get("weights") in ("nan", "inf"):
        out.add("nonfinite_weights")
    return out


def neuron_count(spec: NetSpec) -> int:
    """A rough size (for choosing the Lava subset): features of the input times blocks."""
    C, H, W = spec.in_shape
    return C * H * W * (1 + len(spec.blocks))


@dataclass
class Case:
    spec: NetSpec
    model: nn.Module
    input_shape: tuple
    time_steps: Optional[int]
    x: np.ndarray
    input_range: tuple
    calib: Optional[np.ndarray]
    lava: bool  # run Lava on this case (a subset: Lava is slow)
    data: str  # how x was drawn


def _data(rng: np.random.Generator, shape, lo, hi, how: str) -> np.ndarray:
    if how == "uniform":
        x = rng.uniform(lo, hi, shape)
    elif how == "saturated":
        x = np.where(rng.random(shape) < 0.5, lo, hi)
    elif how == "max":
        x = np.full(shape, hi)
    else:  # beyond the range (the integer input clips)
        x = rng.uniform(lo - (hi - lo), hi + (hi - lo), shape)
    return x.astype(np.float32)


@st.composite
def cases(draw, max_T: int = 32, lava_every: int = 4) -> Case:
    spec = draw(net_specs(max_T=max_T))
    model = build_model(spec)
    B = draw(st.sampled_from([2, 3]))
    lo, hi = draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 4.0)]))
    how = draw(st.sampled_from(["uniform", "uniform", "saturated", "max", "beyond"]))
    rng = np.random.default_rng(spec.seed)
    lead = (B,) if spec.static else (spec.T, B)
    x = _data(rng, lead + tuple(spec.in_shape), lo, hi, how)
    calib = None
    if draw(st.integers(0, 3)) == 0:
        calib = _data(rng, ((4,) if spec.static else (spec.T, 4)) + tuple(spec.in_shape), lo, hi, "uniform")
    lava = draw(st.integers(0, lava_every - 1)) == 0 and spec.T <= 8 and neuron_count(spec) <= 200
    return Case(spec, model, tuple(spec.in_shape), None if spec.static else spec.T, x, (lo, hi), calib, lava, how)
