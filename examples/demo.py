"""End-to-end demo on the bundled, trained Spikformer example (what `make demo` runs).

1. ``spikec show``: trace the trained checkpoint (official-code-style Spikformer, legacy
   ``MultiStepLIFNode``) and print the IR;
2. ``spikec compile --target lava``: pass pipeline, Loihi 2 fixed-point quantization, the Lava
   process network and its resource report, written as an artifact;
3. ``spikec run``: the network in Lava's CPU simulator (Loihi2SimCfg fixed_pt) on held-out digit
   images, without the model code;
4. ``spikec verify --target lava``: torch model vs float IR vs integer model vs Lava per layer on
   the 360 held-out digits: Lava == intref bit for bit, float vs integer top-1 agreement and
   accuracy; the demo fails if Lava differs or agreement drops below 97 %;
5. ``spikec compile --target nir`` and ``spikec verify --target nir``: the float model as a NIR
   graph (attention as coincidence detectors), read back with nirtorch and run on the held-out
   images: spikes must be identical in every layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.train import digits_split  # noqa: E402
from spikec.cli import main as spikec  # noqa: E402

OUT = ROOT / "out" / "demo"
CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
MODEL = ["--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits", "--input-shape", "1,8,8"]


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ spikec {' '.join(str(a) for a in argv)}", flush=True)
    code = spikec([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"demo step failed ({title}): exit {code}")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    _, _, xte, yte = digits_split()
    np.save(OUT / "test_images.npy", xte[:16].numpy())
    step("trace the trained checkpoint", ["show", CKPT, *MODEL])
    step("compile for Loihi 2 / Lava (fixed point, process network, resources)",
         ["compile", CKPT, *MODEL, "--target", "lava", "-o", OUT / "spikformer_digits.lava"])
    step("run it in Lava's CPU simulator on 16 held-out images (no model code needed)",
         ["run", OUT / "spikformer_digits.lava", "--input", OUT / "test_images.npy"])
    print("labels             :", yte[:16].tolist())
    step("verify on the 360 held-out digits: torch vs float IR vs intref vs Lava",
         ["verify", CKPT, *MODEL, "--dataset", "digits", "--target", "lava", "--min-agreement", "0.97",
          "--json", OUT / "verify.json"])
    step("export the float model to NIR", ["compile", CKPT, *MODEL, "--target", "nir", "-o", OUT / "spikformer_digits.nir"])
    step("read the NIR file back with nirtorch and compare with the float IR",
         ["verify", CKPT, *MODEL, "--target", "nir", "--input", OUT / "test_images.npy"])
    import json

    rep = json.loads((OUT / "verify.json").read_text())
    acc = rep["accuracy"]
    assert rep["check"]["exact"], "verify exits 1 otherwise"
    print(f"\nverdict: PASS: Lava == intref bit for bit in all {len(rep['layers'])} neuron layers and the outputs; "
          f"accuracy float {acc['float IR']:.2%} vs integer {acc['integer']:.2%}, "
          f"top-1 agreement {rep['top1_agreement']:.2%}; NIR re-import fires identically")
    return 0


if __name__ == "__main__":
    sys.exit(main())
