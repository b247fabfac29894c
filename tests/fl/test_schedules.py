from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgroups.fl.config import ScheduleConfig
from fedgroups.fl.schedules import server_lr


def test_constant_and_warmup() -> None:
    s = ScheduleConfig(name="constant", warmup_rounds=4)
    assert [server_lr(s, 1.0, r, 10) for r in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_reaches_floor_at_last_round() -> None:
    s = ScheduleConfig(name="warmup_cosine", warmup_rounds=2, min_lr_ratio=0.1)
    lrs = [server_lr(s, 2.0, r, 12) for r in range(12)]
    assert lrs[1] == 2.0 and lrs[2] == 2.0
    assert lrs[-1] == pytest.approx(0.2)
    assert lrs[7] == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))


def test_exponential() -> None:
    s = ScheduleConfig(name="warmup_exponential", warmup_rounds=1, decay_rate=0.5)
    assert [server_lr(s, 1.0, r, 10) for r in range(4)] == [1.0, 1.0, 0.5, 0.25]


@given(name=st.sampled_from(["constant", "warmup_cosine", "warmup_exponential"]),
       warmup=st.integers(0, 20), total=st.integers(1, 200))
def test_bounded_and_nonincreasing_after_warmup(name: str, warmup: int, total: int) -> None:
    s = ScheduleConfig(name=name, warmup_rounds=warmup)  # type: ignore[arg-type]
    lrs = [server_lr(s, 0.5, r, total) for r in range(total)]
    assert all(0 <= x <= 0.5 + 1e-12 for x in lrs)
    after = lrs[warmup:]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(after))
