"""Bad input gets one clear line, exit code 2, and nothing written: checkpoints that are not
checkpoints, outputs that cannot be written, interrupted compiles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import torch
from conftest import ROOT

from spikec.cli import main

CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
MODEL = ["--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits", "--input-shape", "1,8,8"]


def _one_line(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, err
    return err


def test_truncated_checkpoint(tmp_path, capsys):
    data = CKPT.read_bytes()
    (tmp_path / "t.pth").write_bytes(data[: len(data) // 2])
    _one_line(capsys, main(["show", str(tmp_path / "t.pth"), *MODEL]), "cannot read checkpoint")


def test_random_bytes_are_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "r.pt").write_bytes(np.random.default_rng(0).integers(1, 127, 4096, dtype=np.uint8).tobytes())
    _one_line(capsys, main(["show", str(tmp_path / "r.pt"), *MODEL]), "not a PyTorch checkpoint")
    (tmp_path / "p.pt").write_bytes(b"\x80\x02garbage")  # starts like a pickle
    _one_line(capsys, main(["show", str(tmp_path / "p.pt"), *MODEL]), "corrupt, or not a checkpoint")


def test_wrong_architecture(tmp_path, capsys):
    from examples.models.zoo import sj_spikformer

    torch.save(sj_spikformer().state_dict(), tmp_path / "other.pth")
    _one_line(capsys, main(["show", str(tmp_path / "other.pth"), *MODEL]), "does not fit the model")


def test_unsupported_op_names_module_class_and_what_is_supported(tmp_path, capsys):
    (tmp_path / "tanh_net.py").write_text(
        "import torch.nn as nn\n"
        "from spikingjelly.activation_based import functional, layer, neuron\n"
        "def net():\n"
        "    m = nn.Sequential(layer.Linear(4, 4), nn.Tanh(), layer.Linear(4, 2), neuron.LIFNode())\n"
        "    functional.set_step_mode(m, 'm')\n"
        "    return m\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import tanh_net

        torch.save(tanh_net.net().state_dict(), tmp_path / "g.pt")
    finally:
        sys.path.remove(str(tmp_path))
    code = main(["show", str(tmp_path / "g.pt"), "--model", f"{tmp_path}/tanh_net.py:net", "--input-shape", "4",
                 "--time-steps", "2"])
    _one_line(capsys, code, "aten.tanh in module '1' (torch.nn.modules.activation.Tanh)", "spikec compiles conv1d",
              "MultiStepLIFNode")


def test_unrepresentable_values_are_refused_naming_the_neuron(tmp_path, capsys):
    """Values Loihi 2 cannot hold: a threshold below one unit of the 24-bit membrane that holds the
    layer's current (a threshold 1e-9 of unit currents), and the same after BN folding multiplies the
    weights by 1e30.  One line naming the neuron's module and what to change; no artifact."""
    (tmp_path / "small_net.py").write_text(
        "import torch.nn as nn\n"
        "from spikingjelly.activation_based import neuron\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, threshold=1.0):\n"
        "        super().__init__()\n"
        "        self.fc, self.bn = nn.Linear(4, 3), nn.BatchNorm1d(3)\n"
        "        self.lif = neuron.LIFNode(v_threshold=threshold, step_mode='m')\n"
        "    def forward(self, x):\n"
        "        T, B = x.shape[:2]\n"
        "        return self.lif(self.bn(self.fc(x).flatten(0, 1)).reshape(T, B, 3))\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import small_net

        net = small_net.Net().eval()
        torch.save(net.state_dict(), tmp_path / "ok.pt")
        with torch.no_grad():
            net.bn.weight.fill_(1e30)
        torch.save(net.state_dict(), tmp_path / "bn_1e30.pt")
    finally:
        sys.path.remove(str(tmp_path))
    model = ["--model", f"{tmp_path}/small_net.py:Net", "--input-shape", "4", "--time-steps", "2"]
    for ckpt, extra in (("ok.pt", ["--model-kwargs", '{"threshold": 1e-9}']), ("bn_1e30.pt", [])):
        out = tmp_path / f"{ckpt}.intref"
        code = main(["compile", str(tmp_path / ckpt), *model, *extra, "--target", "intref", "-o", str(out)])
        _one_line(capsys, code, "module 'lif'", "24-bit membrane", "lower the weights")
        assert not out.exists()
    assert main(["compile", str(tmp_path / "ok.pt"), *model, "--target", "intref", "-o", str(tmp_path / "ok.intref")]) == 0


def test_output_below_a_regular_file_or_in_a_special_directory(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "sub" / "out", "/proc/spikec-out"):
        code = main(["compile", str(CKPT), *MODEL, "--target", "intref", "-o", str(out)])
        _one_line(capsys, code, str(out))
    code = main(["verify", str(CKPT), *MODEL, "--dataset", "digits", "--limit", "2", "--json", "/proc/spikec.json"])
    _one_line(capsys, code, "cannot write in /proc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_interrupted_compile_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the artifact is being written: exit 130, no artifact, no temporary left."""
    import spikec.ir.serialize as ser

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ser, "write_graph_files", interrupted)
    monkeypatch.setattr("spikec.targets.intref.write_graph_files", interrupted)
    out = tmp_path / "out"
    assert main(["compile", str(CKPT), *MODEL, "--target", "intref", "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sigint_during_a_real_compile_leaves_nothing(tmp_path):
    """A real SIGINT to a running `spikec compile` (sent once the passes run)."""
    out = tmp_path / "net.lava"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "spikec", "compile", str(CKPT), *MODEL, "--target", "lava", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    for line in p.stdout:
        if line.startswith("pipeline '"):
            p.send_signal(signal.SIGINT)
            break
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err and list(tmp_path.iterdir()) == []
