"""Compile one supported architecture end to end for every target, through the spikec CLI.

    python examples/compile_family.py FAMILY [--targets intref,lava,nir,onnx] [--out out/families]
    python examples/compile_family.py all            # every family (what `make examples` runs)

FAMILY is one of examples/models/zoo.py's families (spikingjelly's Spikformer and
SpikeDrivenTransformer, the official-code-style Spikformer, Meta-SpikeFormer, the neuron-variant
SNN, STAA-SNN).  A family compiles to the targets ``zoo.FAMILY_TARGETS`` lists (default: all); the
others are skipped with a note.  For each, the script

1. builds the tiny configuration with prepared random weights (so every layer fires) and saves it
   as a state_dict checkpoint plus 8 input samples, the way a user would hand them to spikec;
2. per target: ``spikec compile``, ``spikec run`` on the samples (no model code needed), and
   ``spikec verify`` (intref: float vs integer per layer; lava: Lava == intref bit for bit; nir:
   nirtorch re-import fires identically); for onnx, the onnxruntime run must equal the intref run
   bit for bit.

Each command is printed as it would be typed from the repository root.  Exit status 0 only if
every step passed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.models import zoo  # noqa: E402
from spikec.cli import main as spikec  # noqa: E402

TARGETS = ("intref", "lava", "nir", "onnx")
SUFFIX = {"intref": ".intref", "lava": ".lava", "nir": ".nir", "onnx": ".onnx"}


def step(argv: list) -> None:
    argv = [str(a) for a in argv]
    shown = [str(Path(a).relative_to(ROOT)) if a.startswith(f"{ROOT}/") else a for a in argv]
    print(f"\n$ spikec {shlex.join(shown)}", flush=True)
    code = spikec(argv)
    if code != 0:
        raise SystemExit(f"failed (exit {code}): spikec {' '.join(argv)}")


def compile_family(family: str, targets: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kwargs = zoo.EXAMPLE_KWARGS.get(family, {})
    model, x = zoo.build(family, batch=8, **kwargs)
    ckpt, inputs = out / f"{family}.pth", out / f"{family}_inputs.npy"
    torch.save(model.state_dict(), ckpt)
    np.save(inputs, x.numpy())
    T = zoo.SEQUENCE_INPUT.get(family)
    model_args = ["--model", f"examples.models.zoo:{family}", "--model-kwargs", json.dumps(kwargs),
                  "--input-shape", ",".join(map(str, zoo.input_shape_of(family))),
                  *(["--time-steps", T] if T else [])]
    print(f"\n=== {family}: {type(model).__name__} ({sum(p.numel() for p in model.parameters())} parameters)")
    supported = zoo.FAMILY_TARGETS.get(family, TARGETS)
    if skipped := [t for t in targets if t not in supported]:
        print(f"(not for {family} yet: {', '.join(skipped)}; see the README support table)")
    targets = [t for t in targets if t in supported]
    for target in targets:
        art = out / f"{family}{SUFFIX[target]}"
        step(["compile", ckpt, *model_args, "--target", target, "--input-range", "0,2", "-o", art])
        step(["run", art, "--input", inputs, "--save", out / f"{family}_{target}_outputs.npy"])
        if target in ("intref", "lava", "nir"):
            step(["verify", ckpt, *model_args, "--target", target, "--input", inputs, "--input-range", "0,2"])
    if "onnx" in targets and "intref" in targets:
        a, b = (np.load(out / f"{family}_{t}_outputs.npy") for t in ("onnx", "intref"))
        if not np.array_equal(a, b):
            raise SystemExit(f"{family}: onnxruntime outputs differ from intref's")
        print(f"{family}: onnxruntime outputs == intref outputs (bit for bit)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("family", choices=[*zoo.FAMILIES, "all"])
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of " + ",".join(TARGETS))
    p.add_argument("--out", type=Path, default=ROOT / "out" / "families")
    a = p.parse_args(argv)
    targets = [t for t in a.targets.split(",") if t]
    if bad := set(targets) - set(TARGETS):
        p.error(f"unknown targets {sorted(bad)}; choose from {', '.join(TARGETS)}")
    for family in (zoo.FAMILIES if a.family == "all" else [a.family]):
        compile_family(family, targets, a.out)
    print("\nall steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
