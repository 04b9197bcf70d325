"""Adding a target is one package plus one registration: a toy backend defined in this file alone
(the optimised float IR saved as a directory, run by the float interpreter, checked against the
float IR) compiles, runs and verifies through the CLI and the Python API without any change to
spikec's own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import spikec
from spikec import ir
from spikec.cli import main
from spikec.outputs import atomic_directory
from spikec.targets import Artifact, Option, RunOutput, Target, register_target, unregister

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
MODEL = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"


class FloatDirTarget(Target):
    name = "toyfloat"
    description = "toy: the optimised float IR in a directory, run by the float interpreter"
    pipeline = "float"
    options = (Option("note", "", "a string stored in the artifact", verify=True),)

    def emit(self, compiled, source=None, note: str = "", **options) -> Artifact:
        self.emitted = getattr(self, "emitted", 0) + 1
        return Artifact(self, compiled.optimized, compiled.optimized, meta={"note": note},
                        lines=[f"toyfloat: {len(compiled.optimized)} nodes"])

    def save(self, artifact, path) -> Path:
        def write(d: Path):
            ir.save(artifact.graph, d)
            (d / "toy.json").write_text(json.dumps({"format": "toyfloat", **artifact.meta}))

        return atomic_directory(path, write)

    def recognizes(self, path) -> bool:
        return (Path(path) / "toy.json").is_file()

    def load(self, path) -> Artifact:
        g = ir.load(path)
        return Artifact(self, g, g, meta=json.loads((Path(path) / "toy.json").read_text()), path=Path(path))

    def run(self, artifact, x, *, progress=False) -> RunOutput:
        from spikec.runtime.float_interpreter import run_float

        r = run_float(artifact.graph, x, record=True)
        layers = {n.name: r.values[n.name].numpy() for n in artifact.graph.nodes if isinstance(n, ir.NeuronNode)}
        return RunOutput([r.outputs[0].numpy()], layers, {k: artifact.graph[k].source for k in layers},
                         lines=["toyfloat: float interpreter"])


@pytest.fixture
def toy():
    t = register_target(FloatDirTarget)
    yield t
    unregister(t.name)


def test_toy_target_through_the_cli(tmp_path, toy, capsys):
    from examples.train import digits_split

    x = digits_split()[2][:6].numpy()
    np.save(tmp_path / "x.npy", x)
    model = ["--model", MODEL, "--input-shape", "1,8,8"]
    assert main(["compile", str(CKPT), *model, "--target", "toyfloat", "-o", str(tmp_path / "a"), "--note", "hi"]) == 0
    assert "toyfloat: " in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "toy.json").read_text())["note"] == "hi"
    assert main(["run", str(tmp_path / "a"), "--input", str(tmp_path / "x.npy"), "--save", str(tmp_path / "y.npy")]) == 0
    assert "toyfloat: float interpreter" in capsys.readouterr().out
    import torch

    from spikec.frontend import load_checkpoint

    model_t = load_checkpoint(CKPT, factory=MODEL).module.eval()
    with torch.no_grad():
        want = model_t(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=1e-5)
    js = tmp_path / "v.json"
    assert main(["verify", str(CKPT), *model, "--target", "toyfloat", "--input", str(tmp_path / "x.npy"),
                 "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["target"] == "toyfloat" and rep["check"]["reference"] == "float IR" and rep["check"]["exact"]
    assert rep["layers"] and all(layer["target"] == 1.0 for layer in rep["layers"])
    assert all(layer["float_vs_int"] is None for layer in rep["layers"])  # not an integer target


def test_toy_target_through_the_api(tmp_path, toy):
    from examples.train import digits_split

    x = digits_split()[2][:4].numpy()
    art = spikec.compile(CKPT, "toyfloat", factory=MODEL, input_shape=(1, 8, 8), note="api")
    y = art.run(x)
    art.save(tmp_path / "a")
    again = spikec.load(tmp_path / "a")
    assert again.target is toy and again.meta["note"] == "api"
    np.testing.assert_array_equal(again.run(x), y)
    rep = spikec.verify(CKPT, "toyfloat", x, factory=MODEL, input_shape=(1, 8, 8))
    assert rep.exact and rep.top1_agreement == 1.0
    with pytest.raises(spikec.errors.SpikecError, match="has no option colour"):
        spikec.compile(CKPT, "toyfloat", factory=MODEL, input_shape=(1, 8, 8), colour="red")


def test_a_target_that_disagrees_fails_verify(tmp_path, toy, monkeypatch, capsys):
    """The check is real: a target whose run flips spikes fails `spikec verify` (exit 1)."""
    orig = FloatDirTarget.run

    def flipped(self, artifact, x, progress=False):
        out = orig(self, artifact, x)
        first = next(iter(out.layers))
        out.layers[first] = 1 - out.layers[first]
        return out

    monkeypatch.setattr(FloatDirTarget, "run", flipped)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32))
    assert main(["verify", str(CKPT), "--model", MODEL, "--input-shape", "1,8,8", "--target", "toyfloat",
                 "--input", str(tmp_path / "x.npy")]) == 1
    assert "FAIL: the toyfloat run differs from float IR" in capsys.readouterr().err
