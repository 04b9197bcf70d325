"""intref time / float torch time at real model sizes (goal: <= 1.0 at both), measured in one run.

    python benchmarks/intref_scale.py [--sizes a,b] [--batch 8] [--repeats 7] [--threads 2]

Sizes: benchmarks/lava_scale.py's (``a``: spikingjelly 2.0.0 Spikformer embed 64, 2 blocks, 4 heads,
32x32, T=4; ``b``: the CIFAR Spikformer-4-384, 9.3M parameters), random weights made to fire
(benchmarks/scale_models.py ``make_checkpoint``), random images in [0, 1).

Float: the torch model itself (eager, no grad, neurons reset before each forward, outside the
timing).  intref: the model compiled for ``--target intref`` (worst-case quantization bounds),
run by the integer executor on the same batch, same process, same number of torch threads.  The
two are timed interleaved, best of ``--repeats`` each; the ratio is reported for wall time and for
CPU time (``time.process_time``, all threads), the latter less sensitive to a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from summary import INTREF_CPU, INTREF_GOAL, INTREF_WALL, Figure  # noqa: E402

GOAL = INTREF_GOAL


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(key: str, batch: int, repeats: int) -> dict:
    from lava_scale import SIZES
    from scale_models import make_checkpoint
    from spikingjelly.activation_based import functional

    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets.intref.executor import run_int

    title, kw = SIZES[key]
    with tempfile.TemporaryDirectory() as tmp:
        model, x = make_checkpoint("sj_spikformer", kw, Path(tmp) / "m.pth", Path(tmp) / "x.npy", n=batch,
                                   img=kw["img"])
    x = torch.as_tensor(x)
    graph = compile_graph(trace(model, (3, kw["img"], kw["img"])), "intref").quantized

    def run_float():
        with torch.no_grad():
            model(x)

    def run_intref():
        run_int(graph, x)

    best = {"float": [float("inf")] * 2, "intref": [float("inf")] * 2}
    for i in range(repeats + 1):  # the first round warms up
        for name, fn in (("float", run_float), ("intref", run_intref)):
            functional.reset_net(model)
            t = _timed(fn)
            if i:
                best[name] = [min(b, v) for b, v in zip(best[name], t)]
    params = sum(p.numel() for p in model.parameters())
    return {"key": key, "title": title, "params": params, "batch": batch,
            "float": best["float"], "intref": best["intref"],
            "wall_ratio": best["intref"][0] / best["float"][0], "cpu_ratio": best["intref"][1] / best["float"][1]}


def run(argv: list[str] | None = None) -> list[Figure]:
    """Measure and print the table (the command line's arguments, or ``argv``); return the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="a,b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"intref / float torch forward, batch {args.batch}, {args.threads} threads, best of {args.repeats} "
          f"interleaved (goal <= {GOAL:.1f}); load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    print("| size | model | params | float wall / CPU ms | intref wall / CPU ms | intref/float wall | CPU | goal |")
    print("|---|---|---|---|---|---|---|---|")
    figures = []
    for key in args.sizes.split(","):
        r = measure(key, args.batch, args.repeats)
        met = max(r["wall_ratio"], r["cpu_ratio"]) <= GOAL
        print(f"| {key} | {r['title']} | {r['params'] / 1e6:.2f}M | {r['float'][0] * 1e3:.0f} / "
              f"{r['float'][1] * 1e3:.0f} | {r['intref'][0] * 1e3:.0f} / {r['intref'][1] * 1e3:.0f} | "
              f"{r['wall_ratio']:.2f} | {r['cpu_ratio']:.2f} | {'met' if met else 'MISSED'} |", flush=True)
        subject = f"({key}) {r['title']}, batch {args.batch}"
        figures += [Figure("intref_scale", subject, metric, r[k], goal=GOAL, params=r["params"])
                    for metric, k in ((INTREF_WALL, "wall_ratio"), (INTREF_CPU, "cpu_ratio"))]
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return figures


def main() -> int:
    run()
    return 0

if __name__ == "__main__":
    sys.exit(main())
