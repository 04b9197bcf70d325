"""Scale domains: which values share one fixed-point scale Δ, and the Δ chosen for each.

Exact values (spikes, counts, the quantized input) have fixed scales.  A synapse output and every
value derived from it by sums / reshapes / slices / pools / pads / scalings ("domain ops") up to
the next neuron share a scale up to known factors: a union-find with relative factors
(Δ_v = Δ_root · r_v).  A domain's Δ is the smallest power of two that keeps every neuron it feeds
within the headroom: |a| <= 2^16 (so u = a << 6 stays within 2^22), |v| <= 2^22 (half of the 24-bit
state) and the biases within ``4095 << 7``; domains that only reach host outputs get 30 bits.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from spikec import ir, loihi
from spikec.errors import UnsupportedError

from ..base import where
from .bounds import membrane_bound, reduced_count

# operations that keep one scale between synapse outputs and their neuron ("domain" ops)
DOMAIN_OPS = (ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode, ir.MaxPoolNode, ir.AvgPoolNode,
              ir.PadNode, ir.ScaleNode, ir.RepeatTimeNode)
V_BITS = loihi.STATE_BITS - 2  # |v| <= 2^22: half of the 24-bit state range
A_BITS = V_BITS - loihi.CURRENT_SHIFT  # |a| <= 2^16: u = a << 6 within 2^22
OUT_BITS = 30  # host-side outputs: int32 with headroom


class Domains:
    """Union-find with relative factors: Δ_v = Δ_root · r_v."""

    def __init__(self):
        self.parent: dict[str, str] = {}
        self.ratio: dict[str, float] = {}

    def add(self, v: str, parent: Optional[str] = None, ratio: float = 1.0):
        if parent is None:
            self.parent[v], self.ratio[v] = v, 1.0
        else:
            root, r = self.find(parent)
            self.parent[v], self.ratio[v] = root, r * ratio

    def __contains__(self, v):
        return v in self.parent

    def find(self, v: str) -> tuple[str, float]:
        r = 1.0
        while self.parent[v] != v:
            r *= self.ratio[v]
            v = self.parent[v]
        return v, r

    def union(self, a: str, b: str) -> bool:
        """Require Δ_a = Δ_b; False if that contradicts earlier constraints."""
        ra, fa = self.find(a)
        rb, fb = self.find(b)
        if ra == rb:
            return math.isclose(fa, fb, rel_tol=1e-12)
        # Δ_rb · fb = Δ_ra · fa  →  Δ_rb = Δ_ra · fa / fb
        self.parent[rb], self.ratio[rb] = ra, fa / fb
        return True


def pow2_ceil(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


def log2_exact(x: float) -> Optional[int]:
    if x <= 0:
        return None
    k = round(math.log2(x))
    return k if math.isclose(2.0 ** k, x, rel_tol=1e-12) else None


def assign_domains(graph: ir.Graph, x_scale: float) -> tuple[dict[str, float], Domains]:
    """Fixed scales of exact values and the domains of synapse-derived values."""
    types = graph.types
    fixed: dict[str, float] = {}
    dom = Domains()
    for n in graph.nodes:
        t = types[n.name]
        if isinstance(n, ir.InputNode):
            fixed[n.name] = x_scale
            continue
        if isinstance(n, (ir.ConvNode, ir.LinearNode)):
            dom.add(n.name)
            continue
        if t.kind is not ir.Kind.REAL and not isinstance(n, DOMAIN_OPS):
            fixed[n.name] = 1.0
            continue
        if isinstance(n, ir.OutputNode):
            continue
        if not isinstance(n, DOMAIN_OPS):
            raise UnsupportedError(f"quantize: {n.op} {where(n)} has no integer form here")
        ratio = 1.0
        if isinstance(n, ir.ReduceNode) and n.reduce == "mean":
            ratio = 1.0 / reduced_count(graph, n)
        elif isinstance(n, ir.AvgPoolNode):
            if n.divisor_override not in (None, 1) or (any(n.padding) and not n.count_include_pad) or n.ceil_mode:
                raise UnsupportedError(f"quantize: average pool {where(n)} with a position-dependent divisor")
            ratio = 1.0 / (n.divisor_override or int(np.prod(n.kernel)))
        elif isinstance(n, ir.ScaleNode):
            if isinstance(n.factor, np.ndarray) or float(n.factor) <= 0:
                raise UnsupportedError(f"quantize: scale {where(n)} by a non-positive or per-channel factor")
            ratio = float(n.factor) if n.mode == "mul" else 1.0 / float(n.factor)
        var_ins = [i for i in n.inputs if i in dom]
        if not var_ins:  # a value computed exactly from integers (e.g. mean / avg-pool of spikes)
            f = [fixed[i] for i in n.inputs]
            if isinstance(n, ir.AddNode) and not math.isclose(f[0], f[1], rel_tol=1e-12):
                fixed[n.name] = min(f)  # the coarser operand is shifted (power-of-two ratio checked at emission)
            else:
                fixed[n.name] = f[0] * ratio
            continue
        dom.add(n.name, var_ins[0], ratio)
        for other in var_ins[1:]:
            if not dom.union(var_ins[0], other):
                raise UnsupportedError(f"quantize: {where(n)} adds values whose scales cannot agree")
    return fixed, dom


class Scales:
    """The scale Δ of every value: fixed, or its domain's Δ times its factor.

    ``needs``: per domain root (or ("neuron", name) for a neuron reading an exact value), the
    neurons it feeds as (neuron, factor relative to the root, bound on |X|, bound on |V|)."""

    def __init__(self, graph: ir.Graph, x_scale: float, bound: dict[str, float], membrane_bounds: dict[str, float]):
        self.bound = bound
        self.fixed, self.dom = assign_domains(graph, x_scale)
        self.neuron_in: dict[str, str] = {}
        self.needs: dict = {}
        types = graph.types
        for n in graph.nodes:
            if isinstance(n, ir.NeuronNode):
                x = n.inputs[0]
                self.neuron_in[n.name] = x
                xb = bound.get(x, 0.0)
                vb = membrane_bound(n, types[x].time, xb, membrane_bounds)
                root, r = self.dom.find(x) if x in self.dom else (("neuron", n.name), 1.0)
                self.needs.setdefault(root, []).append((n, r, xb, vb))
        self.delta_root: dict = {}

    def choose(self, x0: dict[str, np.ndarray]) -> None:
        """Δ per domain: the smallest power of two within the headroom (module docstring); ``x0``:
        each neuron's constant input current (real units)."""
        dom = self.dom
        for key, cons in self.needs.items():
            lower = 0.0
            for n, r, xb, vb in cons:
                bmax = float(np.abs(x0[n.name]).max()) if x0[n.name].size else 0.0
                unit = float(1 << loihi.CURRENT_SHIFT)  # Δv = Δa / 64
                da_min = max(xb / 2 ** A_BITS, unit * vb / 2 ** V_BITS,
                             unit * bmax / (loihi.BIAS_MANT_MAX * 2 ** loihi.BIAS_EXP_MAX), 1e-30)
                lower = max(lower, da_min / r)
            if isinstance(key, tuple):  # a neuron reading an exact value directly: a power-of-two multiple of its scale
                base = self.fixed[self.neuron_in[key[1]]]
                self.delta_root[key] = base * pow2_ceil(lower / base)
            else:
                self.delta_root[key] = pow2_ceil(lower)
        for v in list(dom.parent):
            root, _ = dom.find(v)
            if root not in self.delta_root:  # host-output domains
                members = [u for u in dom.parent if dom.find(u)[0] == root]
                peak = max((self.bound.get(u, 0.0) / dom.find(u)[1] for u in members), default=1.0)
                self.delta_root[root] = pow2_ceil(max(peak, 1e-30) / 2 ** OUT_BITS)

    def delta(self, v: str) -> float:
        if v in self.fixed:
            return self.fixed[v]
        root, r = self.dom.find(v)
        return self.delta_root[root] * r

    def neuron_key(self, n) -> tuple:
        """(needs key, Δa) of the neuron ``n``: its input current's units."""
        x = n.inputs[0]
        if x in self.dom:
            root, r = self.dom.find(x)
            return root, self.delta_root[root] * r
        key = ("neuron", n.name)
        return key, self.delta_root[key] * 1.0

    def feeds_neurons(self, v: str) -> bool:
        return self.dom.find(v)[0] in self.needs
