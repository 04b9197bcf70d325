"""Random-graph findings kept as regression tests (tests/fuzz/test_random_graphs.py found them)."""

import numpy as np
from strategies import Block, NetSpec, NeuronSpec, _data, build_model  # noqa: F401  (the spec's names)

import spikec

# F8 (1,000-case run, seed 2026): calibrated on 4 samples, 3 inputs drive blocks.1.lif (a depthwise conv with
# weights x1e3 into an IF neuron) beyond the range its 24-bit membrane holds at the calibrated scale; the
# integer layer saturates.  verify called one teacher-forced flip there "unexplained" and warned nothing.
F8 = ("NetSpec(T=2, static=False, in_shape=(2, 5, 6), encoder=NeuronSpec(kind='IF', tau=2.0, v_threshold=1.6723333727"
      "15874, v_reset=0.0, decay_input=True), blocks=[Block(op='res_real', args={'cout': 2, 'k': 3, 'stride': 1, 'dep"
      "thwise': False, 'bias': False, 'bn': False, 'pool': None, 'two_convs': False}, neuron=NeuronSpec(kind='LIF', t"
      "au=2.0, v_threshold=0.9883929609265044, v_reset=0.3, decay_input=False), neuron2=None, weights='normal'), Bloc"
      "k(op='sub', args={'cout': 2, 'k': 3, 'stride': 1, 'depthwise': True, 'bias': True, 'bn': True, 'pool': None, '"
      "two_convs': False}, neuron=NeuronSpec(kind='IF', tau=1.5, v_threshold=0.5, v_reset=-0.25, decay_input=True), n"
      "euron2=None, weights='huge'), Block(op='pool', args={'kind': 'avg', 'k': 2, 's': 2, 'p': 0, 'ceil': False}, ne"
      "uron=None, neuron2=None, weights='normal')], head={'pool': 'mean', 'linear': False, 'classes': 2, 'neuron': No"
      "ne, 'time_mean': True, 'weights': 'inf'}, seed=8869, features=('nonfinite_weights', 'spike_difference'))")


def test_data_beyond_the_calibrated_range_is_named_not_called_a_bug():
    spec = eval(F8)
    model = build_model(spec)
    rng = np.random.default_rng(spec.seed)
    x = _data(rng, (spec.T, 3) + tuple(spec.in_shape), -1.0, 1.0, "uniform")
    calib = _data(rng, (spec.T, 4) + tuple(spec.in_shape), -1.0, 1.0, "uniform")
    rep = spikec.verify(model, "intref", x, input_shape=spec.in_shape, time_steps=spec.T, input_range=(-1.0, 1.0),
                        calib=calib)
    layer = {r.layer: r for r in rep.layers}["blocks.1.lif"]
    assert layer.out_of_range is not None and layer.out_of_range > 1 and layer.unexplained_flips is None
    assert not rep.unexplained_layers
    assert any(w.startswith("blocks.1.lif: these inputs drive its membrane") and "--calib" in w for w in rep.warnings)
    # calibrated with these inputs too: within range, every flip judged, none unexplained
    rep = spikec.verify(model, "intref", x, input_shape=spec.in_shape, time_steps=spec.T, input_range=(-1.0, 1.0),
                        calib=np.concatenate([calib, x], axis=1))
    layer = {r.layer: r for r in rep.layers}["blocks.1.lif"]
    assert layer.out_of_range is None and layer.unexplained_flips == 0
