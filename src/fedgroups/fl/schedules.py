"""Server learning-rate schedules: pure functions of (config, base lr, round, total rounds).

Rounds are 0-based.  Warmup is linear from ``lr / warmup_rounds`` at round 0 to ``lr`` at
round ``warmup_rounds - 1``; decay starts after it.
"""

from __future__ import annotations

import math

from fedgroups.fl.config import ScheduleConfig


def server_lr(schedule: ScheduleConfig, base_lr: float, round_: int, total_rounds: int) -> float:
    w = schedule.warmup_rounds
    if round_ < w:
        return base_lr * (round_ + 1) / w
    if schedule.name == "constant":
        return base_lr
    if schedule.name == "warmup_cosine":
        decay_rounds = max(1, total_rounds - w - 1)
        progress = min(1.0, (round_ - w) / decay_rounds)
        floor = schedule.min_lr_ratio
        return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    if schedule.name == "warmup_exponential":
        return base_lr * schedule.decay_rate ** (round_ - w)
    raise ValueError(f"unknown schedule {schedule.name!r}")  # config parsing prevents this
