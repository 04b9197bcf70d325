"""Peak memory of a process tree: sum of PSS (proportional set size: shared copy-on-write pages of
forked Lava workers counted once in total) over the process and all its descendants, sampled.

    python benchmarks/treemem.py PID [INTERVAL_S]     # prints the peak when PID exits
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, stack = [], [pid]
    while stack:
        q = stack.pop()
        out.append(q)
        stack.extend(children.get(q, []))
    return out


def tree_pss(pid: int) -> tuple[int, int]:
    """(sum of PSS in bytes, number of processes) of ``pid`` and its descendants."""
    total, n = 0, 0
    for q in descendants(pid):
        try:
            for line in Path(f"/proc/{q}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    n += 1
                    break
        except OSError:
            continue
    return total, n


class Sampler:
    """Samples ``tree_pss(pid)`` in a thread; ``peak`` bytes, ``peak_procs``."""

    def __init__(self, pid: int, interval: float = 1.0):
        import threading

        self.pid, self.interval, self.peak, self.peak_procs = pid, interval, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            b, n = tree_pss(self.pid)
            if b > self.peak:
                self.peak, self.peak_procs = b, n
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


if __name__ == "__main__":
    pid = int(sys.argv[1])
    dt = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    peak, procs = 0, 0
    while Path(f"/proc/{pid}").exists():
        b, n = tree_pss(pid)
        if b > peak:
            peak, procs = b, n
            print(f"{time.strftime('%H:%M:%S')} peak {peak / 2**30:.2f} GiB over {procs} processes", flush=True)
        time.sleep(dt)
    print(f"final peak {peak / 2**30:.2f} GiB over {procs} processes", flush=True)
