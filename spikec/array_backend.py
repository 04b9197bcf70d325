"""numpy or torch, dispatched on the argument's type: the array functions that :mod:`spikec.loihi` and
:mod:`spikec.integer_approx` share so that the same integer arithmetic runs in intref (torch), the Lava
process models (numpy) and the quantizer.  Imports numpy only: torch is used only when the caller
passes a torch tensor (it is then already imported)."""

from __future__ import annotations

import sys

import numpy as np


def is_torch(x) -> bool:
    """Is ``x`` a torch tensor (checked without importing torch)?"""
    return type(x).__module__.split(".", 1)[0] == "torch"


def where(c, a, b):
    if is_torch(c):
        return sys.modules["torch"].where(c, a, b)
    return np.where(c, a, b)


def clip(x, lo, hi):
    return x.clamp(lo, hi) if is_torch(x) else np.clip(x, lo, hi)
