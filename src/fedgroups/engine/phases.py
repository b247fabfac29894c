"""Where a build's wall time goes: a phase timer (``fedgroups build --verbose`` prints it).

Phases are marked in order on one clock (``time.perf_counter``, which worker processes
share on Linux, so a worker's start can be placed on the parent's timeline). Time between
two marks belongs to the later mark's phase. Work that interleaves inside workers (sorting
and writing a partition) is split by the workers' own measured seconds.
"""

from __future__ import annotations

import os
import time


class PhaseTimer:
    """Named wall-clock phases in order; ``mark(name)`` closes the phase named ``name``."""

    def __init__(self, start: float | None = None) -> None:
        self._last = time.perf_counter() if start is None else start
        self.phases: list[tuple[str, float]] = []

    def mark(self, name: str, at: float | None = None) -> None:
        now = time.perf_counter() if at is None else at
        self.phases.append((name, max(0.0, now - self._last)))
        self._last = max(self._last, now)

    def split(self, names: tuple[str, str], weights: tuple[float, float]) -> None:
        """Close two phases that ran interleaved: the wall time since the last mark is
        shared between them in proportion to ``weights`` (their measured seconds)."""
        now = time.perf_counter()
        seconds = max(0.0, now - self._last)
        total = sum(weights)
        share = weights[0] / total if total > 0 else 1.0
        self.phases += [(names[0], seconds * share), (names[1], seconds * (1 - share))]
        self._last = now

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, seconds in self.phases:
            out[name] = round(out.get(name, 0.0) + seconds, 4)
        return out


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), from
    /proc on Linux; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in ticks
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)


def format_phases(phases: dict[str, float], total: float | None = None) -> str:
    """A table: phase, seconds, share of the total."""
    total = total if total is not None else sum(phases.values())
    width = max([len(n) for n in phases] + [5])
    lines = [f"{'phase':<{width}}  {'seconds':>8}  {'share':>6}"]
    for name, seconds in phases.items():
        lines.append(f"{name:<{width}}  {seconds:8.3f}  {seconds / max(total, 1e-9):6.1%}")
    lines.append(f"{'total':<{width}}  {total:8.3f}")
    return "\n".join(lines)
