"""intref time / float torch time on the same batch (goal <= 1.0), measured in one run.

    python benchmarks/intref_speed.py [--batch 360] [--repeats 5]

Float: the torch model itself (eager, no grad).  intref: the compiled integer model (integer
datapath; exact int8 / float32 product kernels where a bound proves them exact, the memoryless LIF
batched over time: targets/intref/kernels.py).  Both on the held-out digits with the bundled trained
Spikformer, and on the tiny Meta-SpikeFormer.  The real model sizes (zoo Spikformer embed 64 and
the CIFAR Spikformer-4-384, batch 8, 2 threads) are benchmarks/intref_scale.py's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from summary import INTREF_GOAL, INTREF_WALL, Figure  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def bench(name, model, graph, x, repeats) -> Figure:
    from spikec.passes.pipelines import run_pipeline
    from spikec.passes.quantize import quantize
    from spikec.targets.intref.executor import run_int

    q = quantize(run_pipeline(graph, "intref").graph, input_range=(0, float(x.max())))
    with torch.no_grad():
        t_float = best_of(lambda: model(x), repeats)
    t_int = best_of(lambda: run_int(q.graph, x), repeats)
    print(f"{name:22s} batch {x.shape[0]:4d}: float torch {t_float * 1e3:8.1f} ms, intref {t_int * 1e3:8.1f} ms, "
          f"ratio intref/float = {t_int / t_float:.2f}")
    return Figure("intref_speed", f"{name}, batch {x.shape[0]}", INTREF_WALL, t_int / t_float, goal=INTREF_GOAL,
                  params=sum(p.numel() for p in model.parameters()))


def run(argv: list[str] | None = None) -> list[Figure]:
    """Measure and print (the command line's arguments, or ``argv``); return the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=360)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from examples.models import zoo
    from examples.models.spikformer import spikformer_digits
    from examples.train import CONFIG, digits_split
    from spikec.frontend import trace

    model = spikformer_digits(**CONFIG)
    model.load_state_dict(torch.load(ROOT / "examples/checkpoints/spikformer_digits.pth", weights_only=True)["model"])
    model.eval()
    x = digits_split()[2][: args.batch]
    figures = [bench("spikformer_digits", model, trace(model, (1, 8, 8)), x, args.repeats)]
    m, xm = zoo.build("meta_spikformer", batch=min(args.batch, 64))
    figures.append(bench("meta_spikformer", m, trace(m, (3, 32, 32)), xm, args.repeats))
    return figures


def main() -> int:
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
