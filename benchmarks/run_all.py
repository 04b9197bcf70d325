"""Run every benchmark (make bench)."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# lava_scale.py: the small size only here (make bench-lava-scale runs both sizes)
# compile_scale.py: SPIKEC_COMPILE_SCALE=quick (default, to ~10M params) or full (to 66M; make bench-compile-scale)
for name, argv in (("intref_speed.py", []), ("intref_scale.py", []), ("lava_speed.py", []), ("lava_scale.py", ["--sizes", "a"]),
                   ("compile_scale.py", [])):
    print(f"== {name} {' '.join(argv)}", flush=True)
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(HERE / name), run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
