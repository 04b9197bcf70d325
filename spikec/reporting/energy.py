"""The energy model the seed papers use, and the units the report prints.

Spikformer, Spike-Driven Transformer (v1, v2 / Meta-SpikeFormer) and STAA-SNN all estimate the energy
of one inference from operation counts with the 45 nm CMOS figures of Horowitz (ISSCC 2014) for
32-bit floating point::

    E = E_MAC · MACs + E_AC · SOPs        E_MAC = 4.6 pJ, E_AC = 0.9 pJ

where MACs are the multiply-accumulates of the layers whose input is real-valued (the first layer:
its input is the analog image) and SOPs the accumulations triggered by spikes everywhere else
(:mod:`.ops` says exactly what is counted).  Figures are per sample (one inference over all T
time steps).
"""

from __future__ import annotations

E_MAC_PJ = 4.6  # pJ per 32-bit float multiply-accumulate, 45 nm
E_AC_PJ = 0.9  # pJ per 32-bit float accumulate, 45 nm
TECHNOLOGY = "45 nm"
SOURCE = "Horowitz, ISSCC 2014 (45 nm), as used by Spikformer, Spike-Driven Transformer and Meta-SpikeFormer"


def energy_pj(sops: float, macs: float) -> float:
    """Energy in pJ of ``sops`` accumulations and ``macs`` multiply-accumulates."""
    return E_MAC_PJ * macs + E_AC_PJ * sops


def constants() -> dict:
    return {"E_AC_pJ": E_AC_PJ, "E_MAC_pJ": E_MAC_PJ, "technology": TECHNOLOGY, "source": SOURCE}


def format_count(n: float) -> str:
    """1234 -> '1.234 k', 3.2e9 -> '3.2 G' (SI prefixes, 4 significant digits)."""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.4g} {unit}"
    return f"{n:.4g}"


def format_energy(pj: float) -> str:
    """An energy given in pJ in the unit that suits it (pJ, nJ, µJ, mJ, J)."""
    for div, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= div:
            return f"{pj / div:.4g} {unit}"
    return f"{pj:.4g} pJ"


def summary_line(sops: float, macs: float) -> str:
    """The figure the papers quote, in their units: SOPs in G and energy in mJ per sample."""
    e = energy_pj(sops, macs)
    return (f"SOPs per sample: {sops / 1e9:.4g} G, energy per sample: {e / 1e9:.4g} mJ "
            f"(E_AC {E_AC_PJ} pJ, E_MAC {E_MAC_PJ} pJ, {TECHNOLOGY}; {format_count(sops)} SOPs + "
            f"{format_count(macs)} MACs = {format_energy(e)})")
