"""Golden per-layer integer tensors (lava-dl netx style), checked by the integer executor.

``tests/golden/<family>/`` holds, per family, a quantized graph, two inputs and the expected
per-layer ``u`` / ``v`` / spikes of every Loihi neuron layer plus the integer outputs (written by
``tests/golden/make_golden.py``).  (a) The saved graph, run by intref, must reproduce them exactly:
this pins the integer executor.  (b) The family compiled afresh from its model must reproduce the
golden spikes and outputs exactly: this pins the whole pipeline (trace, passes, quantization,
executor); when a change alters it on purpose, regenerate the family's golden data.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spikec import ir
from spikec.targets.intref.executor import run_int

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mg = _make_golden()
FAMILIES = list(mg.CONFIGS)


def _golden(family: str):
    d = GOLDEN / family
    meta = json.loads((d / "meta.json").read_text())
    with np.load(d / "expected.npz", allow_pickle=False) as z:
        expected = {k: z[k] for k in z.files}
    return meta, np.load(d / "inputs.npy"), expected


def _compare(family: str, meta: dict, expected: dict, graph: ir.Graph, x, keys=("spikes", "v", "u"),
             hint: str = "") -> None:
    assert mg.neuron_layers(graph) == meta["layers"], f"{family}: neuron layers differ from the golden ones{hint}"
    r = run_int(graph, x, record=True)
    steps = meta["steps"]
    for name in meta["layers"]:
        v, u = r.membranes[name]
        got = {"spikes": r.values[name], "v": v, "u": u}
        for key in keys:
            a, b = got[key][:steps].numpy(), expected[f"{name}::{key}"]
            assert a.shape == b.shape and np.array_equal(a, b), (
                f"{family}: layer {name}: {key} differs from the golden array in "
                f"{int((a != b).sum()) if a.shape == b.shape else 'shape'} places{hint}")
    assert len(r.outputs) == meta["outputs"], f"{family}: number of outputs{hint}"
    for i, o in enumerate(r.outputs):
        assert np.array_equal(o.numpy(), expected[f"output{i}"]), f"{family}: output {i} differs{hint}"


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_graph_reproduces_golden_u_v_spikes(family):
    meta, x, expected = _golden(family)
    graph = ir.load(GOLDEN / family / "ir")
    _compare(family, meta, expected, graph, x)


@pytest.mark.parametrize("family", FAMILIES)
def test_fresh_compile_reproduces_golden(family):
    meta, x, expected = _golden(family)
    hint = "\n" + mg.REGENERATE.format(family=family)
    assert {k: meta[k] for k in mg.config(family)} == mg.config(family), f"{family}: configuration changed{hint}"
    graph, fresh_x = mg.compile_family(family)
    assert np.array_equal(fresh_x.numpy(), x), f"{family}: the model inputs changed{hint}"
    _compare(family, meta, expected, graph, x, keys=("spikes",), hint=hint)
