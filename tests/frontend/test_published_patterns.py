"""The code patterns of the seed papers' published model files (re-created in
examples/models/published_patterns.py): each compiles to the integer targets and verifies; and the
failure reports (-v up to the failing pass, verify's partial report, vacuous figures, user classes
in messages) that running such code exposed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT

import spikec
from examples.models import published_patterns as pp
from spikec.cli import main

PATTERNS = f"{ROOT}/examples/models/published_patterns.py"


def _model(name, seed=0):
    torch.manual_seed(seed)
    return pp.randomize_bn(getattr(pp, name)(), seed)


def _x(n=4, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize("name", ["linear_bn_spikformer", "tuple_output_sdt", "merged_lif_qkformer"])
def test_pattern_compiles_and_verifies_on_integer_targets(name, tmp_path):
    model = _model(name)
    for target in ("intref", "onnx"):
        rep = spikec.verify(model, target, _x(), input_shape=(3, 16, 16))
        assert rep.exact and all(r.torch_vs_ir == 1.0 for r in rep.layers), target
        assert min(r.float_vs_int for r in rep.layers) > 0.99


def test_tuple_output_skips_none_and_model_output_picks(tmp_path, capsys):
    model = _model("tuple_output_sdt")
    g = spikec.trace(model, input_shape=(3, 16, 16))
    assert len(g.outputs) == 1 and "is not a tensor" in g.metadata["notes"][0]
    torch.save({"model": model.state_dict()}, tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", _x())
    args = [str(tmp_path / "m.pth"), "--model", f"{PATTERNS}:tuple_output_sdt", "--input-shape", "3,16,16"]
    assert main(["compile", *args, "--target", "intref", "-o", str(tmp_path / "a")]) == 0
    assert "note: model output [1] is not a tensor (e.g. None): skipped" in capsys.readouterr().out
    assert main(["verify", *args, "--input", str(tmp_path / "x.npy"), "--model-output", "0"]) == 0
    assert main(["show", *args, "--model-output", "1"]) == 2
    assert "--model-output 1: the model has 1 tensor outputs (0: [0])" in capsys.readouterr().err


def test_neuron_over_merged_time_and_batch_compiles_the_per_sample_meaning(tmp_path, capsys):
    """Upstream, a LIF over [T*B, C, N] chains the samples of a batch: batched and one-at-a-time
    torch runs differ.  spikec compiles the per-sample meaning, says so, and verify compares with
    the torch model run one sample at a time (spikes identical)."""
    model = _model("merged_lif_qkformer")
    x = torch.as_tensor(_x(4))
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(4)])
    assert not torch.allclose(batched, single), "the upstream pattern is batch-dependent"
    g = spikec.trace(model, input_shape=(3, 16, 16))
    assert g.metadata["batch_dependent"] == ["proj_lif"]
    from spikec.runtime.float_interpreter import run_float

    np.testing.assert_allclose(run_float(g, x).outputs[0].numpy(), single.numpy(), atol=1e-5)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", x.numpy())
    js = tmp_path / "v.json"
    assert main(["verify", str(tmp_path / "m.pth"), "--model", f"{PATTERNS}:merged_lif_qkformer", "--input-shape",
                 "3,16,16", "--input", str(tmp_path / "x.npy"), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "module 'proj_lif' (" in out and "MultiStepLIFNode) runs a multi-step neuron over a [T*B" in out
    assert all(r["torch_vs_ir"] == 1.0 for r in json.loads(js.read_text())["layers"])


def test_verbose_prints_pass_reports_up_to_the_failing_stage(tmp_path, capsys):
    """A model with a BN that no pass can fold: the integer compile fails in quantization; -v has
    already printed every pass's report, and verify prints what it checked before failing."""

    model = pp.randomize_bn(pp.UnfoldableBN())
    with pytest.raises(spikec.errors.SpikecError, match="batch norm bn is still in the graph"):
        spikec.compile(model, "intref", input_shape=(3, 16, 16))
    from spikec.verification import VerifyError

    with pytest.raises(VerifyError) as e:
        spikec.verify(model, "intref", _x(2), input_shape=(3, 16, 16))
    rep = e.value.report
    assert rep.failure.startswith("compile: ") and [r.torch_vs_ir for r in rep.layers] == [1.0, 1.0]
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", _x(2))
    args = [str(tmp_path / "m.pt"), "--model", f"{PATTERNS}:UnfoldableBN", "--input-shape", "3,16,16"]
    assert main(["compile", *args, "--target", "intref", "-o", str(tmp_path / "a"), "-v"]) == 2
    cap = capsys.readouterr()
    assert "fold_batchnorm" in cap.out and "bn" in cap.out and "cleanup" in cap.out  # reports before the failure
    assert cap.err.count("\n") == 1 and "batch norm bn is still in the graph" in cap.err
    assert main(["verify", *args, "--input", str(tmp_path / "x.npy")]) == 2
    cap = capsys.readouterr()
    assert "checked before the failure: torch model vs traced float IR in 2 neuron layers" in cap.out
    assert "100.0000%" in cap.out and cap.err.count("\n") == 1


def test_vacuous_top1_agreement_is_named():
    model = _model("tuple_output_sdt")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.arange(10.0))  # class 9 for every input
    rep = spikec.verify(model, "intref", _x(), input_shape=(3, 16, 16))
    assert rep.top1_agreement == 1.0 and rep.top1_vacuous
    assert any("gives all 4 inputs class 9" in n for n in rep.notes)
    assert any("identical for every input" in n for n in rep.notes)
    assert any(line.startswith("NOTE: top-1 agreement is vacuous") for line in rep.summary_lines())
    trained = spikec.verify(ROOT / "examples" / "checkpoints" / "spikformer_digits.pth", "intref",
                            np.random.default_rng(0).uniform(0, 1, (8, 1, 8, 8)).astype(np.float32),
                            factory=f"{ROOT}/examples/models/spikformer.py:spikformer_digits", input_shape=(1, 8, 8))
    assert not trained.top1_vacuous and not trained.notes


def test_messages_name_the_users_neuron_class():
    class OnMembrane(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = pp._lif()

        def forward(self, x):
            s = self.lif(x.unsqueeze(0).repeat(2, 1, 1))
            return s.mean(0) + self.lif.v

    with pytest.raises(spikec.errors.SpikecError) as e:
        spikec.compile(OnMembrane(), "intref", input_shape=(4,))
    assert "TracedNeuron" not in str(e.value)
    assert "reads attribute 'v' of neuron module 'lif'" in str(e.value) and "MultiStepLIFNode" in str(e.value)
