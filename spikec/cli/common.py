"""What the verbs share: argument types, the model options, data and output-path handling."""

from __future__ import annotations

import argparse
import io
import math
from typing import Optional

from spikec.errors import SpikecError


def shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,32,32, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dimensions like 3,32,32, got {text!r}")
    return dims


def value_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI like 0,1, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r}")
    return lo, hi


def int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, else "expected {what}, got ..."."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


positive = int_at_least(1, "a positive integer")


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_model_options(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("checkpoint", nargs="?" if optional else None,
                   help="checkpoint: state_dict (.pt/.pth), pickled nn.Module, or torch.export program (.pt2); "
                        "or a saved IR directory")
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="FACTORY", help="architecture of a state_dict: 'package.module:factory' or 'path/to/file.py:factory'")
    g.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for the factory, as a JSON object")
    g.add_argument("--input-shape", type=shape, metavar="C,H,W", help="per-sample input shape without batch, e.g. 3,32,32")
    g.add_argument("--time-steps", type=positive, metavar="T",
                   help="the model takes a sequence [T, B, *input-shape] (default: a frame [B, *input-shape])")
    g.add_argument("--model-output", metavar="N|NAME",
                   help="compile only this output of a model that returns several (index among its tensor outputs, "
                        "or a dict key); non-tensor outputs such as None are skipped anyway")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow unpickling a whole nn.Module (runs code from the file: only for files you trust)")


def add_quantization_options(g) -> None:
    g.add_argument("--calib", metavar="FILE", help="calibration inputs (.npy, model input layout): per-layer scales from measured currents")
    g.add_argument("--input-range", type=value_range, default=(0.0, 1.0), metavar="LO,HI",
                   help="range of the model's analog input (default 0,1; a negative LO needs '=': --input-range=-1,1)")


def add_target_options(p: argparse.ArgumentParser, verify: bool = False) -> None:
    """Every registered target's own options, a group per target (``spikec.targets.base.Option``)."""
    from spikec.targets import all_targets

    for t in all_targets():
        opts = [o for o in t.options if o.verify or not verify]
        if not opts:
            continue
        g = p.add_argument_group(t.name)
        for o in opts:
            if o.action:
                g.add_argument(o.cli_flag, dest=o.name, action=o.action, help=o.help)
            else:
                g.add_argument(o.cli_flag, dest=o.name, type=o.type, default=o.default, metavar=o.metavar, help=o.help)


def target_options(args, target, verify: bool = False) -> dict:
    """The values of ``target``'s options from the parsed arguments."""
    return {o.name: getattr(args, o.name) for o in target.options if (o.verify or not verify) and hasattr(args, o.name)}


def open_args(args):
    """The model named by the common model options, opened once (spikec.frontend.open_model)."""
    from spikec.frontend import open_model

    return open_model(args.checkpoint, factory=args.model, model_kwargs=args.model_kwargs,
                      trust_checkpoint=args.trust_checkpoint)


def graph_of(args, loaded=None):
    from spikec.frontend import model_graph

    graph = model_graph(loaded or open_args(args), args.input_shape, args.time_steps, output=args.model_output)
    for note in graph.metadata.get("notes", []):
        print(f"note: {note}")
    return graph


def calib_of(args):
    from spikec.data import load_array

    return load_array(args.calib, "--calib") if getattr(args, "calib", None) else None


def inputs_of(args) -> tuple:
    """Every file the command reads (outputs must never overwrite them)."""
    model = getattr(args, "model", None)
    model_file = model.rpartition(":")[0] if model and (".py:" in model or "/" in model) else None
    return tuple(p for p in (getattr(args, "checkpoint", None), model_file, getattr(args, "calib", None),
                             getattr(args, "input", None), getattr(args, "labels", None)) if p)


def write_file(path, write) -> None:
    from spikec.outputs import atomic_file

    atomic_file(path, write)


def npy_bytes(a) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(a))
    return buf.getvalue()


def require(missing: list[str], verb: str) -> None:
    if missing:
        raise SpikecError(f"{verb} needs {', '.join(missing)} (see spikec {verb} --help)")


def limit(a, n: Optional[int]):
    return a if a is None or not n else a[:n]


def add_data_options(p: argparse.ArgumentParser):
    """--input / --labels / --dataset / --limit; returns the group."""
    from spikec.data import DATASETS

    g = p.add_argument_group("data")
    g.add_argument("--input", metavar="X.npy", help="inputs (model input layout)")
    g.add_argument("--labels", metavar="Y.npy", help="integer labels for accuracy")
    g.add_argument("--dataset", choices=list(DATASETS),
                   help="a bundled dataset instead of --input: " + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()))
    g.add_argument("--limit", type=int, metavar="N", help="use the first N inputs")
    return g


def load_data(args, verb: str):
    """The inputs and labels the data options name (all of them: :func:`limit_samples` applies --limit
    once the model's input layout is known)."""
    from spikec.data import load_array, load_dataset

    if args.dataset:
        x, y = load_dataset(args.dataset)
    elif args.input:
        x = load_array(args.input, "--input").astype("float32")
        y = load_array(args.labels, "--labels").astype("int64") if args.labels else None
    else:
        raise SpikecError(f"{verb} needs data: --input X.npy (and --labels Y.npy) or --dataset NAME")
    return x, y


def limit_samples(graph, x, y, n: Optional[int]):
    """The first ``n`` samples of ``x`` / ``y`` (--limit): along the batch axis, the second one of a
    model that takes sequences [T, B, ...]."""
    if not n:
        return x, y
    x = x[:, :n] if graph.inputs[0].layout != "static" else x[:n]
    return x, limit(y, n)
