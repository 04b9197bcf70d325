"""Run every benchmark (make bench)."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for name in ("intref_speed.py", "lava_speed.py"):
    print(f"== {name}", flush=True)
    sys.argv = [name]
    try:
        runpy.run_path(str(HERE / name), run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
