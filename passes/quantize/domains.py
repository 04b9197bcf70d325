"""Scale domains: which values share one fixed-point scale Δ, and the Δ chosen for each.

Exact values (spikes, counts, the quantized input, and what sums / pools / constant scalings make
of them) have fixed scales.  A synapse output and every value derived from it by sums / reshapes /
slices / pools / pads / scalings ("domain ops") up to the next neuron share a scale up to known
factors: a union-find with relative factors (Δ_v = Δ_root · r_v).

Scales are positive; a signed constant keeps its sign in the integers.  A scaling by c (c·x, or
x / c) gives Δ_out = Δ_in·|c| (Δ_in / |c|) with the same integer q_out = q_in when c > 0 and
q_out = −q_in (an integer negation) when c < 0: q_out·Δ_out = c·q_in·Δ_in, exactly.  Per-channel
factors have no single Δ and are refused.

A sum of two exact values with scales a and b takes their common unit Δ = a / P = b / Q, where
a / b = P / Q in lowest terms (:func:`common_unit`), and each operand is multiplied by its integer
(q·P, q·Q: exact).  E.g. spikes (Δ = 1) plus an average pool of spikes over 3×3 (a count, Δ = 1/9)
sum at Δ = 1/9, the spikes times 9.  Refused (naming the module) when a / b is not within 1e-13 of a
ratio of integers whose reduced mantissa's denominator is at most :data:`MAX_UNIT_DENOMINATOR`
(e.g. a factor sqrt(0.5) on one path): then no integer form adds them.

A domain's Δ is a power of two times its *unit*: 1, or the common unit of the exact values added
into it (:meth:`Scales.unit`), so that each of them enters by an integer multiple and a shift
(:func:`integer_multiple`: Δ_exact / Δ = m·2^k, m odd).  The power of two is the smallest that keeps
every neuron the domain feeds within the headroom: |a| <= 2^16 (so u = a << 6 stays within 2^22),
|v| <= 2^22 (half of the 24-bit state) and the biases within ``4095 << 7``; domains that only reach
host outputs get 30 bits.  With worst-case bounds, a domain whose neurons' thresholds that scale
realises more than 1 % off gets half of it where the bounds fit the full state range
(:data:`THRESHOLD_TOLERANCE`).

Exactness: negations, integer multiples and left shifts are exact integer operations (int64 in
intref and ONNX; Lava folds them into connection weights and exponents); an exact value entering a
coarser domain (k < 0) is floored, an error below one unit of the domain (the verification bounds
count it).  The scales are floats: Δ = 1/9 is exact up to its float rounding, as every Δ.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional

import numpy as np

from spikec import ir, loihi
from spikec.errors import UnsupportedError

from .bounds import membrane_bound, reduced_count
from .kernels import MATERIALISED_OPS, PRODUCT_OPS, fit_shift, input_budget
from .kernels import output_scale as kernel_output_scale

# operations that keep one scale between synapse outputs and their neuron ("domain" ops)
DOMAIN_OPS = (ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode, ir.MaxPoolNode, ir.AvgPoolNode,
              ir.PadNode, ir.ScaleNode, ir.RepeatTimeNode, ir.ConcatNode, ir.TimeToFeaturesNode, ir.FeaturesToTimeNode,
              ir.DelayNode)
V_BITS = loihi.STATE_BITS - 2  # |v| <= 2^22: half of the 24-bit state range
A_BITS = V_BITS - loihi.CURRENT_SHIFT  # |a| <= 2^16: u = a << 6 within 2^22
# a neuron whose threshold the half range would realise more than this far off (relative; it is
# represented from below in steps of 64 membrane units = one current unit) gets twice as fine a scale
# where its worst-case bounds fit the state's full range with FULL_RANGE_MARGIN to spare (v saturates
# beyond 2^23 − 1, u wraps at 2^23; the margin covers weight rounding and floors, which the bounds of
# the float model do not), and only with worst-case bounds: calibrated ones are percentiles, which
# the half range's headroom protects
THRESHOLD_TOLERANCE = 0.01
FULL_RANGE_MARGIN = 1 / 8
OUT_BITS = 30  # host-side outputs: int32 with headroom
# the largest odd denominator a ratio of two scales may have to count as a ratio of integers: pool
# windows, token counts, 255 / 127 input levels; a float close to a ratio with a larger denominator
# is not taken for one (the ratio must match within 1e-13, float rounding of products of scales)
MAX_UNIT_DENOMINATOR = 1 << 16
# how a value of fixed scale gets it: ("scale", Δ) given; ("scaled", input, factor) Δ_input · factor;
# ("sum", add / concat node) the common unit of its operands'; ("materialised", node) from the node's inputs
FixedRule = tuple


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


def as_fraction(x: float) -> Optional[tuple[int, int]]:
    """``x > 0`` as ``P / Q`` in lowest terms (Python ints), if it is one whose denominator's odd
    part is at most :data:`MAX_UNIT_DENOMINATOR` (powers of two are exact in floats, any size)."""
    if not (x > 0 and math.isfinite(x)):
        return None
    mant, e = math.frexp(x)  # x = mant · 2^e, mant in [0.5, 1)
    r = Fraction(mant).limit_denominator(MAX_UNIT_DENOMINATOR)
    if not math.isclose(float(r), mant, rel_tol=1e-13):
        return None
    r *= Fraction(2) ** e
    return r.numerator, r.denominator


def threshold_error(consumers, delta: float) -> float:
    """The largest relative error of the thresholds of ``consumers`` ((neuron, ratio, ...) of a
    domain) as Loihi realises them at the domain's Δ: the first spiking membrane
    ``(64·vth + 1)·Δv``, Δv = Δ·ratio / 64, against θ (:mod:`.neurons`)."""
    worst = 0.0
    for n, r, *_ in consumers:
        theta = float(n.v_threshold)
        if theta > 0:
            dv = delta * r / float(1 << loihi.CURRENT_SHIFT)
            worst = max(worst, (theta - loihi.first_spiking_v(loihi.vth_at_most(theta / dv)) * dv) / theta)
    return worst


def common_unit(a: float, b: float) -> Optional[float]:
    """The largest Δ of which both scales ``a`` and ``b`` are integer multiples (Δ = a / P = b / Q with
    a / b = P / Q in lowest terms), or None if a / b is not such a ratio."""
    pq = as_fraction(a / b)
    return None if pq is None else a / pq[0]


def integer_multiple(ratio: float) -> Optional[tuple[int, int]]:
    """``(m, k)`` with ``ratio = m · 2^k``, m a positive odd integer: how a value in units Δ reaches
    units Δ / ratio (times m, then shifted by k; exact for k >= 0, a floor for k < 0), or None if
    ratio has an odd denominator (no integer form)."""
    pq = as_fraction(ratio)
    if pq is None:
        return None
    p, q = pq
    if q & (q - 1):
        return None
    k = (p & -p).bit_length() - 1  # trailing zero bits of p
    return p >> k, k - (q.bit_length() - 1)


def signed_factor(n: ir.ScaleNode, graph: Optional[ir.Graph] = None) -> float:
    """The number a scale node multiplies by (``factor``, or ``1 / factor`` for a division); refused
    for per-channel factors (an array of different values: no single scale Δ) and for zero."""
    f = np.asarray(n.factor, dtype=np.float64)
    if f.size > 1 and not np.all(f == f.flat[0]):
        raise UnsupportedError(f"quantize: {describe(n, graph)} multiplies by a per-channel factor, which has no "
                               "single fixed-point scale on integer targets; multiply it into the weights of a conv / "
                               "linear layer next to it instead")
    c = float(f.flat[0])
    if c == 0 or not math.isfinite(c):
        raise UnsupportedError(f"quantize: {describe(n, graph)} multiplies by {c:g}, which has no fixed-point scale; "
                               "remove the scaling")
    return c if n.mode == "mul" else 1.0 / c


def describe(n: ir.Node, graph: Optional[ir.Graph] = None) -> str:
    """The operation ``n`` named by the user's module paths: its own module, or (a top-level
    operation, with no module) the modules whose outputs it reads."""
    what = {ir.AddNode: "the sum", ir.ScaleNode: "the scaling", ir.LayerNormNode: "the layer norm"}.get(
        type(n), f"the {getattr(n, 'function', n.op)}")
    if n.source or graph is None:
        return f"{what} in module '{n.source}'" if n.source else what
    mods = []
    for i in n.inputs:
        m = _nearest_module(graph, i)
        if m and m not in mods:
            mods.append(m)
    return f"{what} of the outputs of module(s) {', '.join(repr(m) for m in mods)}" if mods else what


def _nearest_module(graph: ir.Graph, value: str) -> str:
    """The module path of the nearest producer of ``value`` (itself or upstream) that has one."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop(0)
        if v in seen:
            continue
        seen.add(v)
        n = graph.producer(v)
        if n.source:
            return n.source
        stack.extend(n.inputs)
    return ""


def assign_domains(graph: ir.Graph, x_scale: float) -> tuple[dict[str, FixedRule], Domains, list[tuple[str, str]]]:
    """The rules of the fixed scales (exact values, and what the materialised operations produce),
    the domains of synapse-derived values, and the *anchors*: per sum of a domain value and a value
    of fixed scale, (the sum, that operand)."""
    types = graph.types
    fixed: dict[str, FixedRule] = {}
    dom = Domains()
    anchors: list[tuple[str, str]] = []
    for n in graph.nodes:
        t = types[n.name]
        if isinstance(n, ir.InputNode):
            fixed[n.name] = ("scale", x_scale)
            continue
        if isinstance(n, (ir.ConvNode, ir.LinearNode)):
            dom.add(n.name)
            continue
        if isinstance(n, MATERIALISED_OPS):  # its scale follows from its inputs' (Scales.fixed_scale)
            fixed[n.name] = ("materialised", n)
            continue
        if isinstance(n, ir.AddConstantNode):  # x + c: in x's domain, or a domain of its own anchored at x
            x = n.inputs[0]
            if x in dom:
                dom.add(n.name, x, 1.0)
            else:
                dom.add(n.name)
                anchors.append((n.name, x))
            continue
        if t.kind is not ir.Kind.REAL and not isinstance(n, DOMAIN_OPS):
            fixed[n.name] = ("scale", 1.0)
            continue
        if isinstance(n, ir.OutputNode):
            continue
        if not isinstance(n, DOMAIN_OPS):
            raise UnsupportedError(f"quantize: {describe(n, graph)} has no integer form here")
        ratio = 1.0
        if isinstance(n, ir.ReduceNode) and n.reduce == "mean":
            ratio = 1.0 / reduced_count(graph, n)
        elif isinstance(n, ir.AvgPoolNode):
            if n.divisor_override not in (None, 1) or (any(n.padding) and not n.count_include_pad) or n.ceil_mode:
                raise UnsupportedError(f"quantize: {describe(n, graph)} averages over a count that depends on the "
                                       "position or is overridden (count_include_pad=False, ceil_mode=True or "
                                       "divisor_override); integer targets need one divisor per pool: use "
                                       "count_include_pad=True and ceil_mode=False")
            ratio = 1.0 / (n.divisor_override or int(np.prod(n.kernel)))
        elif isinstance(n, ir.ScaleNode):
            ratio = abs(signed_factor(n, graph))  # the sign is an integer negation (module docstring)
        var_ins = [i for i in n.inputs if i in dom]
        if not var_ins:  # a value computed exactly from integers (e.g. mean / avg-pool of spikes)
            # a sum: the common unit of its operands' scales, each multiplied by its integer at emission
            fixed[n.name] = ("sum", n) if isinstance(n, (ir.AddNode, ir.ConcatNode)) else ("scaled", n.inputs[0], ratio)
            continue
        dom.add(n.name, var_ins[0], ratio)
        anchors += [(n.name, i) for i in n.inputs if i not in dom]
        for other in var_ins[1:]:
            if not dom.union(var_ins[0], other):
                raise UnsupportedError(f"quantize: {describe(n, graph)} adds values whose fixed-point scales cannot "
                                       "agree on integer targets (one value reaches it by two paths with different "
                                       "constant factors)")
    return fixed, dom, anchors


def no_common_unit(graph: ir.Graph, n: ir.Node, a: float, b: float) -> str:
    """The refusal of a sum of exact values whose scales ``a``, ``b`` have no common integer unit."""
    return (f"quantize: {describe(n, graph)} adds values of fixed-point scales {a:.6g} and {b:.6g}, whose ratio is "
            "not a ratio of integers, so integer targets cannot add them exactly; make the constant factors on the "
            "two paths differ by a ratio of small integers (e.g. 0.75 rather than sqrt(0.5)), or add before scaling")


class Scales:
    """The scale Δ of every value: fixed, or its domain's Δ times its factor.

    ``needs``: per domain root (or ("neuron", name) for a neuron reading a value of fixed scale), the
    neurons it feeds as (neuron, factor relative to the root, bound on |X|, bound on |V|);
    ``kernel_needs``: per domain root, the inputs of materialised operations (and of synapses reading
    a real value with no neuron between) it holds as (value, factor relative to the root, bound).
    Scales are resolved on demand (:meth:`fixed_scale`, :meth:`root_delta`): a materialised value's
    scale follows from its inputs' scales, and a domain's Δ from its unit, which may come from such a
    value added into it."""

    def __init__(self, graph: ir.Graph, x_scale: float, bound: dict[str, float], membrane_bounds: dict[str, float],
                 worst_case: bool = True):
        self.graph = graph
        self.worst_case = worst_case  # bounds are worst-case (not calibrated): the full state range may serve a threshold
        self.full_range: set = set()  # the domain roots (or neuron keys) given it
        self.bound = bound
        self.fixed, self.dom, self.anchors = assign_domains(graph, x_scale)
        self.neuron_in: dict[str, str] = {}
        self.needs: dict = {}
        self.kernel_needs: dict = {}
        types = graph.types
        for n in graph.nodes:
            if isinstance(n, ir.NeuronNode):
                x = n.inputs[0]
                self.neuron_in[n.name] = x
                xb = bound.get(x, 0.0)
                vb = membrane_bound(n, types[x].time, xb, membrane_bounds)
                root, r = self.dom.find(x) if x in self.dom else (("neuron", n.name), 1.0)
                self.needs.setdefault(root, []).append((n, r, xb, vb))
            elif isinstance(n, MATERIALISED_OPS + (ir.ConvNode, ir.LinearNode)):  # a synapse may read a real value too
                for x in n.inputs:
                    if x in self.dom:
                        root, r = self.dom.find(x)
                        self.kernel_needs.setdefault(root, []).append((x, r, bound.get(x, 0.0)))
        self.delta_root: dict = {}
        self._fixed_scale: dict[str, float] = {}
        self._resolving: set = set()
        self._x0: dict[str, np.ndarray] = {}

    def fixed_scale(self, v: str) -> float:
        """The scale of a value of fixed scale: exact values', or a materialised operation's output
        (:mod:`.kernels`), resolved from its inputs' scales."""
        if v in self._fixed_scale:
            return self._fixed_scale[v]
        if v in self._resolving:
            raise UnsupportedError(f"quantize: {describe(self.graph[v], self.graph)} is added back into the value it "
                                   "reads, and its output scale follows its input's (ReLU, GELU, a product): no "
                                   "fixed-point scale holds both; put a conv / linear layer between its output and that sum")
        self._resolving.add(v)
        rule = self.fixed[v]
        if rule[0] == "scale":
            s = rule[1]
        elif rule[0] == "scaled":
            s = self.delta(rule[1]) * rule[2]
        elif rule[0] == "sum":  # (or a concatenation): the common unit of all operands
            n = rule[1]
            s = self.delta(n.inputs[0])
            for i in n.inputs[1:]:
                a, b = s, self.delta(i)
                s = common_unit(a, b)
                if s is None:
                    raise UnsupportedError(no_common_unit(self.graph, n, a, b))
        else:
            s = self._materialised_scale(rule[1])
        self._resolving.discard(v)
        self._fixed_scale[v] = s
        return s

    def _materialised_scale(self, n: ir.Node) -> float:
        if isinstance(n, PRODUCT_OPS):
            natural = self.delta(n.inputs[0]) * self.delta(n.inputs[1])
            return natural * 2.0 ** fit_shift(self.bound.get(n.name, 0.0), natural)
        return kernel_output_scale(n, lambda: self.kernel_input_scale(n.inputs[0]), self.bound.get(n.name, 0.0))

    def kernel_input_scale(self, v: str) -> float:
        """The scale at which a kernel reads ``v``: a domain value's own (chosen to fit REAL_BITS), or a
        value of fixed scale shifted right until its bound fits REAL_BITS (:func:`.kernels.fit_shift`)."""
        d = self.delta(v)
        return d if v in self.dom else d * 2.0 ** fit_shift(self.bound.get(v, 0.0), d)

    def unit(self, root: str) -> float:
        """The unit of a domain: its Δ is a power of two times it.  1, or the common unit of the
        values of fixed scale added into the domain (each relative to the root), so that each of them
        enters by an integer multiple and a shift."""
        unit = None
        for v, operand in self.anchors:
            r_root, r = self.dom.find(v)
            if r_root != root:
                continue
            anchor = self.fixed_scale(operand) / r
            u = anchor if unit is None else common_unit(unit, anchor)
            if u is None:
                raise UnsupportedError(no_common_unit(self.graph, self.graph[v], unit, anchor))
            unit = u
        return 1.0 if unit is None else unit

    def choose(self, x0: dict[str, np.ndarray]) -> None:
        """Δ of every domain (:meth:`root_delta`); ``x0``: each neuron's constant input current (real units)."""
        self._x0 = x0
        for key in list(self.needs) + list(self.kernel_needs):
            self.root_delta(key)
        for v in list(self.dom.parent):
            self.root_delta(self.dom.find(v)[0])

    def root_delta(self, key) -> float:
        """Δ of a domain root (or of a ("neuron", name) key): its unit times the smallest power of two
        that keeps every neuron it feeds within the headroom (module docstring) and every
        materialised operation it feeds within REAL_BITS; a domain that only reaches host outputs
        gets OUT_BITS."""
        if key in self.delta_root:
            return self.delta_root[key]
        cons, kcons = self.needs.get(key, []), self.kernel_needs.get(key, [])
        lower = lower_full = 0.0  # the smallest Δ with the half state range, and with the full one
        for n, r, xb, vb in cons:
            x0 = self._x0[n.name]
            bmax = float(np.abs(x0).max()) if x0.size else 0.0
            unit = float(1 << loihi.CURRENT_SHIFT)  # Δv = Δa / 64
            bias_min = unit * bmax / (loihi.BIAS_MANT_MAX * 2 ** loihi.BIAS_EXP_MAX)
            lower = max(lower, max(xb / 2 ** A_BITS, unit * vb / 2 ** V_BITS, bias_min, 1e-30) / r)
            spare = 1 + FULL_RANGE_MARGIN
            full = max(spare * xb / 2 ** (A_BITS + 1), spare * unit * vb / 2 ** (V_BITS + 1), bias_min, 1e-30)
            lower_full = max(lower_full, full / r)
        for _, r, xb in kcons:
            lower = max(lower, input_budget(xb) / r)
            lower_full = max(lower_full, input_budget(xb) / r)  # a materialised reader's budget has no spare range
        if isinstance(key, tuple):  # a neuron reading a value of fixed scale: a power-of-two multiple of it
            base = self.fixed_scale(self.neuron_in[key[1]])
        else:
            base = self.unit(key)
        if not cons and not kcons:  # host-output domains
            members = [u for u in self.dom.parent if self.dom.find(u)[0] == key]
            peak = max((self.bound.get(u, 0.0) / self.dom.find(u)[1] for u in members), default=1.0)
            lower = max(peak, 1e-30) / 2 ** OUT_BITS
        delta = base * pow2_ceil(lower / base)
        if (self.worst_case and cons and delta / 2 >= lower_full * (1 - 1e-12)
                and threshold_error(cons, delta) > THRESHOLD_TOLERANCE
                and threshold_error(cons, delta / 2) < threshold_error(cons, delta)):
            delta /= 2  # the full state range, for a threshold closer to its value
            self.full_range.add(key)
        self.delta_root[key] = delta
        return delta

    def delta(self, v: str) -> float:
        if v in self.fixed:
            return self.fixed_scale(v)
        root, r = self.dom.find(v)
        return self.root_delta(root) * r

    def neuron_key(self, n) -> tuple:
        """(needs key, Δa) of the neuron ``n``: its input current's units."""
        x = n.inputs[0]
        if x in self.dom:
            root, r = self.dom.find(x)
            return root, self.root_delta(root) * r
        key = ("neuron", n.name)
        return key, self.root_delta(key) * 1.0

    def feeds_neurons(self, v: str) -> bool:
        return self.dom.find(v)[0] in self.needs

    def materialised(self, v: str) -> bool:
        """Is the domain of ``v`` also read as a materialised integer (by a kernel, a product or a
        synapse)?  Its synapses and pads then keep their biases and pad values as integers: a reader
        of the integers must see them, so they cannot move into the neurons' biases."""
        return v in self.dom and self.dom.find(v)[0] in self.kernel_needs

    def explicit_constants(self) -> frozenset:
        """The synapses and pads of :meth:`materialised` domains: their biases and pad values stay in the
        integer graph instead of moving into the neurons' biases."""
        return frozenset(n.name for n in self.graph.nodes
                         if isinstance(n, (ir.ConvNode, ir.LinearNode, ir.PadNode)) and self.materialised(n.name))
