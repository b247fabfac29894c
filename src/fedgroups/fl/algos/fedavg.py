"""FedAvg (McMahan et al., 2017): local optimizer steps from the global weights.

The interface's defaults are FedAvg, so this file only names it.
"""

from __future__ import annotations

from fedgroups.fl.algorithm import Algorithm


class FedAvg(Algorithm):
    name = "fedavg"
