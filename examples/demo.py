"""End-to-end demo on the bundled, trained Spikformer example (what `make demo` runs).

1. ``spikec show``: trace the trained checkpoint (official-code-style Spikformer, legacy
   ``MultiStepLIFNode``) and print the IR;
2. ``spikec compile --target intref``: pass pipeline + Loihi 2 fixed-point quantization, written as a
   self-contained artifact;
3. ``spikec run``: the artifact on held-out digit images, without the model code;
4. ``spikec verify``: torch model vs float IR vs integer model per layer, top-1 agreement and
   accuracy on the 360 held-out digits; the demo fails if agreement drops below 97 %.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.train_digits import digits_split  # noqa: E402
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
    step("compile to the integer reference (Loihi 2 fixed point)",
         ["compile", CKPT, *MODEL, "--target", "intref", "-o", OUT / "spikformer_digits.intref"])
    step("run the artifact on 16 held-out images (no model code needed)",
         ["run", OUT / "spikformer_digits.intref", "--input", OUT / "test_images.npy"])
    print("labels             :", yte[:16].tolist())
    step("verify on the 360 held-out digits",
         ["verify", CKPT, *MODEL, "--dataset", "digits", "--min-agreement", "0.97", "--json", OUT / "verify.json"])
    print("\nverdict: PASS (integer model agrees with the float model; see the accuracy lines above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
