"""Golden per-layer integer tensors (lava-dl netx style), checked by the Lava run.

Each family's saved quantized graph (``tests/golden/<family>/ir``, written by
``tests/golden/make_golden.py``) is built as a Lava process network and run in Lava's CPU simulator
(``Loihi2SimCfg`` fixed_pt) on the saved inputs; the spikes of every Loihi neuron layer and the
integer outputs must equal the golden arrays exactly.  Lava exposes the stages' outputs (spikes),
not the neurons' ``u`` / ``v``: those are checked against intref in
``tests/targets/intref/test_golden_intref.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spikec import ir
from spikec.targets.lava import build_netspec
from spikec.targets.lava.runner import run_lava

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def _families() -> list[str]:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CONFIGS)


@pytest.mark.parametrize("family", _families())
def test_lava_reproduces_golden_spikes_and_outputs(family):
    d = GOLDEN / family
    meta = json.loads((d / "meta.json").read_text())
    with np.load(d / "expected.npz", allow_pickle=False) as z:
        expected = {k: z[k] for k in z.files}
    graph = ir.load(d / "ir")
    lr = run_lava(build_netspec(graph), np.load(d / "inputs.npy"))
    steps = meta["steps"]
    for name in meta["layers"]:
        assert name in lr.values, f"{family}: Lava does not expose neuron layer {name}"
        a, b = lr.values[name][:steps].numpy(), expected[f"{name}::spikes"]
        assert a.shape == b.shape and np.array_equal(a, b), (
            f"{family}: layer {name}: Lava's spikes differ from the golden ones in "
            f"{int((a != b).sum()) if a.shape == b.shape else 'shape'} places")
    assert len(lr.outputs) == meta["outputs"]
    for i, o in enumerate(lr.outputs):
        assert np.array_equal(o.numpy(), expected[f"output{i}"]), f"{family}: Lava's output {i} differs"
