"""``spikec run``: run any artifact on inputs, without the model code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_debug, npy_bytes, write_file


def add_parser(sub) -> None:
    from spikec.targets import all_targets

    p = sub.add_parser("run", help="run a compiled artifact on inputs",
                       description="Run a compiled artifact on an input array, without the model code. Artifacts: "
                                   + "; ".join(f"{t.name}: {t.description}" for t in all_targets()))
    p.add_argument("artifact", help="what spikec compile wrote (a directory or a file, per target)")
    p.add_argument("--input", required=True, metavar="X.npy", help="inputs in the model's input layout ([B, ...] or [T, B, ...])")
    p.add_argument("--save", metavar="Y.npy", help="write the (dequantized) outputs here")
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from spikec.api import load
    from spikec.data import load_array
    from spikec.outputs import check_output
    from spikec.verification import top1_classes

    x = load_array(args.input, "--input")
    if args.save:
        args.save = args.save if str(args.save).endswith(".npy") else f"{args.save}.npy"  # what np.save writes
        check_output(args.save, directory=False, protect=(args.input, args.artifact), option="--save")
    artifact = load(args.artifact)
    out = artifact.run_all(x, progress=sys.stdout.isatty())
    for line in out.warnings:
        print(line, file=sys.stderr)
    print("\n".join(out.lines))
    if out.layers:
        table = Table(title=f"{Path(args.artifact).name} ({artifact.target.name}): per-layer spikes")
        for col in ("neuron layer", "source module", "spikes", "rate"):
            table.add_column(col)
        for name, s in out.layers.items():
            if name in out.sources:
                table.add_row(name, out.sources[name], str(int(s.sum())), f"{float(s.mean()):.4f}")
        Console(width=160).print(table)
    y = out.outputs[0]
    print(f"output: shape {list(y.shape)}")
    if artifact.graph is not None:
        per_step = artifact.graph.outputs[0].layout == "split"
    else:  # an ONNX model names its output layouts in its metadata
        per_step = json.loads(artifact.meta.get("output_layouts", "[]"))[:1] == ["split"]
    print("top-1 (first 20)" + (", outputs averaged over time" if per_step else "") + ":",
          top1_classes(y, per_step)[:20].tolist())
    if args.save:
        write_file(args.save, lambda tmp: tmp.write_bytes(npy_bytes(y)))
        print(f"saved outputs to {args.save}")
    return 0
