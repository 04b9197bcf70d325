"""``spikec verify --workers N``: the same report (JSON and text) for every N, a progress bar on
stderr only when it is a terminal."""

import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import ROOT

from spikec.cli import main

CKPT = str(ROOT / "examples" / "checkpoints" / "spikformer_digits.pth")
VERIFY = ["verify", CKPT, "--model", f"{ROOT}/examples/models/spikformer.py:spikformer_digits", "--input-shape", "1,8,8",
          "--dataset", "digits"]


def test_workers_2_writes_the_report_of_1(tmp_path, capsys):
    """40 digits: two chunks, one per worker; every per-layer figure, the flips against the bounds,
    top-1 agreement and accuracy as in one process, and nothing on stderr (not a terminal)."""
    runs = {}
    for n in (2, 1):
        out = tmp_path / f"w{n}.json"
        assert main([*VERIFY, "--limit", "40", "--workers", str(n), "--json", str(out)]) == 0
        captured = capsys.readouterr()
        assert captured.err == "", captured.err  # no progress bar, no warnings
        runs[n] = (out.read_text(), captured.out.replace(str(out), "REPORT"))
    assert runs[2] == runs[1]
    rep = json.loads(runs[2][0])
    assert rep["samples"] == 40 and len(rep["layers"]) == 12 and rep["accuracy"]["integer"] > 0.8
    assert all(r["local_agreement"] is not None and r["unexplained_flips"] == 0 for r in rep["layers"])


@pytest.mark.parametrize("value", ["-1", "two"])
def test_workers_must_be_a_count(value, capsys):
    with pytest.raises(SystemExit) as e:
        main([*VERIFY, "--workers", value])
    assert e.value.code == 2 and "number of worker processes" in capsys.readouterr().err


def test_progress_bar_on_a_terminal(tmp_path):
    """stderr a terminal (a pseudo-terminal here): the progress bar draws there; stdout stays the report."""
    master, slave = os.openpty()
    chunks = []

    def drain():  # read while the run writes (a full pseudo-terminal buffer would block it)
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "spikec", *VERIFY, "--limit", "8"], stdout=subprocess.PIPE,
                              stderr=slave, cwd=ROOT, env={**os.environ, "TERM": "xterm", "COLUMNS": "120"}, timeout=600)
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "verify" in err and "/8" in err, err  # the bar: "verify ... n/8"
    assert "verify (intref) on 8 samples" in proc.stdout.decode()
