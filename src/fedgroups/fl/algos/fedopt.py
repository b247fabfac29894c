"""The FedOpt family as algorithms: FedAvg clients with the server rule each one names
(Reddi et al., 2021; FedAvgM: Hsu et al., 2019).  The rules are in ``fl/servers.py``;
``algorithm: {name: fedyogi}`` is the same run as ``server.optimizer: yogi``.
"""

from __future__ import annotations

from fedgroups.fl.algorithm import Algorithm
from fedgroups.fl.servers import ADAPTIVE, AdaptiveServer, make_server

__all__ = ["ADAPTIVE", "AdaptiveServer", "FedAdagrad", "FedAdam", "FedAvgM", "FedYogi",
           "make_server"]


class FedAvgM(Algorithm):
    """FedAvg clients, server SGD with momentum (Hsu et al., 2019): ``server.momentum``."""

    name = "fedavgm"
    server_optimizer = "momentum"


class FedAdam(Algorithm):
    name = "fedadam"
    server_optimizer = "fedadam"


class FedYogi(Algorithm):
    name = "fedyogi"
    server_optimizer = "yogi"


class FedAdagrad(Algorithm):
    name = "fedadagrad"
    server_optimizer = "adagrad"
