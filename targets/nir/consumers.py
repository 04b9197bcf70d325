"""Other NIR readers ("consumers"): which NIR nodes each one reads as NIR means them, how a spikec
file is loaded and run in it, and how its spikes compare with spikec's float IR.

A consumer profile is a set of facts about one pinned release, read from its importer's source and
checked by running it (``tests/targets/nir/test_interop.py``):

* ``reads``: the node types its importer maps;
* ``misreads(node, graph)``: a reason when it maps a node but computes something else than NIR's
  definition (a parameter it ignores or asserts on, a different neuron model), else None;
* ``load(graph)`` / ``run``: the consumer's own import and its own step loop;
* ``encode``: neurons that its import computes exactly only in another, equally NIR-conforming form
  than spikec's default, written in that form by ``export_nir(..., consumer=NAME)``.

:func:`unreadable` lists what a consumer cannot read (type not mapped, or misread), grouped by reason,
with the nodes' source modules; ``spikec compile --target nir --consumer NAME`` refuses with it
(:func:`refuse_unreadable`).  :func:`compare_with_float` runs a file in a consumer and compares its
per-layer spikes and outputs with the float IR, as ``spikec verify --target nir --consumer NAME`` does.

How each consumer deviates from the NIR specification is written next to its profile (the
"upstream reports" of the README section "NIR in other simulators").
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from spikec.errors import SpikecError, UnsupportedError

from .export import DT

Reason = Optional[str]


def _uniform(a) -> bool:
    return np.unique(np.asarray(a)).size <= 1


def _value(a) -> float:
    return float(np.asarray(a).reshape(-1)[0])


def _dt(graph) -> float:
    v = (graph.metadata or {}).get("dt")
    return json.loads(v) if isinstance(v, str) else (float(v) if v is not None else float("nan"))


# --- snnTorch 1.0.0 (snntorch/import_nir.py) -----------------------------------------------------------
# LIF -> snn.Leaky(beta = 1 - 1e-4 / tau, threshold = v_threshold / (r * 1e-4 / tau)): forward Euler with a
# fixed dt = 1e-4 s and the membrane rescaled by r*dt/tau (only when that is not allclose to 1: spikes
# unchanged); mem = beta * mem + x in float32 (beta from numpy float32: tau is float32), fires at mem > θ,
# then mem - spike * mem (reset to zero).  Its reset bookkeeping (a "reset" flag from the previous step's
# membrane) keeps the membrane after a spike when θ < 0.
# Deviations: dt fixed at 1e-4 (no argument); asserts v_leak == 0; ignores v_reset (always zero);
# IF -> snn.Leaky(beta=0.9) (a leak that NIR's IF does not have) and asserts r == 1; no Threshold, Scale,
# SumPool2d, Conv1d or nested graph (other than its own LIF <-> Affine recurrence) mapping.
# Exact for spikec's float IR: LIF with hard reset to 0: beta * v equals the IR's v - v/τ for τ a power of two
# (both one rounding of v(1 - 1/τ)).  IF with hard reset to 0: written (with --consumer snntorch) as a NIR LIF
# without leak (:func:`_snntorch_encode`): beta rounds to exactly 1.0, so mem = mem + x, the IR's IF.
IF_AS_LIF_TAU = 1e4  # s: dt / tau = 1e-8 < 2**-25, so 1 - dt/tau is 1.0 in float32 (and v - v*dt/tau is v)


def _snntorch_misreads(node, graph) -> Reason:
    kind = type(node).__name__
    if kind == "IF":
        return "IF (read as leaky, beta 0.9; asserts r = 1)"
    if kind == "LIF":
        if not np.allclose(node.v_leak, 0.0) or not np.allclose(node.v_reset, 0.0):
            return "LIF (v_leak / v_reset != 0: asserts v_leak = 0, resets to 0)"
        if not (_uniform(node.v_threshold) and _uniform(node.tau) and _uniform(node.r)):
            return "LIF (per-neuron threshold, tau or r)"
        if not np.isclose(_dt(graph), 1e-4, rtol=1e-9, atol=0):
            return "LIF (dt != 1e-4 s, which it assumes)"
        if np.any(np.asarray(node.v_threshold) < 0):
            return "LIF (v_threshold < 0: keeps the membrane after a spike)"
    return None


def _snntorch_encode(nir, n, th: np.ndarray, shape) -> Optional[tuple[object, str]]:
    """IF with hard reset to 0 as the NIR LIF tau = IF_AS_LIF_TAU, r = tau/dt, v_leak = v_reset = 0: NIR's
    ``tau dv/dt = (v_leak - v) + r I`` is then dv = x - 1e-8·v per step, a leak below half an ulp of
    float32; snnTorch computes beta = 1 - dt/tau = 1.0 exactly and r·dt/tau = 1 (no rescaling):
    mem = 1.0·mem + x, spikes at mem > θ', reset to 0: the IR's IF."""
    if n.model != "IF" or n.v_reset != 0.0 or n.v_init != 0.0:
        return None
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    node = nir.LIF(tau=full(IF_AS_LIF_TAU), r=full(IF_AS_LIF_TAU / DT), v_leak=full(0.0), v_threshold=th,
                   v_reset=full(0.0))
    node.metadata = {"spikec_model": json.dumps("IF")}
    return node, (f"IF as a NIR LIF without leak for snnTorch (tau = {IF_AS_LIF_TAU:g} s, r = tau/dt: "
                  "beta = 1.0 in float32)")


def _snntorch_load(graph):
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its rescaling notes
        return import_from_nir(graph)


# --- Norse 1.1.0 (norse/torch/utils/import_nir.py) ------------------------------------------------------
# LIF -> LIFBoxCell: v += (dt * (1/tau)) * ((x + v_leak) - v) in float32, z = [v - θ > 0], then v = (1 - z) v + z·0;
# the membrane starts at v_leak; dt is from_nir's argument (default 1e-3: pass the graph's dt).
# IF -> IAFCell: v += x (dt and r ignored), z = [v - θ > 0], reset to 0.
# Deviations: r ignored (only a warning; NIR's r scales the input); v_reset ignored (always 0); IF ignores
# dt and r (equal to NIR only for r = 1/dt); SumPool2d padding ignored; nodes it does not map (Scale,
# Threshold, AvgPool2d, Conv1d, nested graphs' contents) load as None without an error, and nirtorch's
# legacy executor (nirtorch.load) then fails at the first step with a KeyError naming the node.
# Exact for spikec's float IR: IF with hard reset to 0 (r = 1/dt).  LIF: its update multiplies the input by
# dt/tau, so it cannot round as spikec's IR LIF (h = (v - v/τ) + x, input not decayed, r = τ; e.g. τ = 2,
# v = 0.22949655, x = -0.85949588: -0.74474758 vs its -0.74474764 with the input pre-scaled by τ); with
# --consumer norse a LIF with hard reset to 0 and τ a power of two is written in the input-decayed form
# (:func:`_norse_encode`: r = 1, θ/τ), which Norse computes exactly as spikingjelly's own LIF
# (v + (x - v)/τ); it agrees with spikec's IR up to the IR's reassociation (1 ulp of the membrane in some
# steps; a spike differs only for a membrane within that ulp of the threshold).
def _norse_misreads(node, graph) -> Reason:
    kind = type(node).__name__
    if kind == "LIF":
        if not np.allclose(node.r, 1.0):
            return "LIF (r != 1: r ignored)"
        if not np.allclose(node.v_reset, 0.0):
            return "LIF (v_reset != 0 ignored)"
    if kind == "IF":
        if not np.allclose(np.asarray(node.r, np.float64) * _dt(graph), 1.0):
            return "IF (r * dt != 1: both ignored)"
        if not np.allclose(node.v_reset, 0.0):
            return "IF (v_reset != 0 ignored)"
    if kind == "SumPool2d" and np.any(np.asarray(node.padding) != 0):
        return "SumPool2d (padding ignored)"
    return None


def _norse_leak(tau_nir: np.float32) -> float:
    """The factor Norse's LIFBoxCell multiplies ((x + v_leak) - v) by: dt * (1 / tau) in float32 torch."""
    return float(DT * (1 / torch.as_tensor(np.asarray([tau_nir], np.float32))))


def _norse_encode(nir, n, th: np.ndarray, shape) -> Optional[tuple[object, str]]:
    """A LIF with hard reset to 0 whose input is not decayed (spikec's IR form, r = τ) and τ = 2^k steps,
    as the equivalent input-decayed NIR LIF r = 1, v_threshold θ'/τ (the membrane is the IR's divided
    by τ: exact for a power of two), tau = τ·dt where Norse's dt·(1/tau) is exactly 1/τ."""
    if n.model != "LIF" or n.decay_input or n.leak_rate is not None or n.v_reset != 0.0 or n.v_init != 0.0:
        return None
    tau = float(n.tau)
    tau_nir = np.float32(tau * DT)
    if tau < 1.0 or np.frexp(tau)[0] != 0.5 or _norse_leak(tau_nir) != 1.0 / tau:
        return None
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    node = nir.LIF(tau=full(tau_nir), r=full(1.0), v_leak=full(0.0), v_threshold=(th / np.float32(tau)).astype(np.float32),
                   v_reset=full(0.0))
    node.metadata = {"spikec_leak_rate": json.dumps(None), "spikec_decay_input": json.dumps(False),
                     "spikec_tau": json.dumps(tau)}
    return node, f"LIF written input-decayed for Norse (r = 1, threshold / {tau:g}: its membrane is the IR's / {tau:g})"


def _norse_load(graph):
    import norse.torch as norse

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "r is expected to be 1" warnings (refused before we get here)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return norse.from_nir(graph, dt=_dt(graph))
    finally:
        root.setLevel(level)


# --- Rockpool 3.1.0 (rockpool/nn/modules/torch/nir.py) --------------------------------------------------
# Deviations: LIF is read through attributes NIR's LIF does not have (node.tau_mem, AttributeError: only
# CubaLIF and LI load); dt is derived as min(tau / (1 + r)); no IF, Conv, Flatten, pooling, Scale or
# Threshold; nested graphs only as a 4-node recurrent CubaLIF.
def _rockpool_misreads(node, graph) -> Reason:
    if type(node).__name__ == "LIF":
        return "LIF (reads LIF.tau_mem: AttributeError)"
    return None


def _rockpool_load(graph):
    from rockpool.nn.modules import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_nir(graph)


# --- Sinabs 3.1.3 (sinabs/nir.py) -------------------------------------------------------------------------
# IF -> IAFSqueeze(spike_threshold=θ, min_v_mem=-θ): several spikes per step (floor(v/θ)) at v >= θ,
# reset by subtraction, membrane clipped at -θ.  LIF -> LIFSqueeze(tau_mem=tau): tau in time steps
# (dt = 1) with exact exponential decay exp(-1/tau), the same multi-spike subtractive reset.
# Deviations: neither neuron follows NIR's (single spike at v > θ, reset to v_reset); the LIF test
# `any(node.v_leak) != 0` fails on multi-dimensional layers (ValueError); from_nir needs batch_size or
# num_timesteps (Squeeze layers take [B*T, ...]); nodes it does not map (Scale, Threshold, AvgPool2d,
# nested graphs' contents) load as None and fail at the first step (KeyError), as in Norse.
def _sinabs_misreads(node, graph) -> Reason:
    kind = type(node).__name__
    if kind == "IF":
        return "IF (multi-spike, subtractive reset)"
    if kind == "LIF":
        return "LIF (tau in steps, multi-spike, subtractive reset)"
    if kind == "Conv1d":
        return "Conv1d (torch calls on numpy weights)"
    return None


def _sinabs_load(graph, batch: int):
    import sinabs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sinabs.from_nir(graph, batch_size=batch)


@dataclass(frozen=True)
class Consumer:
    name: str
    requirement: str  # what pip installs (pyproject's `interop` extra)
    module: str  # import name
    reads: frozenset
    misreads: Callable
    layout: str  # "step": called per step on [B, ...]; "batch-time": once on [B*T, ...] (sinabs' Squeeze layers)
    loader: Callable
    encode: Optional[Callable] = None  # (nir, IR neuron, NIR threshold, shape) -> (node, note): a consumer-specific form

    def load(self, graph, batch: int = 1):
        return self.loader(graph, batch) if self.layout == "batch-time" else self.loader(graph)


CONSUMERS: dict[str, Consumer] = {
    "snntorch": Consumer("snntorch", "snntorch==1.0.0", "snntorch",
                         frozenset({"Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "AvgPool2d", "IF", "LIF",
                                    "CubaLIF"}), _snntorch_misreads, "step", _snntorch_load, _snntorch_encode),
    "norse": Consumer("norse", "norse==1.1.0", "norse",
                      frozenset({"Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "IF", "LIF", "CubaLIF",
                                 "SumPool2d"}), _norse_misreads, "step", _norse_load, _norse_encode),
    "rockpool": Consumer("rockpool", "rockpool==3.1.0", "rockpool",
                         frozenset({"Input", "Output", "Affine", "Linear", "LI", "LIF", "CubaLIF"}), _rockpool_misreads, "step",
                         _rockpool_load),
    "sinabs": Consumer("sinabs", "sinabs==3.1.3", "sinabs",
                       frozenset({"Input", "Output", "Affine", "Conv1d", "Conv2d", "LI", "IF", "LIF", "SumPool2d", "Flatten"}),
                       _sinabs_misreads, "batch-time", _sinabs_load),
}


def get(name: str) -> Consumer:
    if name not in CONSUMERS:
        raise SpikecError(f"unknown NIR consumer {name!r}; consumers: {', '.join(CONSUMERS)}")
    return CONSUMERS[name]


def encode_neuron(consumer: Optional[str], nir, n, th: np.ndarray, shape) -> Optional[tuple[object, str]]:
    """The NIR node (and a note) in which ``consumer``'s import reads the IR neuron ``n`` exactly, when
    it needs another (equally NIR-conforming) form than spikec's default; None: the default form."""
    c = get(consumer) if consumer is not None else None
    return c.encode(nir, n, th, shape) if c is not None and c.encode is not None else None


def _walk(graph, prefix: str = ""):
    """(key, node) of every node, nested graphs' contents under ``outer.inner`` keys."""
    for key, node in graph.nodes.items():
        yield prefix + key, node
        if type(node).__name__ == "NIRGraph":
            yield from _walk(node, f"{prefix}{key}.")


def unreadable(graph, consumer: str) -> dict[str, list[str]]:
    """What ``consumer`` cannot read in ``graph``: reason -> NIR node keys (top-level key of a nested
    graph).  A nested graph counts as unreadable when the consumer reads no nested graphs of its form
    (none of spikec's: soft-reset circuits) or when any node inside it is unreadable."""
    c = get(consumer)
    out: dict[str, list[str]] = {}
    for key, node in graph.nodes.items():
        kind = type(node).__name__
        if kind == "NIRGraph":
            spec = json.loads((node.metadata or {}).get("spikec_neuron", "null") or "null")
            reason = f"soft-reset {spec['model']} (nested graph: no mapping)" if spec else "nested graph (no mapping)"
        elif kind not in c.reads:
            reason = f"{kind} (no mapping)"
        else:
            reason = c.misreads(node, graph)
        if reason:
            out.setdefault(reason, []).append(key)
    return out


def describe(graph, consumer: str, origins: Optional[dict] = None, sources: Optional[dict] = None,
             limit: int = 3) -> str:
    """One line naming what ``consumer`` cannot read, with the source modules ('' when all is readable)."""
    bad = unreadable(graph, consumer)
    if not bad:
        return ""
    origins, sources = origins or {}, sources or {}
    parts = []
    for reason, keys in bad.items():
        mods = []
        for k in keys:
            ir_name = origins.get(k)
            mod = sources.get(ir_name, "") if ir_name else ""
            where = f"{k} (module '{mod}')" if mod else k
            if where not in mods:
                mods.append(where)
        more = f" and {len(mods) - limit} more" if len(mods) > limit else ""
        parts.append(f"{reason} at {', '.join(mods[:limit])}{more}")
    c = get(consumer)
    return f"nir: {c.requirement} cannot read this graph as NIR means it: " + "; ".join(parts)


def refuse_unreadable(graph, consumer: str, origins: Optional[dict] = None, sources: Optional[dict] = None) -> None:
    msg = describe(graph, consumer, origins, sources)
    if msg:
        raise UnsupportedError(msg + f" (export without --consumer {consumer} to write the file anyway)")


# --- running a file in a consumer -------------------------------------------------------------------------

def _spikes(out):
    return (out[0] if isinstance(out, tuple) else out).detach().clone()


def run_consumer(graph, consumer: str, steps: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``graph`` in ``consumer`` (its own import, its own modules) on ``steps`` [T, B, *features];
    returns its per-step outputs [T, B, ...] and every top-level node's per-step output by NIR key."""
    c = get(consumer)
    T, B = steps.shape[:2]
    module = c.load(graph, B)
    names = {k.replace(".", "_"): k for k in graph.nodes}
    recorded: dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=names[n]: recorded.setdefault(k, []).append(_spikes(o)))
             for n, m in module.named_children() if n in names]
    try:
        with torch.no_grad():
            if c.layout == "batch-time":  # [B*T, ...], batch-major, one call
                y = _spikes(module(steps.transpose(0, 1).reshape(B * T, *steps.shape[2:])))
                fix = lambda v: v.reshape(B, T, *v.shape[1:]).transpose(0, 1)  # noqa: E731
                return fix(y), {k: fix(v[0]) for k, v in recorded.items()}
            outs, state = [], None
            for x in steps:
                out = module(x) if state is None else module(x, state)
                y, state = out if isinstance(out, tuple) else (out, None)
                outs.append(_spikes(y))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(outs), {k: torch.stack(v) for k, v in recorded.items()}


def compare_with_float(float_graph, nir_path, x, consumer: str, refuse: bool = True) -> dict:
    """Run the file in ``consumer`` and compare with the float IR (per-step semantics, readout moved
    behind the classifier as in the export): per-layer spike agreement and outputs (max |diff| and
    the tolerance it is judged by, :func:`.verify.output_tolerance`).  ``refuse``:
    raise (naming what it cannot read) instead of running a graph the consumer misreads."""
    import nir

    from spikec.runtime.float_interpreter import run_float

    from .export import _readout
    from .verify import apply_readout, output_tolerance

    g, readout = _readout(float_graph)
    rf = run_float(g, x, record=True)
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    T = max(g.types[n.name].time for n in g.nodes)
    steps = xs.unsqueeze(0).expand(T, *xs.shape) if g.inputs[0].layout == "static" else xs
    back = nir.read(str(nir_path))
    bad = describe(back, consumer)
    if bad and refuse:
        raise UnsupportedError(bad)
    neurons = json.loads(back.metadata["neurons"])
    y, rec = run_consumer(back, consumer, steps)
    layers = {}
    for n in g.nodes:
        if n.op == "neuron" and neurons.get(n.name) in rec:
            a = rf.values[n.name]
            layers[n.name] = float((a == rec[neurons[n.name]].reshape(a.shape)).float().mean())
    yf = rf.outputs[0]
    y = y.reshape(yf.shape)
    diff = float((y - yf).abs().max()) if yf.numel() else 0.0
    out = apply_readout(y, readout or "per step")
    return {"consumer": get(consumer).requirement, "layers": layers,
            "spikes_identical": all(v == 1.0 for v in layers.values()), "output_max_abs_diff": diff,
            "output_tolerance": output_tolerance(yf), "readout": readout or "per step", "outputs": out.numpy()}


__all__ = ["CONSUMERS", "Consumer", "DT", "IF_AS_LIF_TAU", "compare_with_float", "describe", "encode_neuron", "get",
           "refuse_unreadable", "run_consumer", "unreadable"]
