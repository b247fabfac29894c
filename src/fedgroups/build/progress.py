"""A progress bar that reads a shared counter (workers add to it) or is advanced by hand."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, desc: str, *, total: int | None, unit: str, enabled: bool,
                 counter: Any = None) -> None:
        self.counter = counter
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                            file=sys.stderr, mininterval=0.5, smoothing=0.1)

    def update(self, n: int | None) -> None:
        if self.bar is None:
            return
        if n is not None:
            self.bar.update(n)
        elif self.counter is not None:
            self.bar.update(self.counter.value - self.bar.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            if exc[0] is None:
                self.update(None)
                if self.bar.total is not None and self.bar.n != self.bar.total and self.counter:
                    self.bar.total = self.bar.n  # the estimate was off: end at what was read
                    self.bar.refresh()
            self.bar.close()
