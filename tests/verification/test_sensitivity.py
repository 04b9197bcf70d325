"""verify --perturb: the float model's top-1 agreement with itself under a relative weight
perturbation, reported beside float vs integer (spikec/verification/sensitivity.py)."""

import json

import numpy as np

from examples.train import EXAMPLES, ROOT
from spikec.cli import main
from spikec.frontend import trace
from spikec.verification.sensitivity import perturbed


def test_perturbation_moves_every_weight_and_only_weights():
    ex = EXAMPLES["spikformer_digits"]
    g = trace(ex.build(), ex.input_shape)
    p = perturbed(g, 1e-3)
    convs = [(a, b) for a, b in zip(g.nodes, p.nodes) if a.op in ("conv", "linear")]
    assert convs and all(not np.array_equal(a.weight, b.weight) for a, b in convs)
    assert all(np.allclose(a.weight, b.weight, rtol=1e-2, atol=0) for a, b in convs)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(g.nodes, perturbed(g, 0.0).nodes) if a.op == "conv")


def test_verify_reports_the_models_own_sensitivity(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    ex = EXAMPLES["spikformer_digits"]
    out = tmp_path / "v.json"
    code = main(["verify", *ex.spikec_args("spikformer_digits"), "--target", "intref", "--limit", "60",
                 "--perturb", "1e-3", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "top-1 agreement float vs float with weights x (1 + 0.001·N(0,1))" in text
    p = json.loads(out.read_text())["perturbed"]
    assert p["relative"] == 1e-3 and 0.8 <= p["top1_agreement"] <= 1.0 and 0.0 <= p["accuracy"] <= 1.0


def test_zero_perturbation_agrees_fully_and_nonsense_is_refused():
    import pytest

    import spikec
    from spikec.data import load_dataset
    from spikec.errors import SpikecError

    ex = EXAMPLES["spikformer_digits"]
    x, y = load_dataset("digits")
    common = dict(factory=f"examples.models.zoo:{ex.factory}", model_kwargs=ex.kwargs, input_shape=ex.input_shape,
                  labels=y[:70])
    r = spikec.verify(str(ex.checkpoint("spikformer_digits")), "intref", x[:70], perturb=0.0, chunk=32, **common)
    assert r.perturbed["top1_agreement"] == 1.0 and r.perturbed["accuracy"] == r.accuracy["float IR"]
    with pytest.raises(SpikecError, match="--perturb takes a finite relative size >= 0"):
        spikec.verify(str(ex.checkpoint("spikformer_digits")), "intref", x[:8], perturb=-1.0, **{**common, "labels": y[:8]})
