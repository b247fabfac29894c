"""Client-level differential privacy of a leaf federation, and the privacy it spends.

The mechanism is the trainer's ``GaussianDP`` update processor (``fl/strategy.py``): each
client's update (key layers and backbone together) is clipped to L2 norm C, and Gaussian
noise N(0, sigma^2 C^2) is added to the **sum** before it is divided by the number of
clients (weighting ``uniform``).  The privacy spent is computed by Google's
``dp-accounting`` (RDP accountant), never by this package: one Poisson-subsampled Gaussian
event per round of the federation, with sampling rate q = cohort / clients.  (The cohort
is drawn without replacement at a fixed size; Poisson subsampling at the same rate is the
usual approximation, as in TensorFlow Federated's DP-FedAvg.)
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

from fedgroups.fl.hierarchy.config import PrivacyConfig


@lru_cache(maxsize=4096)
def dp_epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float
               ) -> float:
    """epsilon at ``delta`` after ``steps`` rounds of the subsampled Gaussian mechanism."""
    if steps <= 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("privacy needs dp-accounting: pip install 'fedgroups[privacy]'"
                          ) from None
    event: Any = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(event, int(steps))
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # orders it cannot evaluate are skipped with a warning each
    try:
        return float(accountant.get_epsilon(delta))
    finally:
        absl.setLevel(level)


def make_processor(privacy: PrivacyConfig) -> Any:
    """The update processor that clips and noises (the trainer's built-in ``dp``)."""
    from fedgroups.fl.processors import GaussianDP

    return GaussianDP(clip_norm=privacy.clip_norm, noise_multiplier=privacy.noise_multiplier)


def sampling_rate(cohort_size: int, clients: int) -> float:
    return min(1.0, cohort_size / clients) if clients else 1.0
