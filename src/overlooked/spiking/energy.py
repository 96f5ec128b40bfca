"""Compute-only energy estimates from operation counts (Horowitz, ISSCC 2014, 45 nm).

Constants and formula as recorded in shared/reference/paper_numbers.md §3.4 (there tagged [V]: the same
presets are in SpikingJelly's ``op_counter/compute_energy.py``)::

    E_SNN = E_MAC * MACs(layers with real-valued input) + E_AC * SOPs
    SOPs  = sum over spikes of the spiking neuron's fan-out      (SynOps, Sorbaro et al. 2020)
    E_ANN = E_MAC * MACs

**This is a compute-only proxy**: memory traffic, addressing and keeping state resident are left out.
Every result built on it says "estimate" and reports SOPs, MACs and firing rates beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SOURCE = "Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm; via paper_numbers.md §3.4"


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules (``energy_pj``) for one precision."""

    precision: str
    mac_pj: float  # multiply-accumulate
    ac_pj: float  # accumulate only (a synaptic event)
    source: str = SOURCE


HOROWITZ_45NM: dict[str, EnergyTable] = {
    "fp32": EnergyTable("fp32", mac_pj=4.6, ac_pj=0.9),  # 4.6 = multiply 3.7 + add 0.9
    "fp16": EnergyTable("fp16", mac_pj=1.5, ac_pj=0.4),
    "int8": EnergyTable("int8", mac_pj=0.23, ac_pj=0.03),
}


def snn_energy_pj(macs: float, sops: float, precision: Literal["fp32", "fp16", "int8"] = "fp32") -> float:
    """``E_MAC * MACs + E_AC * SOPs`` in pJ (compute-only estimate).

    >>> snn_energy_pj(macs=1000, sops=10000)  # 4.6 * 1000 + 0.9 * 10000
    13600.0
    """
    table = HOROWITZ_45NM[precision]
    return table.mac_pj * macs + table.ac_pj * sops


def ann_energy_pj(macs: float, precision: Literal["fp32", "fp16", "int8"] = "fp32") -> float:
    """``E_MAC * MACs`` in pJ (compute-only estimate).

    >>> ann_energy_pj(1000)
    4600.0
    """
    return HOROWITZ_45NM[precision].mac_pj * macs
