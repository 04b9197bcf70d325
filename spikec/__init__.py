"""spikec: compile trained PyTorch spiking transformers to neuromorphic targets.

The Python API (see :mod:`spikec.api`)::

    art = spikec.compile(model, "lava", input_shape=(1, 8, 8)); y = art.run(x); art.save("m.lava")
    art = spikec.load("m.lava")
    rep = spikec.verify(model, "lava", x, input_shape=(1, 8, 8), labels=labels)
    r = spikec.report(model, x, input_shape=(1, 8, 8), output="out/report")   # SOPs, energy, cores, plots

Importing spikec imports no backend (and not torch until an API function runs).
"""

__version__ = "0.1.0"

__all__ = ["Artifact", "VerifyReport", "__version__", "compile", "load", "report", "targets", "trace", "verify"]


def __getattr__(name):  # the API imports torch: load it on first use, not on `import spikec`
    if name in ("compile", "load", "trace", "verify", "emit", "report"):
        from . import api

        return getattr(api, name)
    if name == "Artifact":
        from .targets.base import Artifact

        return Artifact
    if name == "VerifyReport":
        from .verification.report import VerifyReport

        return VerifyReport
    raise AttributeError(f"module 'spikec' has no attribute {name!r}")
