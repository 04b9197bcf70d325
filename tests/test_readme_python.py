"""The README's Python example, run exactly as written (from the repository root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-example -->\n```python\n(.*?)```\n<!-- /python-example -->", text, re.S)
    assert block, "README has the marked Python example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 14
    script = tmp_path / "example.py"  # run exactly as written, where the README says: the repository root
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    preds, labels = (re.findall(r"\d+", part) for part in lines[0].split("] ["))
    assert len(preds) == 8 and sum(p == q for p, q in zip(preds, labels)) >= 6  # a trained model
    assert (ROOT / "out" / "digits.lava" / "manifest.json").is_file()
    agreement, rest = lines[-1].split(" ", 1)
    assert float(agreement) > 0.9 and "'integer'" in rest and rest.endswith("True")
