"""fold_sums_into_synapses: a sum over positions (tokens, pixels) of synapse outputs that only
neurons read becomes synapses of its own (integer targets).

    neuron( R( Σ_i W_i * s_i + b_i ) )  =  neuron( Σ_i W'_i · flat(s_i) + b' )

``R`` is the data movement and the sum (reshape / permute / reduce over features, residual adds);
``s_i`` are spike (or spike-count) values, read through a conv / linear ``W_i`` or directly;
``W'_i = R ∘ W_i`` is computed by pushing the identity through the float32 ops (so each entry is a
float32 sum of weights: the result moves by ~1 ulp relative) and ``b' = R(Σ b_i)``.

Why: in fixed point every value of a linear chain shares one scale.  A sum over N positions has N
times the range of its terms (e.g. spikingjelly SDT's token mean before its head neuron, merged
into a sum by merge_scale_into_threshold), so sharing a scale with the residual stream made every
layer of that stream coarse (weights rounded to zero at 64+ tokens).  As synapses of their own the
sum's weights get their own exponent.  Dense: ``n_out × n_in`` weights per source.

A max pool of real values in the tree (e.g. the end of the Spike-Driven Transformer's patch
embedding, the first term of its membrane-shortcut stream) is not linear and is kept as a term of
its own: the data movement on its (single, non-broadcasting) path to the sum is applied to it alone
(the sums on the path contribute the other terms, already folded), and the result is added to the
folded synapses: ``R(Σ_i W_i s_i + m) = Σ_i W'_i s_i + R(m)``.
"""

from __future__ import annotations

import numpy as np
import torch

from spikec import ir
from spikec.runtime.float_interpreter import FLOAT_KERNELS

from .base import NameSource, PassReport, PassResult, substitute, where

NAME = "fold_sums_into_synapses"
_MOVES = (ir.ReshapeNode, ir.PermuteNode, ir.ReduceNode, ir.AddNode)
_CHUNK = 2048  # identity columns pushed through at once


def _tree(graph: ir.Graph, value: str, leaves: dict, inner: list, kept: dict) -> str | None:
    """Collect the linear tree under ``value``: leaves (synapses over spikes, or spike values),
    kept leaves (max pools of real values) and inner data-movement nodes.  Returns a reason if the
    tree is not foldable."""
    n = graph.producer(value)
    kind = graph.types[value].kind
    if isinstance(n, (ir.ConvNode, ir.LinearNode)) and graph.types[n.inputs[0]].kind in (ir.Kind.SPIKE, ir.Kind.COUNT):
        leaves[value] = n
        return None
    if isinstance(n, ir.MaxPoolNode) and kind is ir.Kind.REAL:
        kept[value] = n  # materialised (not linear): a term of its own, moved to the sum by its own path
        return None
    if kind in (ir.Kind.SPIKE, ir.Kind.COUNT) and not isinstance(n, _MOVES):
        leaves[value] = None  # the spikes themselves
        return None
    if isinstance(n, _MOVES) and not (isinstance(n, ir.ReduceNode) and n.over_time):
        if n in inner:  # a shared subtree, already collected
            return None
        inner.append(n)
        for i in n.inputs:
            reason = _tree(graph, i, leaves, inner, kept)
            if reason:
                return reason
        return None
    return f"{value} ({n.op}) is not a synapse over spikes or data movement"


def _path(inner: list, root: str, leaf: str, types) -> tuple[list, str | None]:
    """The inner nodes from ``leaf`` up to ``root`` (leaf side first), or a reason: the leaf reaches
    the root by more than one path, or through a broadcasting sum."""
    by_name = {n.name: n for n in inner}
    paths: list[list] = []

    def walk(v: str, above: list) -> None:
        if v == leaf:
            paths.append(above)
            return
        n = by_name.get(v)
        if n is not None:
            for i in n.inputs:
                walk(i, [n] + above)

    walk(root, [])
    if len(paths) != 1:
        return [], f"the max pool {leaf} reaches the sum by {len(paths)} paths"
    for n in paths[0]:
        if isinstance(n, ir.AddNode) and any(types[i].features != types[n.name].features for i in n.inputs):
            return [], f"the max pool {leaf} reaches the sum through a broadcasting add {n.name}"
    return paths[0], None


def _evaluate(order: dict, inner: list, root: str, given: dict) -> torch.Tensor:
    """The tree's value at ``root`` with leaf values ``given`` ([1, B, *features] each)."""
    env = dict(given)
    for n in sorted(inner, key=lambda m: order[m.name]):
        env[n.name] = FLOAT_KERNELS[type(n)](n, *[env[i] for i in n.inputs])
    return env[root]


def fold_sums_into_synapses(graph: ir.Graph) -> PassResult:
    report = PassReport(NAME)
    names = NameSource(graph)
    types = graph.types
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    extra: dict[str, list[ir.Node]] = {}  # insert before this node name
    mapping: dict[str, str] = {}
    for r in graph.nodes:
        if not (isinstance(r, ir.ReduceNode) and not r.over_time and r.reduce in ("sum", "mean")):
            continue
        users = graph.users(r.name)
        if not users or not all(isinstance(u, ir.NeuronNode) for u in users):
            continue
        leaves: dict = {}
        kept: dict = {}
        inner: list = []
        reason = _tree(graph, r.inputs[0], leaves, inner, kept)
        inner.append(r)
        paths = {}
        for v in kept:
            if reason:
                break
            paths[v], reason = _path(inner, r.name, v, types)
        if reason:
            report.skip(where(r), reason)
            continue
        if not any(isinstance(n, ir.AddNode) for n in inner) and all(s is None for s in leaves.values()):
            report.skip(where(r), "a plain sum of spikes (exact integers: nothing to separate)")
            continue
        if not any(s is not None for s in leaves.values()):
            report.skip(where(r), "no synapse over spikes in the sum (nothing to fold)")
            continue
        t_r = types[r.name]
        n_out = t_r.numel
        zeros = {v: torch.zeros((1, 1, *types[v].features)) for v in (*leaves, *kept)}
        new: list[ir.Node] = []
        total = None
        for v, syn in leaves.items():
            src = syn.inputs[0] if syn is not None else v
            f_src = types[src].features
            n_in = int(np.prod(f_src))
            cols = []
            for c0 in range(0, n_in, _CHUNK):
                k = min(_CHUNK, n_in - c0)
                basis = torch.zeros((1, k, n_in))
                basis[0, torch.arange(k), c0 + torch.arange(k)] = 1.0
                basis = basis.reshape(1, k, *f_src)
                val = FLOAT_KERNELS[type(syn)](syn.replace(bias=None), basis) if syn is not None else basis
                cols.append(_evaluate(order, inner, r.name, {**zeros, v: val}).reshape(k, n_out))
            m = torch.cat(cols).T.contiguous().numpy().astype(np.float32)  # [n_out, n_in]
            flat = ir.ReshapeNode(names(f"{r.name}:flat"), (src,), r.source, features=(n_in,))
            lin = ir.LinearNode(names(f"{r.name}:fold"), (flat.name,), r.source, weight=m, bias=None)
            new += [flat, lin]
            if total is None:
                total = lin.name
            else:
                add = ir.AddNode(names(f"{r.name}:fold_sum"), (total, lin.name), r.source)
                new.append(add)
                total = add.name
        consts = {v: (FLOAT_KERNELS[type(s)](s, torch.zeros((1, 1, *types[s.inputs[0]].features)))
                      if s is not None else zeros[v]) for v, s in leaves.items()}
        consts.update({v: zeros[v] for v in kept})  # a max pool's constant part stays with it
        bias = _evaluate(order, inner, r.name, consts).reshape(n_out).numpy().astype(np.float32)
        first = next(n for n in new if isinstance(n, ir.LinearNode))
        new[new.index(first)] = first.replace(bias=bias if np.any(bias) else None)
        if t_r.features != (n_out,):
            shaped = ir.ReshapeNode(names(f"{r.name}:shape"), (total,), r.source, features=tuple(t_r.features))
            new.append(shaped)
            total = shaped.name
        for v, path in paths.items():  # each max pool: its own path of data movement to the sum, then added
            cur = v
            for op in path:
                if isinstance(op, ir.AddNode):
                    continue
                moved = op.replace(name=names(f"{op.name}:{v}"), inputs=(cur,))
                new.append(moved)
                cur = moved.name
            add = ir.AddNode(names(f"{r.name}:fold_sum"), (total, cur), r.source)
            new.append(add)
            total = add.name
        extra[r.name] = new
        mapping[r.name] = total
        report.did(where(r), f"sum of {len(leaves)} source(s) folded into {len(leaves)} synapse(s) of "
                             f"{n_out} outputs (its own fixed-point scale)"
                             + (f"; {len(kept)} max pool(s) kept, each moved to the sum on its own" if kept else ""))
    if not mapping:
        return PassResult(graph, report)
    nodes = []
    for n in graph.nodes:
        nodes += extra.get(n.name, [])
        nodes.append(n)
    return PassResult(graph.rewrite(substitute(nodes, mapping)), report)  # the old sums die in cleanup
