"""End-to-end demo on the bundled Spikformer example (what `make demo` runs).

1. builds the project's Spikformer (official-code style, legacy ``MultiStepLIFNode``) for 8x8 digit
   images and saves it as a state_dict checkpoint, the form users have;
2. ``spikec show`` traces the checkpoint and prints the IR;
3. runs the float IR interpreter and the torch model on the scikit-learn digits images and checks
   that every neuron layer's spike train and the outputs agree;
4. asks ``spikec compile`` for each target and reports which are built.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.models import zoo  # noqa: E402
from spikec.cli import main as spikec  # noqa: E402
from spikec.frontend import load_checkpoint, trace  # noqa: E402
from spikec.frontend.neurons import neuron_spec  # noqa: E402
from spikec.runtime.float_interpreter import run_float  # noqa: E402

OUT = ROOT / "out" / "demo"
FACTORY = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"


def digits_images(n: int = 64) -> torch.Tensor:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[-n:], dtype=torch.float32) / 16.0  # held-out tail, values in [0, 1]
    return x.unsqueeze(1)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    x = digits_images()
    model = zoo.spikformer_digits()
    zoo.prepare(model, x * 2.0)
    ckpt = OUT / "spikformer_digits.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    print(f"checkpoint: {ckpt}")

    print("\n$ spikec show", ckpt.name, "--model ...:spikformer_digits --input-shape 1,8,8")
    spikec(["show", str(ckpt), "--model", FACTORY, "--input-shape", "1,8,8"])

    t0 = time.perf_counter()
    graph = trace(load_checkpoint(ckpt, factory=FACTORY), (1, 8, 8), name="spikformer_digits")
    t_trace = time.perf_counter() - t0

    spikes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, p=p: spikes.__setitem__(p, o.detach()))
             for p, m in model.named_modules() if p and neuron_spec(m, p)]
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    r = run_float(graph, x, record=True)
    neurons = [n for n in graph.nodes if n.op == "neuron"]
    identical = sum(torch.equal(r.values[n.name], spikes[n.source].reshape(r.values[n.name].shape)) for n in neurons)
    max_diff = (r.outputs[0] - y).abs().max().item()
    top1 = (r.outputs[0].argmax(-1) == y.argmax(-1)).float().mean().item()
    print(f"\ntraced in {t_trace:.2f} s: {len(graph)} IR nodes, {len(neurons)} neuron layers")
    print(f"float IR vs torch on {x.shape[0]} digit images: identical spike trains in "
          f"{identical}/{len(neurons)} neuron layers, max |output diff| = {max_diff:.2e}, "
          f"top-1 agreement {top1:.1%}")
    ok = identical == len(neurons) and max_diff <= 1e-5

    from spikec.targets import AVAILABLE, TARGETS

    print("\ntargets:")
    for t in TARGETS:
        print(f"  {t:7s} {'built' if t in AVAILABLE else 'not built yet'}: {TARGETS[t]}")
    print("\nverdict:", "PASS (float IR == torch model)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
