"""FedSGD: each client sends one gradient of its mean token loss over all of its data.

``delta = -gradient``; the server optimizer takes the step (server SGD with lr η is
large-batch SGD).  Client optimizer settings and local steps are not used.
"""

from __future__ import annotations

from fedgroups.fl.algorithm import Algorithm


class FedSGD(Algorithm):
    name = "fedsgd"
    one_gradient = True
