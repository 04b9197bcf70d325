"""lava: compile the quantized IR to a lava-nc process network and run it in Lava's CPU simulator
(``Loihi2SimCfg(select_tag="fixed_pt")``), bit-exact with intref.

A lava artifact is an intref artifact (quantized IR + manifest) tagged ``spikec-lava`` with the
network's resource report; ``spikec run`` rebuilds the network from it (:mod:`.netspec`) and runs
it (:mod:`.runner`).  Importing this package does not import lava; building or running does, through
:func:`spikec.compat.lava311.ensure_lava`.
"""

from .netspec import NetSpec, build_netspec
from .resources import report_lines, resource_report

FORMAT = "spikec-lava"

__all__ = ["FORMAT", "NetSpec", "build_netspec", "report_lines", "resource_report"]
