"""``spikec report``: what a compiled spiking transformer costs, per layer, in the seed papers' terms.

* :mod:`.ops`: the counting rules (synaptic operations of spikes, MACs of real-valued inputs, spike
  products), evaluated exactly on a recorded float IR run;
* :mod:`.energy`: the 45 nm energy constants (E_AC 0.9 pJ, E_MAC 4.6 pJ) and units;
* :mod:`.resources`: Loihi 2 cores from the Lava target's resource model (or why there are none);
* :mod:`.build`: :func:`report_graph`, compile once, run the float IR and the integer model, group per layer;
* :mod:`.report`: :class:`Report` (rich table, markdown, JSON), :mod:`.plots` and :mod:`.output`
  (the report directory: report.json, report.md, four PNGs, written atomically).

(The package is ``reporting`` so that ``spikec.report``, the API function, is not shadowed by it.)
"""

from .build import report_graph
from .report import FORMAT, LayerRow, OpRecord, Report

__all__ = ["FORMAT", "LayerRow", "OpRecord", "Report", "report_graph"]
