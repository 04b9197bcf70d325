"""An intref run frees every value after its last user: its memory is the graph's widest cut (plus the
neuron layers' spikes it reports), not every node's value.  ``Artifact.run`` / ``run_all`` once
recorded every node value and every neuron layer's membranes until the run ended: one sample of the
7-block Spikeformer DVS-Gesture model then peaked at 10.7 GB (1.2 GB freeing them)."""

import weakref

import numpy as np
import pytest
import torch

import spikec
from spikec import ir
from spikec.targets.intref import executor as E
from spikec.targets.intref.target import neuron_sources


def _compiled(depths: int):
    from examples.models import zoo

    model, x = zoo.build("spikeformer", depths=depths, batch=2)
    return spikec.compile(model, "intref", input_shape=zoo.input_shape_of("spikeformer")), x


def _live_at_output(artifact, x, monkeypatch) -> tuple[int, int, object]:
    """(values computed by the kernel table, those still alive when the output node runs, run_all's output)."""
    made, live = [], []

    def tracking(kernel):
        def k(n, *ins):
            if isinstance(n, ir.OutputNode):
                live.append(sum(r() is not None for r in made))
            v = kernel(n, *ins)
            made.append(weakref.ref(v))
            return v
        return k

    for t, kernel in list(E.INT_KERNELS.items()):
        monkeypatch.setitem(E.INT_KERNELS, t, tracking(kernel))
    out = artifact.run_all(x)
    monkeypatch.undo()
    return len(made), live[0], out


@pytest.mark.parametrize("depths", [1, 3])
def test_run_frees_values_after_their_last_user(depths, monkeypatch):
    c, x = _compiled(depths)
    made, live, out = _live_at_output(c, x, monkeypatch)
    assert made > 50 * depths
    # at the output node only its own input chain is alive (recording kept all `made`)
    assert live <= 4, f"{live} of {made} values still alive at the output ({depths} blocks)"
    # the run still reports every neuron layer's spikes, and only them (no membranes, no other values)
    layers = neuron_sources(c.graph)
    assert set(out.layers) == set(layers) == set(out.values)
    ref = E.run_int(c.graph, x, record=True)  # the recorded run: the same integers everywhere
    for k in layers:
        assert np.array_equal(out.layers[k], ref.values[k].numpy()), k
    assert np.array_equal(out.outputs[0], ref.real_outputs()[0].numpy())
    assert np.array_equal(c.run(x), out.outputs[0])


def test_execute_keeps_only_the_named_values():
    c, x = _compiled(1)
    names = sorted(neuron_sources(c.graph))[:2]
    r = E.run_int(c.graph, x, keep=names)
    assert set(r.values) == set(names) and not r.membranes
    full = E.run_int(c.graph, x, record=True)
    assert all(torch.equal(r.values[k], full.values[k]) for k in names)
    assert torch.equal(r.outputs[0], full.outputs[0])
    lean = E.run_int(c.graph, x, record=True, membranes=False)  # every value, no membrane traces
    assert not lean.membranes and set(lean.values) == set(full.values)
    assert all(torch.equal(lean.values[k], v) for k, v in full.values.items())
