"""Run every benchmark (make bench), then write one summary: out/bench/summary.md and summary.png.

Each benchmark's ``run(argv)`` prints its own report, as its command line does, and returns its
figures (``summary.Figure``); ``summary.write`` turns them into the table and the chart.  A benchmark
that fails is named in the summary, the others still run, and the exit code is 1.

    python benchmarks/run_all.py [--out out/bench]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import summary  # noqa: E402

# lava_scale.py: the small size only here (make bench-lava-scale runs both sizes)
# compile_scale.py: SPIKEC_COMPILE_SCALE=quick (default, to ~10M params) or full (to 66M; make bench-compile-scale)
BENCHMARKS = (("intref_speed", []), ("intref_scale", []), ("lava_speed", []), ("lava_scale", ["--sizes", "a"]),
              ("compile_scale", []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    args = ap.parse_args()
    figures: list[summary.Figure] = []
    notes, failed = [], []
    for name, argv in BENCHMARKS:
        print(f"== {name}.py {' '.join(argv)}", flush=True)
        what = " ".join([name, *argv])
        t = time.perf_counter()
        try:
            figures += importlib.import_module(name).run(argv)
        except Exception as e:
            traceback.print_exc()
            failed.append(name)
            notes.append(f"{what}: **failed** after {time.perf_counter() - t:.0f} s "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            continue
        notes.append(f"{what}: {time.perf_counter() - t:.0f} s")
    md, png = summary.write(figures, Path(args.out), notes)
    print(f"\n== summary\n{md.read_text()}")
    print(f"wrote {md}\nwrote {png}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
