"""Comparing two runs neuron layer by neuron layer: spike agreement, and every flipped spike with
the margin of the reference membrane to the threshold (a flip at margin ~1e-7 is float
re-association on a spike that sat on the threshold; a flip at margin 0.3 is a bug).

:func:`spike_agreement` is the one per-layer measure ``spikec verify`` uses for every column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from spikec import ir
from spikec.runtime.float_interpreter import RunResult, run_float


@dataclass
class Flip:
    layer: str
    index: tuple[int, ...]  # (t, b, *features)
    reference: int  # spike in the reference run (0/1)
    margin: float  # reference H - threshold at that position (H >= threshold fires)


@dataclass
class LayerAgreement:
    layer: str
    source: str
    positions: int
    equal: int
    first_divergence: Optional[tuple[int, ...]] = None  # (t, b, *features) of the earliest flip

    @property
    def agreement(self) -> float:
        return self.equal / self.positions if self.positions else 1.0


@dataclass
class Comparison:
    layers: list[LayerAgreement]
    flips: list[Flip] = field(default_factory=list)
    output_max_rel: float = 0.0
    output_max_abs: float = 0.0

    @property
    def positions(self) -> int:
        return sum(l.positions for l in self.layers)

    @property
    def agreement(self) -> float:
        p = self.positions
        return sum(l.equal for l in self.layers) / p if p else 1.0

    def lines(self, max_flips: int = 10) -> list[str]:
        out = [f"spike agreement {self.agreement:.6%} over {self.positions} positions; "
               f"outputs max |diff| {self.output_max_abs:.3g} (rel {self.output_max_rel:.3g})"]
        for l in self.layers:
            if l.equal != l.positions:
                out.append(f"  {l.layer}: {l.positions - l.equal} flips, first at (t, b, ...) = {l.first_divergence}")
        for f in self.flips[:max_flips]:
            out.append(f"  flip {f.layer}{list(f.index)}: reference spike {f.reference}, margin {f.margin:+.3g}")
        if len(self.flips) > max_flips:
            out.append(f"  ... {len(self.flips) - max_flips} more flips")
        return out


def compare_runs(ref_graph: ir.Graph, ref: RunResult, new_graph: ir.Graph, new: RunResult,
                 max_flips: int = 1000) -> Comparison:
    """Compare neuron layers present (by name) in both graphs."""
    layers, flips = [], []
    for n in ref_graph.nodes:
        if not isinstance(n, ir.NeuronNode) or n.name not in new_graph or n.name not in new.values:
            continue
        a, b = ref.values[n.name], new.values[n.name]
        diff = a != b
        count = int(diff.sum())
        first = None
        if count:
            idx = torch.nonzero(diff)
            order = torch.argsort(idx[:, 0], stable=True)
            first = tuple(int(i) for i in idx[order[0]])
            h = ref.membranes.get(n.name)
            th = np.broadcast_to(np.asarray(n.v_threshold, dtype=np.float64), tuple(a.shape[2:]))
            for row in idx[:max(0, max_flips - len(flips))]:
                t = tuple(int(i) for i in row)
                margin = float(h[t]) - float(th[t[2:]]) if h is not None else float("nan")
                flips.append(Flip(n.name, t, int(a[t]), margin))
        layers.append(LayerAgreement(n.name, n.source, a.numel(), a.numel() - count, first))
    ya, yb = ref.outputs[0], new.outputs[0]
    abs_diff = float((ya - yb).abs().max()) if ya.numel() else 0.0
    rel = abs_diff / max(float(ya.abs().max()), 1e-12)
    return Comparison(layers, flips, rel, abs_diff)


def compare_graphs(ref_graph: ir.Graph, new_graph: ir.Graph, x) -> Comparison:
    """Run both graphs in the float interpreter on ``x`` and compare them."""
    return compare_runs(ref_graph, run_float(ref_graph, x, record=True), new_graph, run_float(new_graph, x, record=True))


@dataclass
class Agreement:
    """Equal spikes of two runs of one layer, as counts: what adds up exactly over sample shards."""

    equal: int
    positions: int
    first: Optional[tuple[int, int]] = None  # (time step, sample) of the earliest difference

    @property
    def fraction(self) -> float:
        return self.equal / self.positions if self.positions else 1.0

    def __add__(self, other: "Agreement") -> "Agreement":
        """Both counts added; the earlier first difference (samples numbered over the whole data)."""
        firsts = [f for f in (self.first, other.first) if f is not None]
        return Agreement(self.equal + other.equal, self.positions + other.positions, min(firsts) if firsts else None)


def agreement_counts(reference: torch.Tensor, other, sample_offset: int = 0) -> Agreement:
    """Equal spikes of ``other`` (reshaped to ``reference``'s shape: a target may flatten features)
    and ``reference`` [T, B, ...]; the first difference is the earliest time step, then the lowest
    sample, numbered from ``sample_offset``."""
    other = torch.as_tensor(other).reshape(reference.shape).to(reference.dtype)
    diff = reference != other
    count = int(diff.sum())
    first = None
    if count:
        t, b = torch.nonzero(diff.reshape(diff.shape[0], diff.shape[1], -1).any(-1))[0]  # row-major: earliest t, then b
        first = (int(t), int(b) + sample_offset)
    return Agreement(diff.numel() - count, diff.numel(), first)


def spike_agreement(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, Optional[tuple[int, int]]]:
    """Fraction of equal spikes and the first (time step, sample) where they differ (None if none).
    ``other`` is reshaped to ``reference``'s shape (a target may flatten features)."""
    a = agreement_counts(reference, other)
    return a.fraction, a.first


@dataclass
class FlipJudgement:
    """Teacher-forced flips of one layer judged against its error bound
    (:mod:`spikec.verification.bounds`)."""

    flips: int  # every position where the teacher-forced integer spikes differ from the float ones
    judged: int  # first flips of a neuron in a sample (later ones follow from its own diverged reset)
    unexplained: int  # judged flips with |H − θ| > the bound: not rounding, a bug
    positions: list[tuple[int, ...]] = field(default_factory=list)  # the first few unexplained (t, b, *features)
    worst_margin: float = 0.0  # largest |H − θ| / θ among the judged flips


@dataclass
class FirstFlips:
    """The teacher-forced flips of one layer before they are judged: how many, and each neuron's
    first flip in a sample with the float membrane's distance to θ there.  Shards of samples
    concatenate exactly (:meth:`__add__`); judging needs the layer's bound, known only once the
    whole data has been seen (it depends on the largest membrane observed)."""

    flips: int
    features: tuple[int, ...]  # the layer's feature shape
    index: np.ndarray  # [n, 2 + len(features)] int64: (t, b, *features) of each first flip, b over the whole data
    margin: np.ndarray  # [n] float64: |H − θ| there

    def __add__(self, other: "FirstFlips") -> "FirstFlips":
        return FirstFlips(self.flips + other.flips, self.features, np.concatenate([self.index, other.index]),
                          np.concatenate([self.margin, other.margin]))


def first_flips(reference: torch.Tensor, local, membrane: torch.Tensor, theta: float, sample_offset: int = 0) -> FirstFlips:
    """The flips of ``local`` (the integer layer's own spikes computed from the float inputs) against
    ``reference`` (the float spikes [T, B, *f]), and the margin ``|H − θ|`` of the float pre-spike
    membrane ``membrane`` at each neuron's first flip in a sample (samples numbered from ``sample_offset``)."""
    local = torch.as_tensor(local).reshape(reference.shape).to(reference.dtype)
    diff = reference != local
    count = int(diff.sum())
    first = diff & (torch.cumsum(diff.to(torch.int32), 0) == 1)
    idx = torch.nonzero(first)
    margin = (membrane.double()[first] - theta).abs() if count else torch.zeros(0, dtype=torch.float64)
    index = idx.numpy().astype(np.int64)
    index[:, 1] += sample_offset
    return FirstFlips(count, tuple(reference.shape[2:]), index, margin.numpy())


def judge(flips: FirstFlips, theta: float, bound, keep: int = 5) -> FlipJudgement:
    """Judge first flips against the flip bound ``bound`` in real units (per feature or scalar): a
    flip is unexplained when ``|H − θ| > bound`` there.  The first ``keep`` unexplained positions
    are the earliest in (t, b, *features) order."""
    if not flips.flips:
        return FlipJudgement(0, 0, 0)
    idx, margin = flips.index, flips.margin
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), flips.features)
    bad = margin > b[tuple(idx[:, 2:].T)]
    worst = float(margin.max()) / abs(theta) if theta else float("inf")
    shown = idx[bad][np.lexsort(idx[bad].T[::-1])][:keep]
    return FlipJudgement(flips.flips, len(idx), int(bad.sum()), [tuple(int(i) for i in r) for r in shown], worst)


def judge_flips(reference: torch.Tensor, local, membrane: torch.Tensor, theta: float, bound,
                keep: int = 5) -> FlipJudgement:
    """Judge the flips of a teacher-forced layer: ``reference`` the float spikes [T, B, *f],
    ``local`` the integer layer's own spikes computed from the float inputs, ``membrane`` the float
    pre-spike H, ``bound`` the flip bound in real units (per feature or scalar).  A neuron's first
    flip in a sample is unexplained when ``|H − θ| > bound`` there (:func:`first_flips`, :func:`judge`)."""
    return judge(first_flips(reference, local, membrane, theta), theta, bound, keep)
