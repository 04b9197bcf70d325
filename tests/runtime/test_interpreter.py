"""Float IR interpreter == source model: identical spike trains, outputs to 1e-5."""

import pytest
import torch
from conftest import neuron_outputs

from spikec.runtime.float_interpreter import run_float

FAMILIES = ["sj_spikformer", "sj_sdt", "spikformer_digits", "neuron_variants", "meta_spikformer"]


@pytest.mark.parametrize("family", FAMILIES)
def test_interpreter_matches_torch_model(zoo_models, family):
    model, x, graph = zoo_models[family]
    y, spikes = neuron_outputs(model, x)
    r = run_float(graph, x, record=True)
    neurons = [n for n in graph.nodes if n.op == "neuron"]
    assert len(neurons) == len(spikes), "one IR neuron node per neuron module"
    fired = 0
    for n in neurons:
        ours, theirs = r.values[n.name], spikes[n.source]
        assert torch.equal(ours, theirs.reshape(ours.shape)), f"spikes differ at {n.source}"
        fired += int(theirs.sum() > 0)
    assert fired >= len(neurons) - 1, "test models must actually fire (else spike equality is vacuous)"
    assert r.outputs[0].shape == y.shape
    torch.testing.assert_close(r.outputs[0], y, rtol=0, atol=1e-5)


def test_interpreter_other_batch_sizes(zoo_models):
    model, x, graph = zoo_models["sj_sdt"]
    for b in (1, 7):
        xb = x[:b] if b <= x.shape[0] else torch.cat([x, x])[:b]
        y, _ = neuron_outputs(model, xb)
        torch.testing.assert_close(run_float(graph, xb).outputs[0], y, rtol=0, atol=1e-5)


def test_wrong_input_shape_says_expected_vs_got(zoo_models):
    from spikec.errors import ShapeError

    _, x, graph = zoo_models["sj_sdt"]
    with pytest.raises(ShapeError, match=r"input has shape \[4, 1, 16, 16\], the model expects \[B, 3, 16, 16\]"):
        run_float(graph, torch.zeros(4, 1, 16, 16))
